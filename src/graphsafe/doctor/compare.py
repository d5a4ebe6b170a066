"""Tensor plumbing for the check: flatten call arguments and outputs, clone, copy, compare."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

# torch.testing's defaults per dtype (rtol, atol)
_TOLERANCES = {
    torch.float16: (1e-3, 1e-5),
    torch.bfloat16: (1.6e-2, 1e-5),
    torch.float32: (1.3e-6, 1e-5),
    torch.float64: (1e-7, 1e-7),
}


def leaves(obj: Any) -> list[torch.Tensor]:
    """All tensors in a (nested) tuple/list/dict, in a stable order."""
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, dict):
        return [t for k in obj for t in leaves(obj[k])]
    if isinstance(obj, (list, tuple)):
        return [t for x in obj for t in leaves(x)]
    return []


def clone_tree(obj: Any) -> Any:
    """A deep copy in which every tensor is a fresh detached clone (never aliasing the original)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, dict):
        return {k: clone_tree(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        out = [clone_tree(x) for x in obj]
        return type(obj)(*out) if hasattr(obj, "_fields") else type(obj)(out)
    return obj


def copy_into(dst: Any, src: Any) -> None:
    """Copy ``src``'s tensors into ``dst``'s (same structure), as a graph runner fills static inputs."""
    d, s = leaves(dst), leaves(src)
    if len(d) != len(s):
        raise ValueError(f"make_inputs returned {len(s)} tensors, the capture input had {len(d)}")
    for a, b in zip(d, s):
        if a.shape != b.shape or a.dtype != b.dtype:
            raise ValueError(f"make_inputs changed a tensor from {tuple(a.shape)}/{a.dtype} to "
                             f"{tuple(b.shape)}/{b.dtype}; a graph needs fixed shapes and dtypes")
        a.copy_(b)


def same_values(a: Any, b: Any) -> bool:
    la, lb = leaves(a), leaves(b)
    return len(la) == len(lb) and all(bitwise_equal(x, y) for x, y in zip(la, lb))


def bitwise_equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.dtype.is_floating_point or a.dtype.is_complex:
        # compare bytes: NaN equals NaN here, because identical bytes are identical results
        def raw(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(-1).contiguous().view(torch.uint8)
        return bool(torch.equal(raw(a), raw(b)))
    return bool(torch.equal(a, b))


def tolerance(dtype: torch.dtype, rtol: float | None, atol: float | None) -> tuple[float, float]:
    r, a = _TOLERANCES.get(dtype, (0.0, 0.0))
    return (r if rtol is None else rtol, a if atol is None else atol)


@dataclass
class Stats:
    """How far ``actual`` is from ``expected`` for one output on one input."""

    max_abs: float
    max_rel: float
    mismatched: int
    numel: int
    bitwise_equal: bool
    close: bool

    @property
    def mismatch_fraction(self) -> float:
        return self.mismatched / self.numel if self.numel else 0.0


def stats(actual: torch.Tensor, expected: torch.Tensor, rtol: float | None = None,
          atol: float | None = None) -> Stats:
    if actual.shape != expected.shape:
        n = max(actual.numel(), expected.numel())
        return Stats(float("inf"), float("inf"), n, n, False, False)
    r, a = tolerance(expected.dtype, rtol, atol)
    x = actual.detach().to("cpu", torch.float64)
    y = expected.detach().to("cpu", torch.float64)
    diff = (x - y).abs()
    both_nan = torch.isnan(x) & torch.isnan(y)
    same_inf = torch.isinf(x) & (x == y)
    diff = torch.where(both_nan | same_inf, torch.zeros_like(diff), diff)
    diff = torch.where(torch.isnan(diff), torch.full_like(diff, float("inf")), diff)
    bad = diff > (a + r * y.abs())
    rel = diff / y.abs().clamp_min(1e-30)
    rel = torch.where(diff == 0, torch.zeros_like(rel), rel)
    n = x.numel()
    return Stats(
        max_abs=float(diff.max()) if n else 0.0,
        max_rel=float(rel.max()) if n else 0.0,
        mismatched=int(bad.sum()),
        numel=n,
        bitwise_equal=bitwise_equal(actual.detach().cpu(), expected.detach().cpu()),
        close=not bool(bad.any()),
    )
