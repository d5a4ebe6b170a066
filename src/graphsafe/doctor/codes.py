"""The doctor's finding codes: one table, stable codes, long explanations for ``graphsafe explain``.

Each entry names a bad and a good example target (``MODULE:NAME`` specs resolved like
``graphsafe check``); the GPU tests check both, so every explanation stays true.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Code:
    code: str
    name: str
    severity: str
    summary: str
    explanation: str
    bad: str | None = None   # target spec whose check must report this code
    good: str | None = None  # its fixed twin: the check must give `match` with no findings


_Z = "graphsafe.cases."
_SEED_BAD = "graphsafe.cases.seed:buggy"
_SEED_GOOD = "graphsafe.cases.seed:fixed"

CODES: dict[str, Code] = {c.code: c for c in [
    Code(
        "GSD001", "stale-replay", "error",
        "graph replay returns the capture-time result and ignores the replay input",
        """\
After `torch.cuda.graph` captured the target, new values were copied into its static inputs and
the graph was replayed. The output did not change: it is byte-for-byte the value it held right
after capture, while eager execution on the same inputs gives different values.

The graph therefore does not contain the work that writes this output. The usual cause is work
that ran *during* capture but outside the capturing stream (see GSD002): it executed once, left
its result in the output buffer, and was never recorded, so replays leave the buffer untouched.
Other causes: the output is written by a host-side computation, or the target returns a tensor
that was created before capture.

Fix: make every kernel that produces the output run on the capturing stream (in C++,
`at::cuda::getCurrentCUDAStream()`), then re-run `graphsafe check`.""",
        _SEED_BAD, _SEED_GOOD),
    Code(
        "GSD002", "escaped-work", "error",
        "GPU work executed during capture instead of being recorded in the graph",
        """\
Captured work does not execute while a CUDA graph is being captured: it is only recorded. So any
kernel, memcpy or memset that *executed* between capture begin and capture end was enqueued on a
stream that is not part of the capture. It ran once, eagerly, and it is absent from the graph:
replays never run it, and whatever it wrote keeps its capture-time value.

PyTorch captures on a non-blocking stream. A launch on the legacy default stream
(`kernel<<<grid, block>>>`, stream `0`, `cudaStreamLegacy`) is therefore neither captured nor
rejected; a launch on the per-thread default stream (`--default-stream per-thread`,
`cudaStreamPerThread`) or on a stream the code created itself escapes the same way.

graphsafe finds this work in a kineto (CUPTI) trace of the capture: GPU activity records whose
launching API call falls inside the capture window. It names the kernel, the stream it ran on and
the Python call that entered the extension.

Fix: launch on the current stream and check the launch:

    kernel<<<grid, block, 0, at::cuda::getCurrentCUDAStream()>>>(...);
    C10_CUDA_KERNEL_LAUNCH_CHECK();

For work on a side stream, fork and join it with events inside the capture
(`side.wait_stream(torch.cuda.current_stream())` before, the reverse after).""",
        _SEED_BAD, _SEED_GOOD),
    Code(
        "GSD003", "capture-failed", "error",
        "the target cannot be captured: CUDA rejected an operation during stream capture",
        """\
CUDA refuses some operations while a stream is capturing and invalidates the capture
(error codes 900-908). The most common: a synchronization (`.item()`, `.cpu()`, `.tolist()`,
`torch.cuda.synchronize()`, boolean-mask indexing, `nonzero`), a synchronous or pageable-memory
copy, a raw `cudaMalloc`, or a dependency on work outside the capture. graphsafe reports the CUDA
error code in plain words, the operation that was entered last, and the line of the target that
called it.

Fix: keep host synchronizations out of the captured region (compute host values before capture,
or keep them on the GPU), allocate through PyTorch's caching allocator, and copy from pinned
memory with `non_blocking=True`.""",
        "graphsafe.cases.capture_breaking:item", "graphsafe.cases.capture_breaking:item_fixed"),
    Code(
        "GSD004", "target-raised", "error",
        "the target raised an exception before any comparison could be made",
        """\
The target (or its `make_inputs`) raised while running eagerly, so there is nothing to compare
the graph with. The report carries the exception type, its message and the line that raised.

Fix: make the target run eagerly first (`fn(*make_inputs(0))`).""",
        "graphsafe.cases.raises:bad", "graphsafe.cases.raises:good"),
    Code(
        "GSD005", "replay-diverged", "error",
        "graph replay and eager execution disagree for a reason graphsafe could not name",
        """\
The replayed graph produced values that differ from eager execution beyond the tolerance, and no
specific cause (stale replay, escaped work, capture error) explains it. The evidence gives the
error statistics per output and input.

Fix: look for host values frozen at capture, Python state updated in the forward, uninitialized
memory or buffers accumulated across replays; run `graphsafe lint` on the sources.

As a note, GSD005 also says that one of graphsafe's probes could not run (its error is the
evidence), so its class was not looked for."""),
    Code(
        "GSD006", "no-cuda", "error",
        "no CUDA GPU is available, so nothing was captured or replayed",
        """\
The check needs a CUDA GPU: it captures the target with `torch.cuda.graph` and replays it.
`torch.cuda.is_available()` returned False (no GPU, no driver, or a CPU-only PyTorch build).
The verdict is `inconclusive` and the exit status 2.

Fix: run on a machine with a CUDA GPU and a CUDA build of PyTorch. `graphsafe lint` needs no GPU."""),
    Code(
        "GSD007", "inputs-indistinct", "warning",
        "a verification input equals the capture input, so a stale graph cannot be told apart",
        """\
`make_inputs(seed)` returned the same values for different seeds. A graph that ignores its input
gives the right answer on the very input it was captured with, so such a check proves nothing
about stale replays.

Fix: derive the values from `seed` (e.g. `torch.Generator(device).manual_seed(seed)`)."""),
    Code(
        "GSD008", "eager-unstable", "warning",
        "the target gives different results when run eagerly twice on the same input",
        """\
Two eager calls on identical inputs disagreed, so the target is stateful or nondeterministic in
eager mode and eager output is no oracle for replay. Differences from the graph may be this
instability rather than a capture bug.

Fix: make the target a pure function of its inputs for the check (reset state, seed RNG)."""),
    Code(
        "GSD009", "target-crashed", "error",
        "the target crashed the checking process",
        """\
The check ran in a child process and that process died (a fault, a device-side assert, an abort,
or a timeout) before it could write its report. graphsafe reports the exit status or signal and
the last lines the process printed; the phase it was in tells where it happened.

Fix: run the target eagerly under `compute-sanitizer` to find the fault, then check again."""),
    Code(
        "GSD010", "frozen-host-value", "error",
        "a host value (Python scalar, CPU tensor, attribute) is frozen into the graph at capture",
        """\
Kernel arguments are copied into graph nodes at capture. A value computed on the host - a Python
float such as a temperature, a sequence length, a step counter, a value read with `.item()` before
capture, an attribute the program sets between steps - is therefore replayed with the value it had
at capture, while eager uses the current one.

graphsafe sees host-side arguments (non-tensors and CPU tensors) that differ between inputs, and
attributes that changed between capture and replay, while the graph runs the same kernels as eager.
It confirms the cause by running eager on the new tensors with the capture-time host values: the
replay matches that run.

Fix: pass the value as a device tensor the kernel reads, and update it in place (`copy_`, `fill_`)
before each replay; or capture one graph per value.""",
        _Z + "frozen_scalar:bad", _Z + "frozen_scalar:good"),
    Code(
        "GSD011", "host-side-effect", "error",
        "the forward changes Python state that replays will never change",
        """\
A replay runs only the GPU work recorded at capture. Python code in the captured region - counters,
`self.x = ...`, appends to lists, caches - ran once, at capture. graphsafe snapshots the attributes of
the target's objects (modules, `self`, closures and globals the code names) around an eager call and
reports each attribute that call changed, with the lines that assign it.

Fix: keep state the graph must update in device tensors updated in place (`buf.add_(n)`), or move
the host logic out of the captured region.""",
        _Z + "host_side_effect:bad", _Z + "host_side_effect:good"),
    Code(
        "GSD012", "stale-pointer", "error",
        "a tensor the graph reads was rebound after capture; the graph still reads the old memory",
        """\
Graph nodes hold device addresses. Assigning a new tensor to an attribute after capture
(`model.weight = nn.Parameter(new)`, `self.cache = torch.empty(...)`) leaves the graph reading the
old tensor: stale values while it lives, someone else's data or error 700 once it is freed.
graphsafe records the address of every tensor attribute at capture and compares them before each
replay (after `Target.prepare`, the program's own between-step work).

Fix: update captured tensors in place (`model.weight.copy_(new)`), or capture again after a reload.""",
        _Z + "stale_pointer:bad", _Z + "stale_pointer:good"),
    Code(
        "GSD013", "output-overwritten", "error",
        "a tensor returned by one call is overwritten by a later call",
        """\
A graph's outputs live at fixed addresses; every replay writes them again. A runner that returns its
static output (or a view of it) hands the caller memory the next call overwrites. Graphs that share
a memory pool can also write over each other's outputs: a graph captured earlier had temporaries in
the blocks a later graph's output now occupies. graphsafe keeps what each call returned, and after
every later call checks that it did not change, and whether the later call returned the same memory.

Fix: return `static_out.clone()` (or document that the next call overwrites the result), and give
graphs whose outputs may be alive together separate pools.""",
        _Z + "output_overwritten:bad", _Z + "output_overwritten:good"),
    Code(
        "GSD014", "uninitialized-read", "error",
        "the target reads memory it never wrote (uninitialized `torch.empty` memory)",
        """\
`torch.empty` returns whatever the allocator's block held. A kernel that reads its output (or a
workspace) before writing it computes with that content. Eagerly it is often harmless; in a graph the
block belongs to the graph's pool and holds what the previous replay left, so results drift.

graphsafe runs the target twice in deterministic mode, once with
`torch.utils.deterministic.fill_uninitialized_memory` (NaN in every new float allocation): outputs
that move read memory nobody wrote. Raw `cudaMalloc` memory is not covered.

Fix: allocate with `torch.zeros` (or fill it) inside the captured region, or write before reading.""",
        _Z + "uninitialized:bad", _Z + "uninitialized:good"),
    Code(
        "GSD015", "accumulation", "error",
        "a buffer accumulates across calls and replays because nothing inside the graph zeroes it",
        """\
A buffer zeroed once (at construction, or by host code outside the captured region) that atomics,
`index_add_` or `+=` add into grows with every call and every replay. graphsafe sees a persistent
tensor whose sum grows by the same amount on each eager call on the same input (so the target is
stateful eagerly too, and is reported as such), or replays on identical inputs that drift.

Fix: zero the buffer inside the captured region before accumulating, or accumulate into a fresh
`torch.zeros` buffer.""",
        _Z + "accumulation:bad", _Z + "accumulation:good"),
    Code(
        "GSD016", "in-place-mutation", "error",
        "the graph mutates a parameter or its static input in place, compounding on every replay",
        """\
An in-place update of a parameter in the forward (`self.weight.mul_(s)`) runs on every call and every
replay, so results compound: call k sees the weight updated k times. The same happens to a static
input that the graph writes and a runner does not copy in again (a cache): each replay starts from
the last one's result. graphsafe reports parameters and buffers an eager call changed (with the
line), and, as a warning, a static input that a replay without a fresh copy keeps changing.

Fix: compute into a new tensor (`w * s` instead of `w.mul_(s)`), apply one-time changes outside the
step, and copy every input a graph writes in again before each replay.""",
        _Z + "inplace_param:bad", _Z + "inplace_param:good"),
    Code(
        "GSD017", "stream-race", "error",
        "two streams access one tensor with no event between them",
        """\
Inside a capture, order between streams exists only through events (`wait_stream`, `wait_event`).
A side stream that writes a tensor the main stream reads before waiting for it - joined only at the
end, so the capture succeeds - becomes a pair of unordered graph nodes that may run at the same
time. graphsafe runs the target once under PyTorch's CUDA Sanitizer model (every tensor access per
stream, every event between streams) and reports each unordered pair with both lines.

Fix: make the consumer wait (`torch.cuda.current_stream().wait_stream(side)`) before it reads.""",
        _Z + "stream_race:bad", _Z + "stream_race:good"),
    Code(
        "GSD018", "control-flow-frozen", "error",
        "a branch or a shape decided at capture is replayed for every input",
        """\
Python decides branches once, at capture; replays repeat that path. A branch on a host value (a
step counter, a flag), or on the batch size that a bucketed runner pads, runs other kernels eagerly
than the graph contains. graphsafe lists the kernels eager ran and the graph ran on the same input,
and, for padded batches, shows that the replay equals eager on the padded input while it differs
from eager on the real batch beyond rounding.

Fix: decide on the device (`torch.where`, masks, `torch.cond`), or capture one graph per branch and
choose the graph on the host.""",
        _Z + "control_flow:bad", _Z + "control_flow:good"),
    Code(
        "GSD019", "rng-frozen", "error",
        "random numbers are frozen into the graph: every replay draws the same ones",
        """\
PyTorch's own random ops are graph-safe: each replay advances the Philox offset. A custom kernel
given a seed computed on the host (Python's `random`, a CPU generator, a counter) has that seed baked
into its node, so every replay draws the same numbers. graphsafe seeds every generator the same way
before eager calls and replays, then changes the seed: eager output follows it, a frozen replay does
not.

Fix: draw the seed on the device from PyTorch's generator (`torch.randint(..., device="cuda")`) and
load it in the kernel, or read the Philox state with `at::cuda::philox::unpack` in C++.""",
        _Z + "host_rng:bad", _Z + "host_rng:good"),
    Code(
        "GSD020", "numeric-noise", "note",
        "replay differs from eager only by rounding, because the graph ran other kernels (a padded batch)",
        """\
Replaying the same kernels with the same shapes is bit-identical to eager. A bucketed runner that
pads a batch runs other shapes, and cuBLAS picks other GEMM kernels for them; the sums are rounded
in another order. graphsafe calls this benign (verdict `benign`, exit status 0) only with the
evidence: the replay equals eager run on the padded batch, the difference is within a few units in
the last place of the largest value, and it lists the kernels that differ. Anything larger is GSD018.

Fix: nothing; to compare exactly, run eager at the padded batch too.""",
        _Z + "padded_gemm:bad", _Z + "padded_gemm:good"),
    Code(
        "GSD021", "call-timeout", "error",
        "an eager call or a replay did not finish within its time bound",
        """\
graphsafe bounds every eager call and replay (`timeout_s`, default 60 s). A call that does not finish
usually waits for a signal that never comes: a kernel spinning on a flag or semaphore that eager code
raises outside the graph (so only the capture raised it), or a collective missing a peer. The
report carries what was found before the hang (escaped work, for example). The GPU is still busy, so
`graphsafe check` runs targets in a child process and stops it.

Fix: every signal a captured kernel waits for must be produced, and reset, inside the graph."""),
    Code(
        "GSD022", "device-fault", "error",
        "the target faulted on the GPU (illegal address, device-side assert)",
        """\
A kernel faulted: an illegal memory access (700), a device-side assert (710), a misaligned address
(716) or a launch failure (719). These errors are sticky: the CUDA context is unusable afterwards, so
`graphsafe check` runs each target in a child process and still reports what it gathered. The line
named is where the error surfaced; kernels run asynchronously, so the faulting one was launched at or
before it.

Fix: run the target eagerly with `CUDA_LAUNCH_BLOCKING=1` under `compute-sanitizer`."""),
    Code(
        "GSD023", "first-divergent-op", "note",
        "the first operation whose replayed output differs from eager",
        """When replay and eager disagree, graphsafe finds where they part without any probe from you. In a run
separate from the verdict run it records every operation the target runs: aten and custom ops (through a
`TorchDispatchMode`, which also sees the ops C++ extensions call) and calls into native code PyTorch cannot
see into (pybind extension functions, Triton launchers, cuda-python), which are attributed to the user
function that made them. Each operation's output is cloned as it is produced. Under capture the clones are
captured too, so one replay on a verification input refills them with the graph's values, operation by
operation, and they are compared with an eager run on the same input.

The finding names the first operation, in execution order, whose output differs: the op (or the native
call), its module path (`model.layers.3.mlp.down_proj`), the Python line, the error statistics, and the
kernels it added to the graph. A native call that added no node at all launched its work outside the graph.
If the replayed value equals eager on the capture input, the graph repeats that operation's capture-time
result. `graphsafe check --repro out.py` writes a script that reproduces the divergence of that operation
alone, with its arguments saved beside it.""",
        _Z + "frozen_scalar:bad", _Z + "frozen_scalar:good"),
    Code(
        "GSD024", "frozen-kernel-argument", "warning",
        "a kernel argument whose value is baked into the graph at capture",
        """Kernel arguments are copied into the graph's kernel node when it is captured. A value computed on the host
(a Python float, a step counter, a length read with `.item()` before capture) is therefore frozen: every
replay passes the capture-time value, whatever the host holds then.

graphsafe captures the target twice, with different inputs and host state, reads each kernel node's
parameters through the driver (`cuGraphKernelNodeGetParams`, with the layout from `cuFuncGetParamInfo`),
and compares them node by node. Device pointers differ between captures and are skipped; any other byte
that differs is a baked-in value. It names the kernel, the parameter (by name for Triton kernels, by type
for C++ kernels whose names carry their signature) and both values.

Fix: pass the value in device memory the kernel loads, and write the new value there before each replay.""",
        _Z + "frozen_scalar:bad", _Z + "frozen_scalar:good"),
    Code(
        "GSD025", "graph-race", "error",
        "two graph nodes touch the same memory in no fixed order, one writing",
        """A captured graph runs nodes in any order the edges allow. Work forked onto a side stream and joined
late becomes branches with no path between them; if one branch writes memory the other reads or writes,
replays race, even when eager execution happened to run them in a good order.

graphsafe reads the graph's nodes and edges, computes which nodes always run before which, and gives
each node the memory it touches: memcpy and memset nodes from their parameters, kernel nodes from the
tensors their operation reads and writes (the op schema says which are written; pointer-sized words in
the kernel's parameters say which of them a kernel touches). Any unordered pair with overlapping ranges
where one writes is reported. Kernels of native calls are `may write` for pointers that are not `const`
(a warning rather than an error).

Fix: order the accesses, e.g. `torch.cuda.current_stream().wait_stream(side)` before the read.""",
        _Z + "stream_race:bad", _Z + "stream_race:good"),
    Code(
        "GSD026", "graph-census", "note",
        "the graph holds other kernels than eager runs on the same input",
        """graphsafe lists the captured graph's nodes (kernel names demangled, grid and block, memcpy, memset,
host, event, memory and child-graph nodes) and compares its kernels with those an eager call on the same
input launched (from a torch.profiler trace): kernels missing from the graph (they ran outside the
capture, GSD002, or behind a branch the capture did not take, GSD018), kernels only in the graph, kernels
in another order, and kernels launched with another grid or block (shapes frozen at capture).""",
        _SEED_BAD, _SEED_GOOD),
    Code(
        "GSD027", "localization-incomplete", "note",
        "part of the localization could not run",
        """A part of the localization (instrumented run, capture, census, second capture, race search, picture,
repro) raised. The verdict and the other findings are unaffected; the evidence says which part failed
and why."""),
    Code(
        "GSD028", "collective-mismatch", "error",
        "the ranks' graphs hold different sequences of collectives",
        """Under `torchrun`, every rank checks its own graph and rank 0 merges the reports. A replayed graph launches
its NCCL kernels in the order they were captured, and NCCL pairs collectives across ranks by that order. If
the ranks captured different collectives, or a different number of them, or in another order, replays
hang or exchange the wrong buffers, although each rank's graph looks fine on its own.

graphsafe reads the NCCL kernels of each rank's graph right after capture, before any replay (so a replay that
hangs does not hide them), or else takes those its first replay ran (the kineto census of GSD026), and
compares the lists across ranks. A collective present on some ranks only is GSD029.

Fix: capture the same collectives in the same order on every rank: the same code path and the same shapes
and dtypes per collective.

Example (two GPUs): `torchrun --nproc-per-node 2 -m graphsafe check graphsafe.cases.tp_mlp:bad_order`, fixed
in `graphsafe.cases.tp_mlp:good_two_collectives`."""),
    Code(
        "GSD029", "collective-on-some-ranks", "error",
        "a collective is in the graphs of some ranks only",
        """One kind of collective (an all-reduce, say) was captured on some ranks and not on others, typically because
a branch on the rank (`if rank == 0:`) or on rank-dependent data sits inside the captured region. A replay on
the ranks that have it waits for partners that never launch it. NCCL's rule is that whether a collective is
captured must be the same on every rank; a collective issued on a stream that is not captured on one rank only
(a per-rank overlap or communication-stream setting) breaks it the same way: that rank runs the collective once
at capture, the others replay it, and their next replay hangs (GSD021).

`graphsafe check` under torchrun compares the collectives of the ranks' graphs; `graphsafe run` under torchrun
reports a collective that escaped a capture on some ranks only, and ranks that made different numbers of
captures.

Fix: keep rank-dependent control flow out of the captured region, or make every rank issue the collective, on
the capturing stream (or a stream joined to it).

Example (two GPUs): `torchrun --nproc-per-node 2 -m graphsafe check graphsafe.cases.tp_mlp:bad_some_ranks`,
fixed in `graphsafe.cases.tp_mlp:good`."""),
]}
