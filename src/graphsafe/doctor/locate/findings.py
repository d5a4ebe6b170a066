"""Findings from a localization (GSD023-GSD027). They are added after the verdict is decided and
never change it."""
from __future__ import annotations

import dataclasses

from ...diagnostics import Finding, Location, display_path
from ..trace import short_kernel_name
from .model import Divergence, FrozenArg, GraphRace, Localization, StepInfo


def _n(k: int, word: str) -> str:
    return f"{k} {word}{'s' if k != 1 else ''}"


def _at(step: StepInfo | None, label: str) -> Location | None:
    if step is None or step.location is None:
        return None
    return dataclasses.replace(step.location, label=label)


def _where(step: StepInfo | None) -> str:
    if step is None:
        return "an operation graphsafe did not see"
    return f"`{step.op}`" + (f" in `{step.module}`" if step.module else "")


def located(loc: Localization | None, capture_seed: int = 0) -> list[Finding]:
    if loc is None:
        return []
    out: list[Finding] = []
    if loc.divergence is not None:
        out.append(_divergence(loc.divergence, loc))
    elif loc.no_divergence:
        out.append(Finding("GSD023", "note", "no single operation diverged when the target was instrumented",
                           evidence=[loc.no_divergence],
                           help="a race or a memory-layout effect is likely: see GSD017/GSD025 and GSD014"))
    out += [_frozen(f, capture_seed) for f in loc.frozen[:5]]
    out += [_race(r) for r in loc.races[:5]]
    c = loc.census
    if c is not None and (c.missing or c.extra or c.reordered or c.config):
        ev = []
        if c.missing:
            ev.append("eager ran, the graph lacks: " + ", ".join(f"`{k}`" for k in c.missing[:8]))
        if c.extra:
            ev.append("the graph holds, eager did not run: " + ", ".join(f"`{k}`" for k in c.extra[:8]))
        if c.reordered:
            ev.append("in another order: " + ", ".join(f"`{k}`" for k in c.reordered[:8]))
        ev += [f"other launch configuration: {x}" for x in c.config[:4]]
        kinds = ", ".join(f"{v} {k}" for k, v in c.node_kinds.items()) or "no other nodes"
        ev.append(f"eager launched {_n(c.eager_kernels, 'kernel')}; the graph holds {_n(c.graph_kernels, 'kernel node')}"
                  f" ({kinds})")
        out.append(Finding(
            "GSD026", "note", f"the graph's kernels differ from eager's: {len(c.missing)} missing, {len(c.extra)} "
                              f"extra, {len(c.reordered)} reordered, {len(c.config)} other launch configurations",
            evidence=ev, help="a missing kernel ran outside the capture (GSD002) or behind a branch the capture did "
                              "not take (GSD018); other launch configurations mean shapes were frozen at capture",
            data={"missing": c.missing, "extra": c.extra, "reordered": c.reordered, "config": c.config}))
    if loc.errors:
        out.append(Finding("GSD027", "note", "part of the localization could not run", evidence=list(loc.errors),
                           help="the verdict and the other findings stand; report this to graphsafe with the target"))
    return out


def _divergence(d: Divergence, loc: Localization) -> Finding:
    s = d.step
    if d.reason == "not-captured":
        return Finding(
            "GSD023", "note", f"first divergent operation: eager ran {_where(s)}, the capture did not record it",
            location=_at(s, "eager runs this; the captured graph does not"), stack=s.stack,
            evidence=[f"the {d.steps_compared} operations before it agree between replay and eager (input {d.seed})"],
            help="the code took another branch at capture (GSD018): make the branch a device-side select",
            data={"op": s.op, "module": s.module, "step": s.index, "reason": d.reason})
    ev = [f"its output {d.output} ({'×'.join(map(str, d.shape)) or 'scalar'} {d.dtype}) differs: max abs "
          f"{d.max_abs:.3g}, max rel {d.max_rel:.3g}, {d.mismatched} of {d.numel} elements (input {d.seed})",
          f"the {d.steps_compared - 1} operations before it agree between replay and eager"]
    if d.replay_equals_capture:
        ev.append("the replayed value is exactly what eager computes on the capture input: replay repeats the "
                  "capture-time result of this operation")
    if s.kind == "opaque" and not s.kernels:
        ev.append("this call added no node to the graph: the GPU work it launched is not in the graph")
    elif s.kernels:
        ev.append("its kernels in the graph: " + ", ".join(f"`{short_kernel_name(k)}`" for k in s.kernels[:4]))
    frozen = [f for f in loc.frozen if f.step is not None and f.step.index == s.index]
    if frozen:
        ev.append("it has an argument baked in at capture (see GSD024): " + ", ".join(
            f"`{f.name or f'#{f.param}'}`" for f in frozen[:3]))
    if loc.repro:
        help_ = f"run `python {display_path(loc.repro)}` to see this operation diverge alone"
    elif s.kind == "opaque" and not s.kernels:
        help_ = "launch its kernels on PyTorch's current stream (`at::cuda::getCurrentCUDAStream()`)"
    elif frozen:
        help_ = "pass the value as a device tensor that the kernel reads, and update it before each replay"
    else:
        help_ = "run `graphsafe check --repro repro.py` to get this operation alone as a script"
    kind = {"opaque": "native call", "custom": "custom op", "aten": "aten op"}.get(s.kind, s.kind)
    return Finding(
        "GSD023", "note", f"first divergent operation: {kind} {_where(s)}",
        location=_at(s, "the first operation whose replayed output differs from eager"), stack=s.stack,
        evidence=ev, help=help_,
        data={"op": s.op, "module": s.module, "step": s.index, "kind": s.kind, "output": d.output,
              "max_abs": d.max_abs, "reason": d.reason})


def _frozen(f: FrozenArg, capture_seed: int) -> Finding:
    name = f"`{f.name}`" if f.name else f"#{f.param}"
    return Finding(
        "GSD024", "warning", f"argument {name} of kernel `{f.kernel}` is baked into the graph",
        location=_at(f.step, f"launches `{f.kernel}`"), stack=f.step.stack if f.step else [],
        evidence=[f"two captures with different inputs and host state gave it {f.value_a} and {f.value_b} "
                  f"(parameter {f.param}, {f.size} bytes, byte {f.offset} of the parameter buffer, graph node "
                  f"{f.node})", "a replay always passes the value of its own capture"],
        help="pass the value in device memory that the kernel loads (update it before each replay), or capture "
             "one graph per value",
        data={"kernel": f.kernel, "param": f.param, "name": f.name, "value_a": f.value_a, "value_b": f.value_b})


def _race(r: GraphRace) -> Finding:
    sure = "may-write" not in r.access
    return Finding(
        "GSD025", "error" if sure else "warning",
        f"graph nodes `{r.a_name}` and `{r.b_name}` {'write' if sure else 'may write'} the same memory in no fixed "
        f"order",
        location=_at(r.a_step, f"{_where(r.a_step)} ({r.access.split('/')[0]})"),
        related=[x for x in [_at(r.b_step, f"{_where(r.b_step)} ({r.access.split('/')[1]})")] if x],
        evidence=[f"nodes {r.a} and {r.b} have no path between them in the graph, and both touch "
                  f"[{r.start:#x}, {r.end:#x}) ({r.end - r.start} bytes{', ' + r.tensor if r.tensor else ''}): "
                  f"{r.access}",
                  f"{_where(r.a_step)} and {_where(r.b_step)}"],
        help="order them: make the reading stream wait for the writing one (`main.wait_stream(side)`, or an event "
             "recorded after the write) before the second access",
        data={"a": r.a, "b": r.b, "access": r.access, "bytes": r.end - r.start})
