"""``graphsafe.check``: run a target eagerly and as a replayed CUDA graph, compare, and explain.

The check never passes the user's tensors to the target: every call gets fresh clones, so the
user's inputs are never modified. The capture input (``make_inputs(capture_seed)``) is never one of
the verification inputs: a graph that ignores its input is right on the input it was captured with.

Phases (each call and replay is bounded by ``timeout_s``):

1. eager on the capture input three times, snapshotting the target's host state after each call
   (side effects, in-place state, eager stability); the uninitialized-memory, race and RNG probes;
2. eager on each verification input, holding each output to see whether a later call overwrites it;
3. warm-up, then the capture, traced (escaped work) — unless the target replays graphs itself;
4. replays on each verification input, again on the first (drift) and with another RNG seed;
5. comparisons: replay vs eager, vs eager on the padded input, vs eager with capture-time host values.
"""
from __future__ import annotations

import contextlib
import dataclasses
import time
import warnings
from typing import Any, Callable

import torch

from . import capture_errors, frames, options, probes, state
from ..diagnostics import Finding
from .classify import _failure as classify_failure
from .classify import classify
from .environment import environment, no_cuda_reason
from .compare import (all_close, bitwise_equal, clone_tree, copy_into, leaves, noise_floor, padded_like, padding,
                      same_values, stats, unpad)
from .evidence import Census, Comparison, Evidence, Failure, HostValue, OutputEvidence, Overwrite, TensorState
from .report import Report
from .target import Target, call, definition_site
from .locate.cugraph import captured_kernels, keepable_graph
from .locate.findings import located
from .locate.localize import localize_safely, should_locate
from .trace import CaptureTracer

_RNG_SHIFT = 7919  # a second RNG seed for the same input
_HUNG: list = []   # checks whose GPU work never finished: kept alive for the life of the process


class _Abort(Exception):
    """Internal: stop the check; ``Evidence.failure`` says why."""


def check(fn: Callable[..., Any] | Target, make_inputs: Callable[[int], Any] | None = None, *,
          n_inputs: int = 3, capture_seed: int = 0, warmup: int = 2, rtol: float | None = None,
          atol: float | None = None, trace: bool = True, grad: bool = False, name: str | None = None,
          probe: bool = True, timeout_s: float = 60.0, locate: str | bool = "auto", html: str | None = None,
          repro: str | None = None, read_graph: bool = False) -> Report:
    """Check that ``fn`` gives the same results replayed from a CUDA graph as run eagerly.

    Parameters
    ----------
    fn : callable or Target
        What to capture: a function or ``nn.Module``. A :class:`Target` carries its own inputs (and
        optionally ``prepare``, ``reference`` and ``state``).
    make_inputs : callable(seed) -> arguments
        Returns the call arguments for ``seed``: a tuple/list (positional), a dict (keywords) or a
        single argument. Different seeds must give different values. Shapes must not change, except
        a smaller leading (batch) dimension, which is padded as a bucketed runner pads it.
    n_inputs : int
        Verification inputs (seeds ``capture_seed + 1 ...``), each replayed and compared with eager.
    rtol, atol : float, optional
        Tolerances; default per dtype as ``torch.testing`` (integers exact).
    trace : bool
        Trace the capture with torch.profiler to find escaped work (GSD002) and list kernels.
    probe : bool
        Run the behavioural probes (uninitialized memory, races, RNG, drift) besides the comparison.
    timeout_s : float
        Bound on every eager call and replay; a call that does not finish is reported (GSD021).
    locate : "auto", "always" or "never"
        After the verdict, localize: the first divergent operation (GSD023), the graph census (GSD026),
        frozen kernel arguments (GSD024) and graph races (GSD025). ``"auto"`` runs it on a mismatch.
        It runs separately from the verdict run and never changes the verdict.
    html, repro : str, optional
        Write the picture of the captured graph / a standalone script reproducing the first divergent
        operation alone (either implies ``locate="always"``).
    read_graph : bool
        Read the captured graph's kernel nodes (cuda-bindings) right after capture, before any replay, into
        ``evidence.graph_kernels``. Checks under torchrun do, so the ranks' collectives can be compared even
        when a replay hangs.

    Returns
    -------
    Report
        ``verdict`` is ``match``, ``benign``, ``mismatch`` or ``inconclusive``; ``findings`` explain it.
    """
    options.validate(n_inputs=n_inputs, capture_seed=capture_seed, warmup=warmup, rtol=rtol, atol=atol,
                     timeout_s=timeout_s, locate=locate, html=html, repro=repro)
    if isinstance(fn, Target):
        if make_inputs is not None:
            raise TypeError("make_inputs: a Target carries its own inputs; pass a Target or fn with make_inputs")
        target = dataclasses.replace(fn, name=name) if name else fn
    else:
        target = Target(fn, make_inputs, name or "")  # type: ignore[arg-type]
    ev = Evidence(target=target.name, capture_seed=capture_seed,
                  seeds=[capture_seed + 1 + i for i in range(n_inputs)])
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    ev.no_cuda = no_cuda_reason()
    if ev.no_cuda is None:
        with torch.no_grad() if not grad else contextlib.nullcontext(), probes.rng_preserved():
            run = _Run(target, ev, timings, warmup=warmup, rtol=rtol, atol=atol, trace=trace, probe=probe,
                       timeout_s=timeout_s, read_graph=read_graph)
            with contextlib.suppress(_Abort):
                run.run()
            if ev.failure is not None and ev.failure.timed_out_after_s is not None:
                _HUNG.append(run)  # never free a graph or buffers the GPU may still be using
            del run
    verdict, findings = classify(ev, definition_site(target.fn))
    if should_locate(locate, verdict, html, repro) and ev.failure is None and ev.no_cuda is None \
            and not ev.probes.graph_backed:
        tick = time.perf_counter()
        with torch.no_grad() if not grad else contextlib.nullcontext(), probes.rng_preserved():
            ev.locate = localize_safely(target, ev, rtol=rtol, atol=atol, timeout_s=timeout_s, html=html, repro=repro)
        timings["locate_s"] = time.perf_counter() - tick
        findings = findings + located(ev.locate, ev.capture_seed)  # after the verdict, which stands
    timings["total_s"] = time.perf_counter() - t0
    return Report(target=target.name, verdict=verdict, findings=findings, evidence=ev,
                  environment=environment(), timings={k: round(v, 4) for k, v in timings.items()})


def _failure(phase: str, exc: BaseException) -> Failure:
    root = exc
    while root.__context__ is not None and root.__context__ is not root:
        root = root.__context__  # the first error: later ones (e.g. capture_end's) are its echo
    user = frames.user_frames(root.__traceback__)
    err = capture_errors.recognise(str(root)) or capture_errors.recognise(str(exc))
    f = Failure(phase=phase, exc_type=type(root).__name__, message=str(root),
                location=user[0] if user else None, stack=user[:8], cuda_error=err.code if err else None)
    if isinstance(root, probes.CallTimeout):
        f.timed_out_after_s = root.seconds
    return f


def failure_finding(phase: str, exc: BaseException, target: str) -> tuple[Failure, Finding]:
    """The doctor's diagnosis of one exception on its own (a runner's or the sentinel's failed capture)."""
    failure = _failure(phase, exc)
    return failure, classify_failure(Evidence(target=target, failure=failure))


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


def _device_of(inputs) -> torch.device:
    for t in leaves(inputs):
        if t.is_cuda:
            return t.device
    return torch.device("cuda", torch.cuda.current_device())


class _Run:
    """One check's state; ``run()`` fills ``ev`` or raises ``_Abort`` with ``ev.failure`` set."""

    def __init__(self, target: Target, ev: Evidence, timings: dict, *, warmup, rtol, atol, trace, probe,
                 timeout_s, read_graph=False):
        self.t, self.ev, self.timings = target, ev, timings
        self.warmup, self.rtol, self.atol, self.trace, self.probe = warmup, rtol, atol, trace, probe
        self.timeout_s, self.read_graph = timeout_s, read_graph
        self.tracer: CaptureTracer | None = None

    # -- one step of the program ---------------------------------------------------------------------
    def _guard(self, phase: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except _Abort:
            raise
        except Exception as exc:  # noqa: BLE001 - recorded as the failure
            self.ev.failure = _failure(phase, exc)
            if not isinstance(exc, probes.CallTimeout):
                self.ev.failure.cuda_usable_after = _cuda_usable(self.dev)
            self.tracer = None  # a hung or faulted GPU: do not wait for the profiler
            raise _Abort from exc

    def eager(self, seed: int, inputs: Any, *, prepare_seed: int | None = None, rng_seed: int | None = None,
              keep: list | None = None) -> Any:
        """``prepare(seed)``, seed the generators, call on fresh clones; returns a clone of the output."""
        def go():
            if self.t.prepare is not None:
                self.t.prepare(seed if prepare_seed is None else prepare_seed)
            probes.seed_all(seed if rng_seed is None else rng_seed)
            args = clone_tree(inputs)
            out = call(self.t.fn, args)
            probes.wait(self.dev, self.timeout_s, f"eager call on input {seed}")
            self.ev.last_step = f"eager call on input {seed}"
            if keep is not None:
                keep.append((out, args))
            return clone_tree(out)
        return self._guard("eager", go)

    def replay(self, seed: int, inputs: Any, rng_seed: int | None = None) -> Any:
        def go():
            if self.t.prepare is not None:
                self.t.prepare(seed)
            probes.seed_all(seed if rng_seed is None else rng_seed)
            copy_into(self.static, inputs)
            self.graph.replay()
            probes.wait(self.dev, self.timeout_s, f"replay on input {seed}")
            self.ev.last_step = f"replay on input {seed}"
            return clone_tree(self.static_out)
        return self._guard("replay", go)

    # -- the phases ----------------------------------------------------------------------------------
    def run(self) -> None:
        ev, t = self.ev, self.t
        try:
            self.cap_in = t.make_inputs(ev.capture_seed)
            self.ver_ins = [t.make_inputs(s) for s in ev.seeds]
            self.pads = {s: padding(self.cap_in, v) for s, v in zip(ev.seeds, self.ver_ins)}
        except Exception as exc:
            ev.failure = _failure("make_inputs", exc)
            raise _Abort from exc
        self.dev = _device_of(self.cap_in)
        ev.indistinct_seeds = [s for s, v in zip(ev.seeds, self.ver_ins)
                               if self.pads[s] is None and same_values(v, self.cap_in)]
        ev.host_values = probes.host_values(t.fn, self.cap_in, dict(zip(ev.seeds, self.ver_ins)))
        self.objs = state.roots(t.fn, t.state)
        tick = time.perf_counter()
        self._eager_capture_input()
        if self.probe:
            self._eager_probes()
        self._eager_verification()
        self.timings["eager_s"] = time.perf_counter() - tick
        if ev.probes.graph_backed:
            self._graph_backed()
            return
        self._capture()
        self._replays()
        self._compare()

    def _eager_capture_input(self) -> None:
        ev, cs = self.ev, self.ev.capture_seed
        outs, snaps, kept = [], [], []
        with probes.count_replays() as replays:
            for _ in range(3):
                outs.append(self.eager(cs, self.cap_in, keep=kept))
                snaps.append(state.snapshot(self.objs))
        ev.probes.graph_backed = replays[0] > 0
        if not leaves(outs[0]):
            ev.failure = Failure("eager", "TypeError", "the target returned no tensor; graphsafe compares tensor outputs")
            raise _Abort
        ev.probes.eager_calls_differ = not all_close(outs[1], outs[2], self.rtol, self.atol)
        ev.eager_unstable = ev.probes.eager_calls_differ or not all_close(outs[0], outs[1], self.rtol, self.atol)
        ev.side_effects = state.side_effects(snaps[1], snaps[2], self.objs)
        ev.tensor_state = state.tensor_changes(*snaps, self.objs)
        _, args = kept[-1]
        for i, (a, b) in enumerate(zip(leaves(args), leaves(self.cap_in))):
            if not bitwise_equal(a, b):
                ev.tensor_state.append(TensorState(f"input {i}", "input", "mutated", "changes",
                                                   "the call wrote into this argument"))
        self.eager_cap = outs[-1]

    def _eager_probes(self) -> None:
        ev, cs, v1, s1 = self.ev, self.ev.capture_seed, self.ver_ins[0], self.ev.seeds[0]
        try:
            ev.probes.uninitialized = probes.uninitialized(lambda: self.eager(cs, self.cap_in))
        except _Abort:
            raise
        except Exception as exc:  # noqa: BLE001 - a probe that cannot run is reported, not fatal
            ev.probes.errors.append(f"uninitialized-memory probe: {type(exc).__name__}: {exc}")
        try:
            ev.races = probes.races(lambda: self.eager(cs, self.cap_in))
        except _Abort:
            raise
        except Exception as exc:  # noqa: BLE001
            ev.probes.errors.append(f"race probe: {type(exc).__name__}: {exc}")
        a = self.eager(s1, v1)
        b = self.eager(s1, v1, rng_seed=s1 + _RNG_SHIFT)
        self.eager_rng = b
        ev.probes.rng_eager_sensitive = not all_close(a, b, self.rtol, self.atol)

    def _eager_verification(self) -> None:
        ev = self.ev
        if self.trace:
            self.tracer = CaptureTracer()
            if not self.tracer.start():
                ev.trace_error = self.tracer.result.error
                self.tracer = None
        self.eager_out, held = [], []
        for k, (s, v) in enumerate(zip(ev.seeds, self.ver_ins)):
            window = self.tracer.census("eager") if (self.tracer and k == 0) else contextlib.nullcontext()
            with window:
                self.eager_out.append(self.eager(s, v, keep=held))
            for i in range(k):  # did this call change what an earlier call returned?
                if any(o.call == i for o in ev.overwrites):
                    continue
                for j, (old, copy) in enumerate(zip(leaves(held[i][0]), leaves(self.eager_out[i]))):
                    if not bitwise_equal(old, copy):
                        same = any(old.untyped_storage().data_ptr() == new.untyped_storage().data_ptr()
                                   for new in leaves(held[k][0]))
                        ev.overwrites.append(Overwrite(j, i, k, same, stats(old, copy).max_abs))
                        break

    def _graph_backed(self) -> None:
        """The target replays CUDA graphs itself: compare it with ``reference`` when one is given."""
        if self.tracer is not None:
            self.tracer.stop()
        if self.t.reference is None:
            return
        ref = Target(self.t.reference, self.t.make_inputs)
        for s, v, out in zip(self.ev.seeds, self.ver_ins, self.eager_out):
            r = self._guard("eager", lambda v=v: clone_tree(call(ref.fn, clone_tree(v))))
            self._record(s, r, out, snap=None, eager_cap=None)  # the reference is the oracle

    def _capture(self) -> None:
        ev, dev, cs = self.ev, self.dev, self.ev.capture_seed
        static = clone_tree(self.cap_in)
        stream = torch.cuda.Stream(dev)
        stream.wait_stream(torch.cuda.current_stream(dev))
        with torch.cuda.stream(stream):
            for _ in range(self.warmup):  # warm up on a side stream, as torch.cuda.graph's docs ask
                self.eager(cs, static)
        torch.cuda.current_stream(dev).wait_stream(stream)
        copy_into(static, self.cap_in)
        torch.cuda.synchronize(dev)
        if self.t.prepare is not None:
            self._guard("eager", lambda: self.t.prepare(cs))
        probes.seed_all(cs)
        tick = time.perf_counter()
        graph, kept = keepable_graph(ev.probes.errors) if self.read_graph else (torch.cuda.CUDAGraph(), False)
        tracer = self.tracer
        if tracer is not None:
            tracer.calibrate(stream)
        failure, caught = None, []
        try:
            with warnings.catch_warnings(record=True) as caught, torch.cuda.graph(graph, stream=stream):
                warnings.simplefilter("always")
                if tracer is not None:
                    tracer.open_window()
                try:
                    static_out = call(self.t.fn, static)
                finally:
                    if tracer is not None:
                        tracer.close_window()
            probes.wait(dev, self.timeout_s, "capture")
            if kept:  # the captured kernels before a replay (which may hang); capture_end did not instantiate
                ev.graph_kernels = captured_kernels(graph, ev.probes.errors)
                graph.instantiate()
            ev.last_step = f"capture on input {cs}"
        except Exception as exc:  # noqa: BLE001 - recorded
            failure = _failure("capture", exc)
        ev.capture_warnings = sorted({str(w.message) for w in caught if "graph" in str(w.message).lower()})
        self.timings["capture_s"] = time.perf_counter() - tick
        if failure is not None:
            self._stop_tracer(failure)
            if failure.timed_out_after_s is None:
                _recover_from_failed_capture(dev)
                failure.cuda_usable_after = _cuda_usable(dev)
            ev.failure = failure
            raise _Abort
        self.graph, self.static, self.static_out = graph, static, static_out
        self.snap_capture = state.snapshot(self.objs, sums=False)
        self.snapshot_out = clone_tree(static_out)

    def _stop_tracer(self, failure: Failure | None = None) -> None:
        tracer, self.tracer = self.tracer, None
        if tracer is None:
            return
        tr = tracer.stop()
        ev = self.ev
        ev.escaped, ev.stream_ids, ev.trace_error = tr.escaped, tr.stream_ids, tr.error
        ev.launches_in_window = tr.launches_in_window
        if failure is not None:
            failure.last_entered, failure.last_entered_at = tr.last_entered, tr.last_entered_at
        if "eager" in tr.census and "replay" in tr.census:
            e, g = tr.census["eager"], tr.census["replay"]
            ev.census = Census(ev.seeds[0], e, g, _minus(e, g), _minus(g, e))

    def _replays(self) -> None:
        ev, s1, v1 = self.ev, self.ev.seeds[0], self.ver_ins[0]
        tick = time.perf_counter()
        if self.t.prepare is not None:
            self._guard("eager", lambda: self.t.prepare(s1))
        now = state.snapshot(self.objs, sums=False)
        moved_by_forward = {c.path for c in ev.side_effects}
        ev.rebound = [r for r in state.rebindings(self.snap_capture, now, self.objs,
                                                  [self.t.prepare] if self.t.prepare else [])
                      if r.path not in moved_by_forward]
        for path, (before, after) in state.changed_values(self.snap_capture, now).items():
            if path not in moved_by_forward:
                ev.host_values.append(HostValue(path, "attribute", before, {str(s1): after}))
        self.replay_out = []
        for k, (s, v) in enumerate(zip(ev.seeds, self.ver_ins)):
            window = self.tracer.census("replay") if (self.tracer and k == 0) else contextlib.nullcontext()
            with window:
                self.replay_out.append(self.replay(s, v))
            if k == 0:
                self._stop_tracer()
        if self.probe:
            again = self.replay(s1, v1)
            pairs = [(stats(a, b), j) for j, (a, b) in enumerate(zip(leaves(again), leaves(self.replay_out[0])))]
            worst = [(st.max_abs, j) for st, j in pairs if not st.close]
            if worst:
                ev.probes.replay_drift, ev.probes.replay_drift_output = max(worst)
            ev.probes.input_compounds = self._input_compounds(s1, v1, again)
            other = self.replay(s1, v1, rng_seed=s1 + _RNG_SHIFT)
            ev.probes.rng_replay_sensitive = not all_close(other, again, self.rtol, self.atol)
            ev.probes.rng_replay_matches_eager = all_close(other, self.eager_rng, self.rtol, self.atol)
        self.timings["replay_s"] = time.perf_counter() - tick

    def _input_compounds(self, s1: int, v1: Any, first: Any) -> bool | None:
        """Replay once more without copying the input in again: if the graph wrote into its static
        input and the output moves, each replay compounds on the last (a runner that keeps a static
        input, such as a cache, sees this)."""
        written = [i for i, (a, b) in enumerate(zip(leaves(self.static), leaves(v1))) if
                   a.shape == b.shape and not bitwise_equal(a, b)]
        if not written:
            return None

        def go():
            if self.t.prepare is not None:
                self.t.prepare(s1)
            probes.seed_all(s1)
            self.graph.replay()
            probes.wait(self.dev, self.timeout_s, f"replay on input {s1}")
            return clone_tree(self.static_out)
        return not all_close(self._guard("replay", go), first, self.rtol, self.atol)

    def _compare(self) -> None:
        ev, cs = self.ev, self.ev.capture_seed
        host = bool(ev.host_values)
        for s, v, e, r in zip(ev.seeds, self.ver_ins, self.eager_out, self.replay_out):
            pad = self.pads[s]
            e_pad = unpad(self.eager(s, padded_like(v, self.cap_in)), pad) if pad else None
            e_host = self.eager(s, probes.with_host_values(v, self.cap_in), prepare_seed=cs) if host else None
            self._record(s, e, unpad(r, pad), snap=unpad(self.snapshot_out, pad), eager_cap=self.eager_cap,
                         pad=pad, e_pad=e_pad, e_host=e_host)
        for o in ev.outputs:
            first = [leaves(r)[o.index] for r in self.replay_out]
            o.replays_identical = all(bitwise_equal(first[0], x) for x in first[1:])
        del self.graph

    def _record(self, seed, e, r, *, snap, eager_cap, pad=None, e_pad=None, e_host=None) -> None:
        ev = self.ev
        for j, (eag, rep) in enumerate(zip(leaves(e), leaves(r))):
            if len(ev.outputs) <= j:
                ev.outputs.append(OutputEvidence(index=j, shape=list(eag.shape),
                                                 dtype=str(eag.dtype).replace("torch.", "")))
            s = stats(rep, eag, self.rtol, self.atol)
            c = Comparison(seed=seed, max_abs=s.max_abs, max_rel=s.max_rel, mismatched=s.mismatched,
                           numel=s.numel, close=s.close, bitwise_equal=s.bitwise_equal,
                           replay_equals_capture_time=snap is not None and j < len(leaves(snap))
                           and bitwise_equal(rep, leaves(snap)[j]),
                           eager_moved=eager_cap is not None and j < len(leaves(eager_cap))
                           and not bitwise_equal(eag, leaves(eager_cap)[j]))
            if pad is not None and e_pad is not None:
                p = leaves(e_pad)[j]
                c.padded_from, c.noise_floor = pad[0], noise_floor(eag)
                c.close_to_eager_padded = stats(rep, p, self.rtol, self.atol).close
                c.bitwise_equal_to_eager_padded = bitwise_equal(rep, p)
            if e_host is not None:
                c.close_to_eager_capture_host = stats(rep, leaves(e_host)[j], self.rtol, self.atol).close
            ev.outputs[j].comparisons.append(c)


def _minus(a: list[str], b: list[str]) -> list[str]:
    rest = list(b)
    out = []
    for x in a:
        if x in rest:
            rest.remove(x)
        elif x not in out:
            out.append(x)
    return out
