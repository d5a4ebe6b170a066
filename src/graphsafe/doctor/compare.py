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


def padding(dst: Any, src: Any) -> tuple[int, int] | None:
    """``(b, B)`` when ``src`` is ``dst`` with a smaller leading dimension ``b < B`` (a batch that a
    bucketed runner pads), None when the shapes are equal; ValueError for anything else."""
    d, s = leaves(dst), leaves(src)
    if len(d) != len(s):
        raise ValueError(f"make_inputs returned {len(s)} tensors, the capture input had {len(d)}")
    pad = None
    for a, b in zip(d, s):
        if a.dtype != b.dtype or a.dim() != b.dim():
            raise ValueError(f"make_inputs changed a tensor from {tuple(a.shape)}/{a.dtype} to "
                             f"{tuple(b.shape)}/{b.dtype}; a graph needs fixed dtypes and ranks")
        if a.shape == b.shape:
            continue
        if a.dim() == 0 or a.shape[1:] != b.shape[1:] or b.shape[0] > a.shape[0] or \
                (pad is not None and pad != (b.shape[0], a.shape[0])):
            raise ValueError(f"make_inputs changed a tensor from {tuple(a.shape)} to {tuple(b.shape)}; a graph "
                             f"needs fixed shapes (only a smaller leading batch dimension is padded)")
        pad = (b.shape[0], a.shape[0])
    return pad


def copy_into(dst: Any, src: Any) -> None:
    """Copy ``src``'s tensors into ``dst``'s (same structure), as a graph runner fills static inputs.
    A smaller leading dimension is padded with zeros, as a bucketed runner pads a batch."""
    padding(dst, src)
    for a, b in zip(leaves(dst), leaves(src)):
        if a.shape == b.shape:
            a.copy_(b)
        else:
            a[: b.shape[0]].copy_(b)
            a[b.shape[0]:].zero_()


def padded_like(src: Any, like: Any) -> Any:
    """A copy of ``src`` padded with zeros to ``like``'s shapes (the input the graph really ran)."""
    out = clone_tree(like)
    copy_into(out, src)
    return out


def unpad(out: Any, pad: tuple[int, int] | None) -> Any:
    """Slice outputs whose leading dimension is the padded batch back to the real batch."""
    if pad is None:
        return out
    b, big = pad
    if isinstance(out, torch.Tensor):
        return out[:b] if out.dim() > 0 and out.shape[0] == big else out
    if isinstance(out, dict):
        return {k: unpad(v, pad) for k, v in out.items()}
    if isinstance(out, (list, tuple)):
        items = [unpad(x, pad) for x in out]
        return type(out)(*items) if hasattr(out, "_fields") else type(out)(items)
    return out


def all_close(a: Any, b: Any, rtol: float | None = None, atol: float | None = None) -> bool:
    """Every tensor of ``a`` is within tolerance of the matching tensor of ``b`` (same structure)."""
    la, lb = leaves(a), leaves(b)
    return len(la) == len(lb) and all(stats(x, y, rtol, atol).close for x, y in zip(la, lb))


def noise_floor(expected: torch.Tensor, ulps: int = 4) -> float:
    """A few units in the last place of the largest value: what a different summation order costs."""
    if not expected.dtype.is_floating_point or expected.numel() == 0:
        return 0.0
    peak = float(expected.detach().abs().max())
    return ulps * torch.finfo(expected.dtype).eps * peak if peak == peak else 0.0


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
