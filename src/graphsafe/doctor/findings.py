"""Findings for the mechanisms beyond escaped work: one builder per code, from recorded evidence."""
from __future__ import annotations

from ..diagnostics import Finding, Location
from .evidence import AttrChange, Census, Evidence, HostValue, OutputEvidence, Overwrite, Race, Rebinding, TensorState


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3g}"


def _first(locs: list[Location], label: str, fallback: Location | None = None) -> Location | None:
    loc = locs[0] if locs else fallback
    if loc is None:
        return None
    return Location(loc.file, loc.line, loc.column, loc.function, label)


def _out(o: OutputEvidence) -> str:
    return f"output {o.index} ({'×'.join(map(str, o.shape)) or 'scalar'} {o.dtype})"


def _worst(o: OutputEvidence):
    bad = [c for c in o.comparisons if not c.close] or o.comparisons
    return max(bad, key=lambda c: c.max_abs)


def _census_lines(c: Census | None) -> list[str]:
    if c is None or not c.differs:
        return []
    lines = []
    if c.eager_only:
        lines.append(f"kernels eager ran on input {c.seed} that the graph does not contain: "
                     + ", ".join(f"`{k}`" for k in c.eager_only[:6]))
    if c.graph_only:
        lines.append("kernels in the graph that eager did not run on that input: "
                     + ", ".join(f"`{k}`" for k in c.graph_only[:6]))
    return lines


def _host_lines(hv: list[HostValue]) -> list[str]:
    out = []
    for h in hv[:4]:
        seed, val = next(iter(h.values.items()))
        where = {"argument": "argument", "cpu_tensor": "CPU tensor argument", "attribute": "attribute"}[h.kind]
        out.append(f"{where} `{h.path}` was {h.capture_value} at capture and {val} for input {seed}")
    return out


def frozen_host_value(o: OutputEvidence, ev: Evidence, loc: Location | None) -> Finding:
    w = _worst(o)
    names = ", ".join(f"`{h.path}`" for h in ev.host_values[:3])
    evidence = _host_lines(ev.host_values)
    evidence.append(f"{_out(o)}: replay differs from eager by up to {_fmt(w.max_abs)} on input {w.seed}; "
                    f"the graph ran the same kernels as eager")
    if any(c.close_to_eager_capture_host for c in o.comparisons if not c.close):
        evidence.append("replay equals eager run on the new tensors with the capture-time host values: "
                        "the graph replays the value it was captured with")
    return Finding(
        "GSD010", "error", f"host value {names} is frozen into the graph at its capture-time value",
        location=_first([], "the captured target", loc), evidence=evidence,
        help="pass the value as a device tensor the kernel reads (and `copy_`/`fill_` it before each replay), "
             "or capture one graph per value",
        data={"values": [h.path for h in ev.host_values], "output": o.index, "max_abs": w.max_abs})


def control_flow(o: OutputEvidence, ev: Evidence, loc: Location | None, padded: bool) -> Finding:
    w = _worst(o)
    if padded:
        c = w
        msg = f"{_out(o)} depends on the batch size the graph was captured with"
        evidence = [f"input {c.seed} has a batch of {c.padded_from}; the graph was captured with a larger batch "
                    f"and ran it padded",
                    f"replay equals eager on the padded input, and differs from eager on the real batch by "
                    f"{_fmt(c.max_abs)} (noise floor {_fmt(c.noise_floor)})"]
        help_ = ("do not branch on the batch size, or capture one graph per batch size that takes a different "
                 "path; make padded rows unable to change real rows (no reductions over the batch)")
    else:
        msg = f"control flow of {_out(o)} was decided at capture and is replayed for every input"
        evidence = _host_lines(ev.host_values)
        evidence.append(f"replay differs from eager by up to {_fmt(w.max_abs)} on input {w.seed}")
        help_ = ("decide on the device (`torch.where`, `torch.cond`), or capture one graph per branch and "
                 "choose the graph on the host")
    evidence += _census_lines(ev.census)
    return Finding("GSD018", "error", msg, location=_first([], "the captured target", loc), evidence=evidence,
                   help=help_, data={"output": o.index, "max_abs": w.max_abs, "padded": padded,
                                     "eager_only": ev.census.eager_only if ev.census else [],
                                     "graph_only": ev.census.graph_only if ev.census else []})


def numeric_noise(o: OutputEvidence, ev: Evidence) -> Finding:
    w = max((c for c in o.comparisons if c.padded_from is not None), key=lambda c: c.max_abs, default=_worst(o))
    evidence = [f"input {w.seed} has a batch of {w.padded_from}; the graph ran it padded to the captured batch",
                f"replay is {'bit-identical to' if w.bitwise_equal_to_eager_padded else 'within tolerance of'} "
                f"eager on the padded input",
                f"replay differs from eager on the real batch by at most {_fmt(w.max_abs)}, within the noise "
                f"floor {_fmt(w.noise_floor)} (4 units in the last place of the largest value)"]
    evidence += _census_lines(ev.census)
    return Finding(
        "GSD020", "note", f"{_out(o)} differs from eager only by rounding: the graph ran other kernels for the padded batch",
        evidence=evidence,
        help="expected for padded batches; to compare exactly, run eager at the padded batch too",
        data={"output": o.index, "max_abs": w.max_abs, "noise_floor": w.noise_floor})


def side_effect(c: AttrChange) -> Finding:
    return Finding(
        "GSD011", "error", f"the forward changes `{c.path}` on the host; replays will not",
        location=_first(c.writes, "assigned here"),
        evidence=[f"one eager call changed `{c.path}` from {c.before} to {c.after}",
                  "a replay runs only GPU work: Python code in the captured region ran once, at capture"],
        help="keep state the graph must update in device tensors updated in place, or move the host logic "
             "out of the captured region",
        related=c.writes[1:], data={"attribute": c.path, "before": c.before, "after": c.after})


def stateful_tensor(t: TensorState, ev: Evidence) -> Finding:
    evidence = [f"one eager call on the same input changed `{t.path}` ({t.role}) in place: {t.detail}"]
    if ev.probes.eager_calls_differ:
        evidence.append("so the target is stateful: eager results on one input depend on how many times it ran")
    if ev.probes.replay_drift is not None:
        evidence.append(f"replays on one input drift too: {_fmt(ev.probes.replay_drift)} between two replays")
    if t.pattern == "accumulates" and t.role != "parameter":
        adds = [w for w in t.writes if w.label not in ("zero_", "fill_", "copy_", "=")] or t.writes
        return Finding(
            "GSD015", "error", f"`{t.path}` accumulates across calls: nothing inside the captured region zeroes it",
            location=_first(adds, "accumulated here"), evidence=evidence,
            help=f"zero it inside the captured region (`{t.path.split('.')[-1]}.zero_()` before accumulating), "
                 "or accumulate into a fresh `torch.zeros` buffer",
            related=t.writes[1:], data={"tensor": t.path, "role": t.role, "pattern": t.pattern})
    muts = [w for w in t.writes if w.label not in ("=",)] or t.writes
    return Finding(
        "GSD016", "error", f"the forward mutates {t.role} `{t.path}` in place; every call and replay changes it again",
        location=_first(muts, "mutated here"), evidence=evidence,
        help="compute into a new tensor (`w * s` instead of `w.mul_(s)`), or apply the change once, outside "
             "the step",
        related=t.writes[1:], data={"tensor": t.path, "role": t.role, "pattern": t.pattern})


def input_compounds(ev: Evidence) -> Finding:
    return Finding(
        "GSD016", "warning", "the graph writes into its static input, so each replay compounds on the last",
        evidence=["after a replay the static input no longer held the copied-in values",
                  "a second replay without copying the input in again gave a different output"],
        help="write results to a new tensor; a runner that keeps a static input across replays (a cache) "
             "must only write positions it overwrites completely",
        data={"tensor": "input", "role": "input", "pattern": "compounds"})


def stale_pointer(r: Rebinding) -> Finding:
    return Finding(
        "GSD012", "error", f"`{r.path}` was rebound after capture; the graph still reads the old memory",
        location=_first(r.writes, "rebound here"),
        evidence=[f"`{r.path}` was at {r.at_capture} when the graph was captured and is at {r.now} now",
                  "graph nodes hold device addresses: the old tensor is read (or freed memory, if nothing keeps it)"],
        help=f"update it in place: `{r.path.split('.')[-1]}.copy_(new)` instead of assigning a new tensor; or "
             "capture again after the reload",
        related=r.writes[1:], data={"tensor": r.path, "at_capture": r.at_capture, "now": r.now})


def overwritten(o: Overwrite) -> Finding:
    how = ("the later call returned the same memory" if o.same_buffer else
           "the later call returned other memory: another graph sharing the memory pool wrote over it")
    return Finding(
        "GSD013", "error", f"output {o.output} of one call is overwritten by a later call",
        evidence=[f"the tensor returned by call {o.call + 1} changed by up to {_fmt(o.max_abs)} when call "
                  f"{o.by_call + 1} ran", how],
        help="return `static_out.clone()` from the runner (or document that the next call overwrites it); "
             "give graphs that may be alive together separate pools",
        data={"output": o.output, "same_buffer": o.same_buffer, "max_abs": o.max_abs})


def uninitialized(ev: Evidence) -> Finding:
    u = ev.probes.uninitialized or {}
    evidence = [f"filling uninitialized memory (torch `empty`) with NaN changed output(s) "
                f"{', '.join(map(str, u.get('outputs', [])))} of an eager call"]
    if u.get("nonfinite"):
        evidence.append(f"{u['nonfinite']} output elements became NaN/Inf: they are computed from memory nobody wrote")
    if u.get("first_op"):
        at = u.get("first_op_at") or {}
        where = f" at {Location(**at).short()}" if at else ""
        evidence.append(f"the first operation whose result the fill changed: `{u['first_op']}`{where}")
    evidence.append("in a graph that memory is the pool's: it holds what the previous replay left there")
    if ev.probes.replay_drift is not None:
        evidence.append(f"replays on one input drift by {_fmt(ev.probes.replay_drift)}")
    at = u.get("first_op_at")
    return Finding(
        "GSD014", "error", "the target reads memory it did not write (uninitialized `torch.empty` memory)",
        location=Location(**{**at, "label": "the first operation that read it"}) if at else None,
        evidence=evidence,
        help="allocate with `torch.zeros` (or fill it) inside the captured region, or write every element before "
             "reading it",
        data=dict(u))


def race(r: Race) -> Finding:
    return Finding(
        "GSD017", "error", f"unsynchronized access across streams: {r.access} on stream {r.stream:#x} after "
                           f"{r.previous} on stream {r.previous_stream:#x}",
        location=_first([r.location] if r.location else [], "this access is not ordered after the other"),
        evidence=[f"{r.previous} on stream {r.previous_stream:#x}, then {r.access} on stream {r.stream:#x}, "
                  f"with no event between them (tensor {r.tensor})",
                  "in a graph the two become unordered nodes that may run at the same time"],
        related=[r.previous_location] if r.previous_location else [],
        help="make the consumer wait: `torch.cuda.current_stream().wait_stream(side)` (or an event) before "
             "reading what the side stream wrote",
        data={"access": r.access, "previous": r.previous, "stream": r.stream, "previous_stream": r.previous_stream})


def rng_frozen(ev: Evidence, loc: Location | None) -> Finding:
    return Finding(
        "GSD019", "error", "random numbers are frozen into the graph: every replay draws the same ones",
        location=_first([], "the captured target", loc),
        evidence=["eager output changes with the RNG seed; replay output does not",
                  "a seed or offset computed on the host was baked into a kernel argument at capture"],
        help="draw seeds on the device from PyTorch's generator (`torch.randint(..., device='cuda')`) or read "
             "the Philox state through `at::cuda::philox::unpack` in C++; never pass a host seed to a captured kernel",
        data={"eager_sensitive": ev.probes.rng_eager_sensitive, "replay_sensitive": ev.probes.rng_replay_sensitive})


def drift(ev: Evidence) -> Finding:
    return Finding(
        "GSD015", "error", "replays on identical inputs drift: state is carried from one replay to the next",
        evidence=[f"two replays on the same input differ by up to {_fmt(ev.probes.replay_drift)} "
                  f"(output {ev.probes.replay_drift_output})",
                  "eager calls on one input agree, so the graph reads memory the previous replay wrote"],
        help="zero accumulators inside the captured region; do not read pool memory before writing it",
        data={"replay_drift": ev.probes.replay_drift})
