"""Reference semantics of the seed's per-row symmetric INT4 quantization, in plain PyTorch (CPU or GPU).

For each row: ``scale = fp16(fp16(max|x| / 7) * fp16(clip))`` (every step rounded to float16, as
the kernel's ``__hdiv``/``__hmul`` do), ``q = clamp(round_half_even(fp16(x / scale)), -8, 7)``, and
two signed 4-bit values per byte, element ``2j`` in the low nibble of byte ``j``; an odd last
column leaves the high nibble 0.
"""
from __future__ import annotations

import torch

QMIN, QMAX = -8, 7


def _half(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.float16).to(torch.float32)


def sym_quant_reference(x: torch.Tensor, clip_ratio: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns ``(q, scale)``: ``q`` is uint8 of shape (M, ceil(N/2)), ``scale`` float16 (M, 1)."""
    if x.dim() != 2:
        raise ValueError(f"x must be 2-D (rows, cols), got shape {tuple(x.shape)}")
    if x.dtype != torch.float16:
        raise TypeError(f"x must be float16 (the seed kernel's dtype), got {x.dtype}")
    xf = x.to(torch.float32)
    amax = xf.abs().amax(dim=1, keepdim=True) if x.shape[1] else torch.zeros(x.shape[0], 1)
    scale = _half(_half(amax / 7.0) * _half(torch.tensor(clip_ratio, dtype=torch.float32)))
    data = _half(xf / scale)  # __hdiv(x, scale): float16-rounded quotient
    q = torch.clamp(torch.round(data), QMIN, QMAX)  # torch.round rounds half to even, as __half2int_rn
    # NaN (0/0 on an all-zero row) converts to 0 in __half2int_rn
    q = torch.where(torch.isnan(data), torch.zeros_like(q), q).to(torch.int8)
    return pack_int4(q), scale.to(torch.float16)


def pack_int4(q: torch.Tensor) -> torch.Tensor:
    """Pack signed 4-bit values (int8 in [-8, 7], shape (M, N)) two per byte, low nibble first."""
    if q.dim() != 2:
        raise ValueError(f"q must be 2-D, got shape {tuple(q.shape)}")
    if q.numel() and (int(q.min()) < QMIN or int(q.max()) > QMAX):
        raise ValueError("q values must lie in [-8, 7]")
    m, n = q.shape
    if n % 2:
        q = torch.cat([q, torch.zeros(m, 1, dtype=q.dtype, device=q.device)], dim=1)
    nib = (q.to(torch.int16) & 0xF).to(torch.uint8)
    return nib[:, 0::2] | (nib[:, 1::2] << 4)


def unpack_int4(packed: torch.Tensor, n: int | None = None) -> torch.Tensor:
    """Inverse of :func:`pack_int4`: int8 values of shape (M, n) (n defaults to 2 * bytes)."""
    lo = (packed & 0xF).to(torch.int16)
    hi = ((packed >> 4) & 0xF).to(torch.int16)
    vals = torch.stack([lo, hi], dim=2).reshape(packed.shape[0], -1)
    vals = torch.where(vals >= 8, vals - 16, vals).to(torch.int8)
    return vals if n is None else vals[:, :n]
