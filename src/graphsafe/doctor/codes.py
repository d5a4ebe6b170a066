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
        "graphsafe.cases.capture_item:bad", "graphsafe.cases.capture_item:good"),
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
memory or buffers accumulated across replays; run `graphsafe lint` on the sources."""),
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
]}


def get(code: str) -> Code:
    try:
        return CODES[code.upper()]
    except KeyError:
        raise KeyError(f"unknown code {code!r}; known: {', '.join(sorted(CODES))}") from None
