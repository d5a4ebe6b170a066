"""Turns recorded evidence into a verdict and findings. Pure Python: runs anywhere, no GPU."""
from __future__ import annotations

from ..diagnostics import Finding, Location
from . import capture_errors
from .evidence import Evidence, OutputEvidence
from . import findings as F
from .trace import STREAM_WORDS, EscapedOp

MATCH, BENIGN, MISMATCH, INCONCLUSIVE = "match", "benign", "mismatch", "inconclusive"


def classify(ev: Evidence, target_location: Location | None = None) -> tuple[str, list[Finding]]:
    """The verdict and its findings; a localization's findings follow them and never change the verdict."""
    from .locate.findings import located

    if not isinstance(ev, Evidence):
        raise TypeError(f"classify takes an Evidence (Evidence.from_dict(d) or Report.from_json(text).evidence "
                        f"for a recorded one), got {type(ev).__name__}")
    verdict, findings = _classify(ev, target_location)
    return verdict, findings + located(ev.locate, ev.capture_seed)


def _classify(ev: Evidence, target_location: Location | None) -> tuple[str, list[Finding]]:
    if ev.no_cuda:
        return INCONCLUSIVE, [Finding(
            "GSD006", "error", "no CUDA GPU is available, so nothing was captured or replayed",
            evidence=[ev.no_cuda],
            help="run on a machine with a CUDA GPU and a CUDA build of PyTorch; `graphsafe lint` needs no GPU")]
    findings: list[Finding] = [_escaped(op, ev) for op in ev.escaped]
    if ev.failure is not None:
        findings += _mechanisms(ev, target_location)
        findings.append(_failure(ev))
        return INCONCLUSIVE, findings
    mechanisms = _mechanisms(ev, target_location)
    findings += mechanisms
    stale = [o for o in ev.outputs if _is_stale(o)]
    findings += [_stale(o, ev, target_location) for o in stale]
    diverged = [o for o in ev.outputs if any(not c.close for c in o.comparisons)]
    explained = bool(ev.escaped or mechanisms)
    benign = []
    for o in (o for o in diverged if o not in stale):
        f = _divergence(o, ev, target_location, explained)
        if f is not None:
            findings.append(f)
            if f.code == "GSD020":
                benign.append(o)
    for o in ev.outputs:  # within tolerance, yet not bit-identical: only padding explains that
        cs = [c for c in o.comparisons if c.padded_from is not None and not c.bitwise_equal]
        if o not in diverged and cs and all(c.close_to_eager_padded for c in cs):
            findings.append(F.numeric_noise(o, ev))
            benign.append(o)
    if ev.indistinct_seeds:
        findings.append(Finding(
            "GSD007", "warning",
            "a verification input equals the capture input, so a stale graph cannot be told apart",
            evidence=[f"make_inputs({s}) returned the same values as make_inputs({ev.capture_seed})"
                      for s in ev.indistinct_seeds],
            help="derive the inputs from `seed`, e.g. with `torch.Generator(device).manual_seed(seed)`"))
    if ev.eager_unstable and not any(f.code in ("GSD015", "GSD016", "GSD011", "GSD014", "GSD017") for f in findings):
        findings.append(Finding(
            "GSD008", "warning", "the target gives different results when run eagerly twice on the same input",
            evidence=["two eager calls on the capture input returned different values"],
            help="make the target a pure function of its inputs for the check (reset state, seed RNG)"))
    if ev.trace_error:
        findings.append(Finding(
            "GSD002", "note", "the capture could not be traced, so escaped work was not looked for",
            evidence=[ev.trace_error],
            help="stop other profilers during the check; graphsafe needs torch.profiler with CUDA activity"))
    for err in ev.probes.errors:
        findings.append(Finding("GSD005", "note", "a probe could not run, so its class was not looked for",
                                evidence=[err], help="report this to graphsafe with the target if it persists"))
    errors = [f for f in findings if f.severity == "error"]
    if diverged and ev.eager_unstable and all(f.code in ("GSD005",) for f in errors):
        return INCONCLUSIVE, findings
    if errors:
        return MISMATCH, findings
    if ev.indistinct_seeds and len(ev.indistinct_seeds) == len(ev.seeds):
        return INCONCLUSIVE, findings
    if benign:
        return BENIGN, findings
    return MATCH, findings


def _mechanisms(ev: Evidence, loc: Location | None) -> list[Finding]:
    """Causes found by a probe or a snapshot: bugs whether or not this run's outputs diverged."""
    out = [F.stale_pointer(r) for r in ev.rebound]
    if ev.probes.rng_eager_sensitive and ev.probes.rng_replay_sensitive is False:
        out.append(F.rng_frozen(ev, loc))
    out += [F.side_effect(c) for c in ev.side_effects]
    if ev.probes.eager_calls_differ or ev.probes.replay_drift is not None:  # state that outputs depend on
        out += [F.stateful_tensor(t, ev) for t in ev.tensor_state if t.role != "input"]
    if ev.probes.input_compounds:
        out.append(F.input_compounds(ev))
    if ev.probes.uninitialized:
        out.append(F.uninitialized(ev))
    out += [F.race(r) for r in ev.races]
    out += [F.overwritten(o) for o in ev.overwrites]
    if ev.probes.replay_drift is not None and not out and not ev.eager_unstable:
        out.append(F.drift(ev))
    return out


def _divergence(o: OutputEvidence, ev: Evidence, loc: Location | None, explained: bool) -> Finding | None:
    """Why replay and eager disagree on output ``o`` when no mechanism above explains it."""
    bad = [c for c in o.comparisons if not c.close]
    padded = [c for c in bad if c.padded_from is not None]
    if padded and all(c.close_to_eager_padded for c in padded) and len(padded) == len(bad):
        if all(c.max_abs <= (c.noise_floor or 0.0) for c in padded):
            return F.numeric_noise(o, ev)
        return F.control_flow(o, ev, loc, padded=True)
    if explained:
        return None
    if ev.host_values:
        if ev.census is not None and ev.census.differs:
            return F.control_flow(o, ev, loc, padded=False)
        return F.frozen_host_value(o, ev, loc)
    if ev.census is not None and ev.census.differs:
        return F.control_flow(o, ev, loc, padded=False)
    return _diverged(o, loc)


def _is_stale(o: OutputEvidence) -> bool:
    """Replay ignores its input: it returns the capture-time bytes, or the same bytes for every input."""
    cs = o.comparisons
    constant = all(c.replay_equals_capture_time for c in cs) or (o.replays_identical and len(cs) > 1)
    return bool(cs) and bool(constant) and any(c.eager_moved and not c.close for c in cs)


def _fmt(x: float) -> str:
    return f"{x:.3g}"


def _escaped(op: EscapedOp, ev: Evidence) -> Finding:
    what = {"kernel": "kernel", "memcpy": "memcpy", "memset": "memset"}[op.kind]
    name = op.short_name
    times = f"{op.count} time{'s' if op.count != 1 else ''}"
    evidence = [
        f"{what} `{op.name}` executed {times} inside the capture window: captured work only records, "
        f"so this ran eagerly and the graph does not contain it",
        f"it ran on {op.stream}" + (f"; the capture stream is CUPTI stream {ev.stream_ids['capture']}"
                                     if "capture" in ev.stream_ids else ""),
    ]
    if op.api or op.entry:
        evidence.append("launched by " + " from ".join(
            x for x in (f"`{op.api}`" if op.api else None, f"`{op.entry}`" if op.entry else None) if x))
    if op.launch_note:
        evidence.append(op.launch_note)
    if "nccl" in op.name.lower():
        help_ = ("issue the collective inside the captured region on the capturing stream: no `async_op=True` "
                 "work waited on outside the capture, no process group bound to a stream of its own; join any "
                 "side stream back before the capture ends")
    elif op.stream_role == "legacy":
        help_ = ("launch it on PyTorch's current stream: `<<<grid, block, 0, at::cuda::getCurrentCUDAStream()>>>` "
                 "(and check it with `C10_CUDA_KERNEL_LAUNCH_CHECK()`)")
    elif op.stream_role == "per_thread":
        help_ = ("do not use the per-thread default stream (`--default-stream per-thread`, `cudaStreamPerThread`); "
                 "launch on `at::cuda::getCurrentCUDAStream()`")
    else:
        help_ = ("launch on `at::cuda::getCurrentCUDAStream()`, or fork and join the side stream inside the capture "
                 "(`side.wait_stream(torch.cuda.current_stream())` before it, the reverse after it)")
    return Finding(
        "GSD002", "error", f"{what} `{name}` ran during capture on {STREAM_WORDS.get(op.stream_role, 'a stream')} "
                           f"and is not in the graph",
        location=_labelled(op.callsite, f"this call launched `{name}`"),
        evidence=evidence, help=help_, stack=op.stack[1:], related=list(op.launch_sites),
        data={"kernel": op.name, "short_name": name, "kind": op.kind, "stream": op.stream_role,
              "stream_id": op.stream_id, "api": op.api, "entry": op.entry, "count": op.count})


def _labelled(loc: Location | None, label: str) -> Location | None:
    if loc is None:
        return None
    return Location(loc.file, loc.line, loc.column, loc.function, label)


def _describe(o: OutputEvidence) -> str:
    return f"output {o.index} ({'×'.join(map(str, o.shape)) or 'scalar'} {o.dtype})"


def _stale(o: OutputEvidence, ev: Evidence, target_location: Location | None) -> Finding:
    cs = o.comparisons
    worst = max(cs, key=lambda c: c.max_abs)
    evidence = [
        (f"on {len(cs)} of {len(cs)} verification inputs the replay output was byte-identical to the output "
         f"right after capture (from the capture input, seed {ev.capture_seed})"
         if all(c.replay_equals_capture_time for c in cs) else
         f"the replay output was byte-identical on all {len(cs)} verification inputs, though they differ"),
        f"eager results on those inputs differ from it: up to {_fmt(worst.max_abs)} absolute, "
        f"{worst.mismatched} of {worst.numel} elements (seed {worst.seed})",
    ]
    if ev.escaped:
        names = ", ".join(f"`{op.short_name}`" for op in ev.escaped)
        evidence.append(f"cause: work that escaped the capture ({names}, see GSD002) wrote it once, at capture")
    evidence += [f"PyTorch warned at capture end: {_first_line(w)}" for w in ev.capture_warnings]
    return Finding(
        "GSD001", "error", f"{_describe(o)} is stale: replay returns the capture-time result",
        location=_labelled(target_location, "the captured target"),
        evidence=evidence,
        help="make every kernel that writes this output run on the capturing stream "
             "(`at::cuda::getCurrentCUDAStream()` in C++)",
        data={"output": o.index, "max_abs": worst.max_abs, "inputs": len(cs)})


def _diverged(o: OutputEvidence, target_location: Location | None) -> Finding:
    bad = [c for c in o.comparisons if not c.close]
    worst = max(bad, key=lambda c: c.max_abs)
    return Finding(
        "GSD005", "error", f"{_describe(o)} differs between replay and eager",
        location=_labelled(target_location, "the captured target"),
        evidence=[f"{len(bad)} of {len(o.comparisons)} verification inputs differ; worst (seed {worst.seed}): "
                  f"max abs {_fmt(worst.max_abs)}, max rel {_fmt(worst.max_rel)}, "
                  f"{worst.mismatched} of {worst.numel} elements outside tolerance"],
        help="look for host values frozen at capture, Python state updated in the forward, uninitialized or "
             "accumulated buffers; run `graphsafe lint` on the sources",
        data={"output": o.index, "max_abs": worst.max_abs, "max_rel": worst.max_rel})


def _holds_collectives(ev: Evidence) -> bool:
    from .ranks import evidence_collectives

    return bool(evidence_collectives(ev))


def _failure(ev: Evidence) -> Finding:
    f = ev.failure
    assert f is not None
    if f.phase == "process":
        return Finding("GSD009", "error", "the target crashed the checking process",
                       evidence=[f.message], help="run the target eagerly under `compute-sanitizer` to find the fault",
                       data={"exc_type": f.exc_type})
    if f.timed_out_after_s is not None:
        return Finding(
            "GSD021", "error", f"the {f.phase} did not finish within {f.timed_out_after_s:g} s",
            location=_labelled(f.location, "waiting here when the time ran out"),
            evidence=[_first_line(f.message),
                      *([f"the last step that finished: the {ev.last_step}"] if ev.last_step else []),
                      "the GPU is still running it: a kernel waits for something that never happens (a flag or "
                      "semaphore set by work outside the graph, a collective partner rank that never joins), or "
                      "loops forever",
                      "findings above were gathered before it hung"],
            stack=f.stack[1:],
            help=("the graph holds collectives: a replayed collective waits for the same collective on every other "
                  "rank, so every rank must capture the same collectives on captured streams (see the ranks table "
                  "under torchrun)" if _holds_collectives(ev) else
                  "look for spin-waits on flags that eager code sets outside the captured region; every signal a "
                  "captured kernel waits for must be produced (and reset) inside the graph"),
            data={"phase": f.phase, "timeout_s": f.timed_out_after_s, "last_step": ev.last_step})
    err = capture_errors.BY_CODE.get(f.cuda_error) if f.cuda_error else None
    if err is not None and err.code < 900:
        evidence = [f"CUDA error {err.code} ({err.name}): {err.plain}", f"{f.exc_type}: {_first_line(f.message)}"]
        if f.cuda_usable_after is not None:
            evidence.append("CUDA stayed usable afterwards" if f.cuda_usable_after else
                            "the CUDA context is unusable now: later CUDA work in this process fails "
                            "(`graphsafe check` runs targets in a child process for this reason)")
        return Finding(
            "GSD022", "error", f"the target faulted on the GPU during the {f.phase}: CUDA error {err.code} ({err.name})",
            location=_labelled(f.location, "the fault surfaced here (kernels run asynchronously: the faulting one "
                                           "was launched at or before this line)"),
            evidence=evidence, stack=f.stack[1:],
            help="run it eagerly with `CUDA_LAUNCH_BLOCKING=1` under `compute-sanitizer` to find the faulting kernel",
            data={"phase": f.phase, "cuda_error": err.code, "name": err.name})
    if f.phase in ("capture", "replay") and err is not None:
        evidence = [f"CUDA error {err.code} ({err.name}): {err.plain}",
                    f"{f.exc_type}: {_first_line(f.message)}"]
        if f.last_entered:
            at = f" at {f.last_entered_at.short()}" if f.last_entered_at else ""
            evidence.append(f"last operation entered before the failure: `{f.last_entered}`{at}")
        if f.cuda_usable_after is not None:
            evidence.append("CUDA stayed usable afterwards" if f.cuda_usable_after
                            else "CUDA was left unusable; later results in this process are void")
        return Finding(
            "GSD003", "error", f"capture failed with CUDA error {err.code} ({err.name})",
            location=_labelled(f.location, "this line was running when CUDA rejected the capture"),
            evidence=evidence, stack=f.stack[1:],
            help="keep host synchronizations (`.item()`, `.cpu()`, `torch.cuda.synchronize()`, boolean-mask "
                 "indexing) and raw allocations out of the captured region; copy only from pinned memory",
            data={"cuda_error": err.code, "name": err.name, "last_entered": f.last_entered})
    where = {"setup": "building the target raised", "make_inputs": "make_inputs raised", "eager": "the target raised when run eagerly",
             "capture": "the target raised during capture", "replay": "replay raised"}.get(f.phase, "the target raised")
    return Finding(
        "GSD004", "error", f"{where}: {f.exc_type}",
        location=_labelled(f.location, "raised here"),
        evidence=[f"{f.exc_type}: {_first_line(f.message)}"], stack=f.stack[1:],
        help="make the target run eagerly first: `fn(*make_inputs(0))`" if f.phase != "capture" else
             "the target must run under `torch.cuda.graph`; see the exception",
        data={"phase": f.phase, "exc_type": f.exc_type, "message": f.message})


def _first_line(s: str) -> str:
    s = s.strip()
    return s.splitlines()[0] if s else s
