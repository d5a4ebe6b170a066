"""``--repro out.py``: a standalone script that reproduces the first divergent step alone.

The script loads the step's arguments saved next to it (``out.pt``): those it had when the graph was
captured (capture input, capture-time host state) and those it had on the verification input. It
captures the step alone with the first, copies the tensors of the second into them, replays, and
compares with an eager call on the second. Exit status 1: reproduced; 0: the step alone agrees.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .model import Divergence
from .record import Step

_PLAIN = (bool, int, float, complex, str, bytes, type(None))


def _saveable(obj: Any, path: str = "args") -> str | None:
    """The first argument ``torch.save`` plus the script cannot carry, or None."""
    if isinstance(obj, dict) and "__graphsafe_tensor__" in obj:
        return None
    if isinstance(obj, (list, tuple)):
        for i, x in enumerate(obj):
            bad = _saveable(x, f"{path}[{i}]")
            if bad:
                return bad
        return None
    if isinstance(obj, dict):
        for k, x in obj.items():
            bad = _saveable(x, f"{path}[{k!r}]")
            if bad:
                return bad
        return None
    import torch

    if isinstance(obj, _PLAIN) or isinstance(obj, (torch.dtype, torch.device, torch.layout, torch.memory_format)):
        return None
    return f"{path} is a `{type(obj).__qualname__}`"


def write_repro(path: str, step: Step, cap_args: Any, rep_args: Any, d: Divergence, rtol, atol) -> None:
    import torch

    if cap_args is None or rep_args is None:
        raise RuntimeError(f"the arguments of step {step.index} (`{step.op}`) could not be recorded again")
    for args in (cap_args, rep_args):
        bad = _saveable(args)
        if bad:
            raise RuntimeError(f"`{step.op}` cannot be reproduced alone: {bad}, which a script cannot load; "
                               "call it through a function that takes tensors and plain values")
    if step.kind == "opaque":
        if not step.entry or "<" in step.entry[1]:
            raise RuntimeError(f"`{step.op}` was entered through `{step.entry}`, which a script cannot import")
        what = f'ENTRY = ({step.entry[0]!r}, {step.entry[1]!r})\nOP = None'
    else:
        what = f"ENTRY = None\nOP = {step.op!r}"
    data = str(Path(path).with_suffix(".pt"))
    torch.save({"capture": cap_args, "replay": rep_args}, data)
    where = step.location.short() if step.location else "?"
    text = _TEMPLATE.format(
        op=step.op, where=where, module=step.module or "-", what=what, data=os.path.basename(data),
        max_abs=f"{d.max_abs:.3g}", seed=d.seed, rtol=repr(rtol), atol=repr(atol))
    Path(path).write_text(text)


_TEMPLATE = '''\
"""graphsafe repro: the first divergent operation, alone.

operation: {op}
module:    {module}
line:      {where}
found on:  verification input {seed} (max abs error {max_abs} in the whole target)

The operation is captured in a CUDA graph with the arguments it had at capture time, the tensors of the
verification call are copied into those arguments, the graph is replayed, and the result is compared with
an eager call on the verification arguments. Exit status 1 when they differ (reproduced), 0 when not.
Written by `graphsafe check --repro`; the arguments are in the .pt file beside this script.
"""
import importlib
import os
import sys

import torch

{what}
DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), {data!r})
RTOL, ATOL = {rtol}, {atol}


def restore(obj):
    if isinstance(obj, dict) and "__graphsafe_tensor__" in obj:
        return obj["__graphsafe_tensor__"].to(obj["device"])
    if isinstance(obj, (list, tuple)):
        return type(obj)(restore(x) for x in obj)
    if isinstance(obj, dict):
        return {{k: restore(v) for k, v in obj.items()}}
    return obj


def tensors(obj):
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [t for x in obj for t in tensors(x)]
    if isinstance(obj, dict):
        return [t for x in obj.values() for t in tensors(x)]
    return []


def resolve():
    if OP is not None:
        ns, rest = OP.split("::", 1)
        name, _, overload = rest.partition(".")
        return getattr(getattr(getattr(torch.ops, ns), name), overload or "default")
    fn = importlib.import_module(ENTRY[0])
    for part in ENTRY[1].split("."):
        fn = getattr(fn, part)
    return fn


def run(fn, saved):
    args, kwargs = saved
    return fn(*args, **kwargs)


def main():
    saved = torch.load(DATA, weights_only=False)
    fn = resolve()
    static = restore(saved["capture"])
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        run(fn, restore(saved["capture"]))  # warm-up
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = run(fn, static)
    replay_args = restore(saved["replay"])
    for dst, src in zip(tensors(static), tensors(replay_args)):
        if dst.shape == src.shape and dst.dtype == src.dtype:
            dst.copy_(src)
    graph.replay()
    torch.cuda.synchronize()
    replayed = [t.clone() for t in tensors(out)]
    eager = [t.clone() for t in tensors(run(fn, restore(saved["replay"])))]
    differs = False
    for i, (r, e) in enumerate(zip(replayed, eager)):
        close = torch.allclose(r.double(), e.double(), rtol=RTOL or 1e-3, atol=ATOL or 1e-5, equal_nan=True)
        err = (r.double() - e.double()).abs().max().item() if r.numel() else 0.0
        print(f"output {{i}} {{tuple(r.shape)}} {{r.dtype}}: max abs error {{err:.4g}} -> "
              f"{{'differs' if not close else 'agrees'}}")
        differs |= not close
    print("reproduced: replay and eager differ" if differs else "not reproduced: the operation alone agrees")
    return 1 if differs else 0


if __name__ == "__main__":
    sys.exit(main())
'''
