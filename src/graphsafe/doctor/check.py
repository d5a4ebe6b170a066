"""``graphsafe.check``: run a target eagerly and as a replayed CUDA graph, compare, and explain.

The check never passes the user's tensors to the target: every call gets fresh clones, so the
user's inputs are never modified. The capture input (``make_inputs(capture_seed)``) is never one of
the verification inputs: a graph that ignores its input is right on the input it was captured with.
"""
from __future__ import annotations

import contextlib
import platform
import time
import warnings
from typing import Any, Callable

import torch

from .. import __version__
from . import capture_errors, frames
from .classify import classify
from .compare import bitwise_equal, clone_tree, copy_into, leaves, same_values, stats
from .evidence import Comparison, Evidence, Failure, OutputEvidence
from .report import Report
from .target import Target, call, definition_site
from .trace import CaptureTracer


class _Abort(Exception):
    """Internal: stop the check; ``Evidence.failure`` says why."""


def check(fn: Callable[..., Any] | Target, make_inputs: Callable[[int], Any] | None = None, *,
          n_inputs: int = 3, capture_seed: int = 0, warmup: int = 2, rtol: float | None = None,
          atol: float | None = None, trace: bool = True, grad: bool = False, name: str | None = None) -> Report:
    """Check that ``fn`` gives the same results replayed from a CUDA graph as run eagerly.

    Parameters
    ----------
    fn : callable or Target
        What to capture: a function or ``nn.Module``. A :class:`Target` carries its own inputs.
    make_inputs : callable(seed) -> arguments
        Returns the call arguments for ``seed``: a tuple/list (positional), a dict (keywords) or a
        single argument. Different seeds must give different values; shapes must not change.
    n_inputs : int
        Verification inputs (seeds ``capture_seed + 1 ...``), each replayed and compared with eager.
    rtol, atol : float, optional
        Tolerances; default per dtype as ``torch.testing`` (integers exact).
    trace : bool
        Trace the capture with torch.profiler to find work that escaped it (GSD002).
    grad : bool
        Run with autograd enabled (default: under ``torch.no_grad()``).

    Returns
    -------
    Report
        ``verdict`` is ``match``, ``mismatch`` or ``inconclusive``; ``findings`` explain it.
    """
    target = fn if isinstance(fn, Target) else Target(fn, make_inputs, name or "")  # type: ignore[arg-type]
    if n_inputs < 1:
        raise ValueError(f"n_inputs must be at least 1, got {n_inputs}")
    ev = Evidence(target=target.name, capture_seed=capture_seed,
                  seeds=[capture_seed + 1 + i for i in range(n_inputs)])
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    if not torch.cuda.is_available():
        ev.no_cuda = (f"torch.cuda.is_available() is False (torch {torch.__version__}, "
                      f"CUDA build {torch.version.cuda or 'none'})")
    else:
        with torch.no_grad() if not grad else contextlib.nullcontext():
            with contextlib.suppress(_Abort):
                _run(target, ev, timings, warmup=warmup, rtol=rtol, atol=atol, trace=trace)
    timings["total_s"] = time.perf_counter() - t0
    verdict, findings = classify(ev, definition_site(target.fn))
    return Report(target=target.name, verdict=verdict, findings=findings, evidence=ev,
                  environment=environment(), timings={k: round(v, 4) for k, v in timings.items()})


def environment() -> dict[str, str]:
    env = {"graphsafe": __version__, "torch": torch.__version__, "python": platform.python_version()}
    if torch.cuda.is_available():
        env["device"] = torch.cuda.get_device_name()
        env["cuda"] = str(torch.version.cuda)
    return env


def _failure(phase: str, exc: BaseException) -> Failure:
    root = exc
    while root.__context__ is not None and root.__context__ is not root:
        root = root.__context__  # the first error: later ones (e.g. capture_end's) are its echo
    user = frames.user_frames(root.__traceback__)
    err = capture_errors.recognise(str(root)) or capture_errors.recognise(str(exc))
    return Failure(phase=phase, exc_type=type(root).__name__, message=str(root),
                   location=user[0] if user else None, stack=user[:8],
                   cuda_error=err.code if err else None)


def _recover_from_failed_capture(dev: torch.device) -> None:
    """When ``capture_end`` fails, PyTorch skips its RNG epilogue and leaves the CUDA generator in
    capture mode (eager RNG then raises "Offset increment outside graph capture"). An empty capture
    runs the prologue and epilogue again, which puts the generator back."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "The CUDA Graph is empty"
        with contextlib.suppress(Exception):
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, stream=torch.cuda.Stream(dev)):
                pass
            del graph


def _cuda_usable(dev: torch.device) -> bool:
    """Can this process still run CUDA work, RNG included?"""
    try:
        torch.cuda.synchronize(dev)
        x = torch.randn(8, device=dev)
        return bool(torch.isfinite(x).all()) and float(torch.ones(1, device=dev).add_(1).item()) == 2.0
    except Exception:  # noqa: BLE001 - that is the answer
        return False


def _eager(fn, inputs, ev: Evidence, phase: str = "eager"):
    try:
        out = call(fn, clone_tree(inputs))
        torch.cuda.synchronize()
        return clone_tree(out)
    except Exception as exc:
        ev.failure = _failure(phase, exc)
        raise _Abort from exc


def _device_of(inputs) -> torch.device:
    for t in leaves(inputs):
        if t.is_cuda:
            return t.device
    return torch.device("cuda", torch.cuda.current_device())


def _run(target: Target, ev: Evidence, timings: dict, *, warmup, rtol, atol, trace) -> None:
    try:
        cap_in = target.make_inputs(ev.capture_seed)
        ver_ins = [target.make_inputs(s) for s in ev.seeds]
    except Exception as exc:
        ev.failure = _failure("make_inputs", exc)
        raise _Abort from exc
    ev.indistinct_seeds = [s for s, v in zip(ev.seeds, ver_ins) if same_values(v, cap_in)]

    t = time.perf_counter()
    eager_cap = _eager(target.fn, cap_in, ev)
    eager_cap2 = _eager(target.fn, cap_in, ev)
    eager = [_eager(target.fn, v, ev) for v in ver_ins]
    timings["eager_s"] = time.perf_counter() - t
    if not leaves(eager_cap):
        ev.failure = Failure("eager", "TypeError", "the target returned no tensor; graphsafe compares tensor outputs")
        raise _Abort
    ev.eager_unstable = not all(stats(a, b, rtol, atol).close for a, b in zip(leaves(eager_cap), leaves(eager_cap2)))

    dev = _device_of(cap_in)
    static = clone_tree(cap_in)
    stream = torch.cuda.Stream(dev)
    stream.wait_stream(torch.cuda.current_stream(dev))
    with torch.cuda.stream(stream):
        for _ in range(warmup):  # warm up on a side stream, as torch.cuda.graph's docs ask
            _eager(target.fn, static, ev)
    torch.cuda.current_stream(dev).wait_stream(stream)
    copy_into(static, cap_in)
    torch.cuda.synchronize(dev)

    t = time.perf_counter()
    graph = torch.cuda.CUDAGraph()
    tracer = CaptureTracer() if trace else None
    if tracer is not None and tracer.start():
        tracer.calibrate(stream)
    failure = None
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught, torch.cuda.graph(graph, stream=stream):
            warnings.simplefilter("always")
            if tracer is not None:
                tracer.open_window()
            try:
                static_out = call(target.fn, static)
            finally:
                if tracer is not None:
                    tracer.close_window()
        torch.cuda.synchronize(dev)
    except Exception as exc:
        failure = _failure("capture", exc)
    if tracer is not None:
        tr = tracer.stop()
        ev.escaped, ev.stream_ids, ev.trace_error = tr.escaped, tr.stream_ids, tr.error
        ev.launches_in_window = tr.launches_in_window
        if failure is not None:
            failure.last_entered, failure.last_entered_at = tr.last_entered, tr.last_entered_at
    ev.capture_warnings = sorted({str(w.message) for w in caught if "graph" in str(w.message).lower()})
    timings["capture_s"] = time.perf_counter() - t
    if failure is not None:
        _recover_from_failed_capture(dev)
        failure.cuda_usable_after = _cuda_usable(dev)
        ev.failure = failure
        raise _Abort

    snapshot = clone_tree(static_out)
    t = time.perf_counter()
    replays = []
    try:
        for v in ver_ins:
            copy_into(static, v)
            graph.replay()
            torch.cuda.synchronize(dev)
            replays.append(clone_tree(static_out))
    except Exception as exc:
        ev.failure = _failure("replay", exc)
        raise _Abort from exc
    timings["replay_s"] = time.perf_counter() - t

    for j, (snap, e_cap) in enumerate(zip(leaves(snapshot), leaves(eager_cap))):
        o = OutputEvidence(index=j, shape=list(e_cap.shape), dtype=str(e_cap.dtype).replace("torch.", ""))
        for seed, rep, eag in zip(ev.seeds, replays, eager):
            r, e = leaves(rep)[j], leaves(eag)[j]
            s = stats(r, e, rtol, atol)
            o.comparisons.append(Comparison(
                seed=seed, max_abs=s.max_abs, max_rel=s.max_rel, mismatched=s.mismatched, numel=s.numel,
                close=s.close, bitwise_equal=s.bitwise_equal,
                replay_equals_capture_time=bitwise_equal(r, snap), eager_moved=not bitwise_equal(e, e_cap)))
        ev.outputs.append(o)
    del graph
