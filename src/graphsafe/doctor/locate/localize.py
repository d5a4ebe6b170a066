"""Localization: after the verdict, find where replay and eager part, and what the graph holds.

It runs only after the verdict run is over and never feeds back into the verdict. Steps (each timed):

1. ``eager``: the target eagerly on a verification input that diverged, every step's output cloned;
2. ``capture``: a capture on the capture input with the same instrumentation (the clones are captured
   too, and each graph node is attributed to the step that added it), replayed on that input;
3. ``compare``: the first step whose replayed output differs from eager (the *first divergent op*);
4. ``census``: the graph's nodes against the kernels an uninstrumented eager call launched;
5. ``frozen``: a second capture on the verification input; kernel arguments that differ are baked in;
6. ``races``: unordered node pairs that touch overlapping memory, one writing;
7. ``html`` / ``repro``: the picture and the standalone script, when asked.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
import warnings
from typing import Any

import torch

from .. import probes
from ..compare import clone_tree, copy_into, leaves, padded_like, padding, stats
from ..evidence import Evidence
from ..target import Target, call
from . import analysis
from .model import Divergence, GraphNodeInfo, Localization, StepInfo
from .record import Recorder, Step, tensor_span


def module_names(target: Target) -> dict[int, str]:
    """id(module) -> dotted path, rooted at ``model`` for a module target (else at the object's name)."""
    from .. import state

    names: dict[int, str] = {}
    fn = target.fn
    roots: dict[str, Any] = {"model": fn} if isinstance(fn, torch.nn.Module) else {}
    with contextlib.suppress(Exception):
        roots.update({k: v for k, v in state.roots(fn, target.state).items() if isinstance(v, torch.nn.Module)})
    for root, mod in roots.items():
        for path, m in mod.named_modules(prefix=root):
            names.setdefault(id(m), path)
    return names


def info(step: Step, kernels: list[str] | None = None) -> StepInfo:
    return StepInfo(step.index, step.kind, step.op, step.module, step.location, step.stack[1:], kernels or [])


def diverged_seed(ev: Evidence) -> int:
    for o in ev.outputs:
        for c in o.comparisons:
            if not c.close:
                return c.seed
    return ev.seeds[0]


class Localizer:
    def __init__(self, target: Target, ev: Evidence, *, rtol=None, atol=None, timeout_s: float = 60.0,
                 html: str | None = None, repro: str | None = None) -> None:
        self.t, self.ev, self.rtol, self.atol, self.timeout_s = target, ev, rtol, atol, timeout_s
        self.html_path, self.repro_path = html, repro
        self.loc = Localization()
        self._capture_steps: dict[int, Step | None] = {}
        self.names = module_names(target)

    def _timed(self, name: str, fn, *args):
        tick = time.perf_counter()
        try:
            return fn(*args)
        except Exception as exc:  # noqa: BLE001 - a part that fails is reported; the others still run
            self.loc.errors.append(f"{name}: {type(exc).__name__}: {exc} ({_where(exc)})")
            return None
        finally:
            self.loc.timings[f"{name}_s"] = round(time.perf_counter() - tick, 4)

    def run(self) -> Localization:
        ev, t = self.ev, self.t
        self.seed, cs = diverged_seed(ev), ev.capture_seed
        self.cap_in = t.make_inputs(cs)
        v = t.make_inputs(self.seed)
        pad = padding(self.cap_in, v)
        self.v = padded_like(v, self.cap_in) if pad else v
        self.dev = next((x.device for x in leaves(self.cap_in) if x.is_cuda), torch.device("cuda"))
        diverged = any(not c.close for o in ev.outputs for c in o.comparisons)
        eager = self._timed("eager", self._eager, self.seed, self.v, True, None) if diverged else None
        cap = self._timed("capture", self._capture, cs, self.cap_in, diverged, self.v if diverged else None)
        if eager is not None and cap is not None:
            self._timed("compare", self._compare, eager, cap)
        raw_a = cap[2] if cap else None
        if cap is not None:
            self.loc.steps = len(cap[0])
        if raw_a is not None:
            self._timed("census", self._census, raw_a)
            self._timed("frozen", self._frozen, raw_a, cap[0])
            self._timed("races", self._races, raw_a, cap[0])
            self.loc.nodes = len(raw_a.nodes)
        if self.html_path:
            self._timed("html", self._html, raw_a, cap[0] if cap else None)
        if self.repro_path:
            self._timed("repro", self._repro)
        return self.loc

    # -- the instrumented runs -------------------------------------------------------------------------
    def _prepare(self, seed: int, rng_seed: int | None = None) -> None:
        if self.t.prepare is not None:
            self.t.prepare(seed)
        probes.seed_all(seed if rng_seed is None else rng_seed)

    def _eager(self, seed: int, inputs: Any, snapshot: bool, keep_args_for: int | None) -> list[Step]:
        self._prepare(seed)
        args = clone_tree(inputs)
        with Recorder(self.names, snapshot=snapshot, keep_args_for=keep_args_for, keep_alive=snapshot) as rec:
            out = call(self.t.fn, args)
        probes.wait(self.dev, self.timeout_s, "instrumented eager call")
        if keep_args_for is None:
            self._returned = [sp for sp in (tensor_span(t) for t in leaves(out)) if sp is not None]
        return rec.steps

    def _capture(self, seed: int, inputs: Any, snapshot: bool, replay_with: Any | None):
        """Capture under instrumentation; replay on ``replay_with`` (the snapshots then hold the graph's
        values). Returns (steps, recorder, raw graph, graph)."""
        from .cugraph import read_graph
        from .record import GraphWatch

        static = clone_tree(inputs)
        side = torch.cuda.Stream(self.dev)
        side.wait_stream(torch.cuda.current_stream(self.dev))
        with torch.cuda.stream(side):
            self._prepare(seed)
            call(self.t.fn, clone_tree(static))  # warm-up, as torch.cuda.graph asks
        torch.cuda.current_stream(self.dev).wait_stream(side)
        torch.cuda.synchronize(self.dev)
        self._prepare(seed)
        graph = torch.cuda.CUDAGraph(keep_graph=True)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with torch.cuda.graph(graph, stream=side):
                    rec = Recorder(self.names, snapshot=snapshot, watch=GraphWatch(side))
                    with rec:
                        call(self.t.fn, static)
                    rec.watch.take()  # anything after the last step is unattributed
        except Exception:
            from ..check import _recover_from_failed_capture

            _recover_from_failed_capture(self.dev)
            raise
        raw = read_graph(graph.raw_cuda_graph())
        by_handle = {h: i for i, h in enumerate(raw.handles)}
        for s in rec.steps:
            for h in s.nodes:
                if h in by_handle:
                    raw.nodes[by_handle[h]].step = s.index
        for h in rec.instrumentation_nodes:
            if h in by_handle:
                raw.nodes[by_handle[h]].instrumentation = True
        for s in rec.steps:
            kernels = [raw.nodes[by_handle[h]].name for h in s.nodes
                       if h in by_handle and raw.nodes[by_handle[h]].kind == "kernel"]
            s.kernels = kernels
        if replay_with is not None:
            graph.instantiate()
            self._prepare(self.seed)
            copy_into(static, replay_with)
            graph.replay()
            probes.wait(self.dev, self.timeout_s, "instrumented replay")
        return rec.steps, rec, raw, graph

    # -- 3: the first divergent step ---------------------------------------------------------------------
    def _compare(self, eager: list[Step], cap) -> None:
        import difflib

        steps_c = cap[0]
        key = lambda s: (s.kind, s.op, s.module)  # noqa: E731
        sm = difflib.SequenceMatcher(a=[key(s) for s in eager], b=[key(s) for s in steps_c], autojunk=False)
        compared = 0
        for tag, i1, i2, j1, j2 in sm.get_opcodes():
            if tag != "equal":
                e = eager[i1] if i1 < i2 else None
                if e is not None:
                    self.loc.divergence = Divergence(
                        step=info(e), output=-1, shape=[], dtype="", max_abs=float("inf"), max_rel=float("inf"),
                        mismatched=0, numel=0, seed=self.seed, steps_compared=compared, reason="not-captured")
                    return
                continue
            for e, c in zip(eager[i1:i2], steps_c[j1:j2]):
                compared += 1
                for j, (a, b) in enumerate(zip(e.snaps, c.snaps)):
                    if a is None or b is None or (a.shape == b.shape and torch.equal(a, b)):
                        continue
                    st = stats(b, a, self.rtol, self.atol)
                    if st.close or not self._used(eager, e, j):
                        continue
                    self.loc.divergence = Divergence(
                        step=info(c, c.kernels), output=j, shape=list(a.shape),
                        dtype=str(a.dtype).replace("torch.", ""), max_abs=st.max_abs, max_rel=st.max_rel,
                        mismatched=st.mismatched, numel=st.numel, seed=self.seed, steps_compared=compared,
                        inputs_agree=compared > 1 or None,
                        replay_equals_capture=self._equals_capture(c.index, j, b))
                    return
        self.loc.no_divergence = (
            f"all {compared} recorded steps agree between replay and eager on input {self.seed}: the divergence "
            "did not reproduce under instrumentation (it may depend on timing, as races do, or on memory layout)")

    def _used(self, eager: list[Step], step: Step, j: int) -> bool:
        """Does anything read this output later (a later step, or the target's result)? Outputs nobody
        reads (an attention kernel's RNG state, say) cannot explain a divergence."""
        span = step.spans[j] if j < len(step.spans) else None
        if span is None:
            return True
        lo, hi = span
        if any(s < hi and lo < e for s, e in self._returned):
            return True
        return any(a.start < hi and lo < a.end for later in eager[step.index + 1:] for a in later.accesses)

    def _at_capture(self, index: int) -> Step | None:
        """Step ``index`` of an eager run on the capture input (its output and its arguments), run once."""
        if index not in self._capture_steps:
            steps = self._eager(self.ev.capture_seed, self.cap_in, True, index)
            self._capture_steps[index] = steps[index] if index < len(steps) else None
        return self._capture_steps[index]

    def _equals_capture(self, index: int, j: int, replayed: torch.Tensor) -> bool | None:
        """Is the replayed value the one eager computes on the capture input (a stale step)?"""
        step = self._at_capture(index)
        if step is None or j >= len(step.snaps) or step.snaps[j] is None:
            return None
        return step.snaps[j].shape == replayed.shape and bool(torch.equal(step.snaps[j], replayed))

    # -- 4-6: the graph ---------------------------------------------------------------------------------
    def _eager_kernels(self) -> list[dict]:
        from torch.profiler import ProfilerActivity, profile

        self._prepare(self.seed)
        args = clone_tree(self.v)
        torch.cuda.synchronize(self.dev)
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            call(self.t.fn, args)
            torch.cuda.synchronize(self.dev)
        fd, path = tempfile.mkstemp(suffix=".json", prefix="graphsafe-trace-")
        os.close(fd)
        try:
            prof.export_chrome_trace(path)
            with open(path) as f:
                trace = json.load(f)
        finally:
            os.unlink(path)
        kernels = [e for e in trace.get("traceEvents", []) if e.get("cat") == "kernel"]
        kernels.sort(key=lambda e: e.get("ts", 0))
        return [{"name": e.get("name", ""), "grid": (e.get("args") or {}).get("grid"),
                 "block": (e.get("args") or {}).get("block"), "stream": (e.get("args") or {}).get("stream")}
                for e in kernels]

    def _census(self, raw) -> None:
        self.loc.census = analysis.census(self._eager_kernels(), raw.nodes)

    def _step_infos(self, steps: list[Step]) -> dict[int, StepInfo]:
        return {s.index: info(s, s.kernels) for s in steps}

    def _frozen(self, raw_a, steps_a: list[Step]) -> None:
        """Capture again on the capture input (A2: what varies between identical captures is noise) and
        on the verification input with its host state (B: what else varies was baked in)."""
        from .cugraph import is_device_pointer

        _, _, raw_a2, g_a2 = self._capture(self.ev.capture_seed, self.cap_in, False, None)
        _, _, raw_b, g_b = self._capture(self.seed, self.v, False, None)
        names = {n.id: steps_a[n.step].arg_names for n in raw_a.nodes if n.kind == "kernel" and n.step is not None}
        self.loc.frozen = analysis.frozen_args(raw_a.nodes, raw_a.params, raw_b.nodes, raw_b.params,
                                               is_device_pointer, self._step_infos(steps_a), names,
                                               raw_a2.nodes, raw_a2.params)
        del g_a2, g_b  # after the comparison: their parameters point into their own buffers

    def _races(self, raw, steps: list[Step]) -> None:
        by_index = {s.index: s for s in steps}
        for n in raw.nodes:
            if n.kind == "kernel" and n.step is not None and not n.instrumentation:
                s = by_index[n.step]
                analysis.kernel_accesses(n, raw.params[n.id].values if n.id in raw.params else [], s.accesses,
                                         s.kind == "opaque")
        labels = {}
        for s in steps:
            for a in s.accesses:
                labels.setdefault((a.start, a.end), f"{a.label} of {s.op}")

        def label(lo: int, hi: int) -> str:
            for (s0, s1), text in labels.items():
                if s0 <= lo and hi <= s1:
                    return text
            return ""
        self.loc.races = analysis.races(raw.nodes, self._step_infos(steps), label)

    # -- 7: outputs ---------------------------------------------------------------------------------------
    def _html(self, raw, steps: list[Step] | None) -> None:
        from .html import write_html

        nodes: list[GraphNodeInfo] = raw.nodes if raw is not None else []
        infos = self._step_infos(steps or [])
        write_html(self.html_path, self.ev.target, self.loc, nodes, infos)
        self.loc.html = os.path.abspath(self.html_path)

    def _repro(self) -> None:
        from .repro import write_repro

        d = self.loc.divergence
        if d is None:
            raise RuntimeError("no first divergent step was found, so there is nothing to reproduce alone")
        at_capture = self._at_capture(d.step.index)
        steps = self._eager(self.seed, self.v, False, d.step.index)
        step = steps[d.step.index]
        write_repro(self.repro_path, step, at_capture.args if at_capture else None, step.args, d, self.rtol,
                    self.atol)
        self.loc.repro = os.path.abspath(self.repro_path)


def _where(exc: BaseException) -> str:
    """Where it was raised: the innermost frames, for a report a developer can act on."""
    import traceback

    tb = traceback.extract_tb(exc.__traceback__)[-3:]
    return " <- ".join(f"{os.path.basename(f.filename)}:{f.lineno} {f.name}" for f in reversed(tb))


def localize(target: Target, ev: Evidence, **kw) -> Localization:
    return Localizer(target, ev, **kw).run()


def should_locate(locate: str | bool, verdict: str, html: str | None, repro: str | None) -> bool:
    """``check(locate=...)``: "auto" localizes a mismatch; ``html``/``repro`` ask for it whatever the verdict."""
    if locate not in (True, False, "auto", "always", "never"):
        raise ValueError(f"locate must be 'auto', 'always' or 'never', got {locate!r}")
    if locate in (False, "never"):
        if html or repro:
            raise ValueError("--html and --repro need the localization; do not pass locate='never' with them")
        return False
    return bool(html or repro) or locate in (True, "always") or verdict == "mismatch"


def localize_safely(target: Target, ev: Evidence, **kw) -> Localization:
    """``localize``, but a failure becomes a GSD027 note: the verdict is already settled."""
    try:
        return localize(target, ev, **kw)
    except Exception as exc:  # noqa: BLE001 - the verdict stands; say what could not be done
        from ..check import _recover_from_failed_capture

        with contextlib.suppress(Exception):
            _recover_from_failed_capture(torch.device("cuda", torch.cuda.current_device()))
        return Localization(errors=[f"localization: {type(exc).__name__}: {exc} ({_where(exc)})"])
