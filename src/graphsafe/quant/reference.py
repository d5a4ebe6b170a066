"""Reference semantics of INT4 quantization and the W4A4 linear, in plain PyTorch (CPU or GPU).

This module is the oracle: every kernel in :mod:`graphsafe.quant` is tested against it.

**Per-row symmetric INT4** (the seed's ``sym_quant_fuse``), for ``x`` of dtype ``T`` (float16 or
bfloat16), each step rounded to ``T`` as the seed's ``__hdiv``/``__hmul`` do::

    scale = T(T(max|x| / 7) * T(clip_ratio))
    q     = clamp(round_half_even(T(x / scale)), -8, 7)

Two signed 4-bit values per byte, element ``2j`` in the low nibble of byte ``j``; an odd last column
leaves the high nibble 0.

**Non-finite values** (the policy every backend follows): the row maximum propagates NaN, so a row
holding a NaN gets ``scale = NaN``; a row holding ±Inf gets ``scale = +Inf``. Any quotient that is
NaN (NaN inputs, 0/0 in an all-zero row, ±Inf/Inf) becomes code 0. So an all-zero row gives
``scale = 0`` and codes 0, and a row with a non-finite value gives codes 0 with a non-finite scale,
which makes that row's W4A4 output NaN rather than silently finite.

**W4A4 linear**: ``y = T_out((float32(sum_k qx[m,k] * qw[n,k]) * float32(sx[m])) * float32(sw[n])
(+ bias[n]))``; the integer sum is exact (|sum| <= 64 K, well inside int32 and float32's exact range
for K <= 2^18).
"""
from __future__ import annotations

import functools

import torch

QMIN, QMAX = -8, 7
FLOAT_DTYPES = (torch.float16, torch.bfloat16)


def _round_to(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return x.to(dtype).to(torch.float32)


@functools.lru_cache(maxsize=256)  # asked on every quantizer launch; a tensor round trip costs ~5 us of host time
def rounded_clip(clip_ratio: float, dtype: torch.dtype) -> float:
    """``T(clip_ratio)`` as a Python float (exact in float32): the clip every backend multiplies by."""
    return float(torch.tensor(float(clip_ratio)).to(dtype))


def sym_quant_reference(x: torch.Tensor, clip_ratio: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns ``(q, scale)``: ``q`` uint8 of shape (M, ceil(N/2)), ``scale`` of x's dtype, shape (M, 1)."""
    if x.dim() != 2:
        raise ValueError(f"x must be 2-D (rows, cols), got shape {tuple(x.shape)}")
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"x must be float16 or bfloat16, got {x.dtype}")
    dt = x.dtype
    xf = x.to(torch.float32)
    if x.shape[1]:
        amax = xf.abs().amax(dim=1, keepdim=True)  # amax propagates NaN
    else:
        amax = torch.zeros(x.shape[0], 1, device=x.device)
    scale = _round_to(_round_to(amax / 7.0, dt) * rounded_clip(clip_ratio, dt), dt)
    data = _round_to(xf / scale, dt)
    data = torch.where(torch.isnan(data), torch.zeros_like(data), data)
    q = torch.round(torch.clamp(data, QMIN, QMAX)).to(torch.int8)  # torch.round: half to even
    return pack_int4(q), scale.to(dt)


def pack_int4_weights_reference(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-output-channel INT4 weights: ``w`` (out, in) -> ``(qw, w_scale)``, the rows of ``w``
    quantized like activations (clip 1). float32 weights are quantized as float16."""
    if w.dtype == torch.float32:
        w = w.to(torch.float16)
    return sym_quant_reference(w)


def w4a4_linear_reference(q: torch.Tensor, scale: torch.Tensor, qw: torch.Tensor, w_scale: torch.Tensor,
                          bias: torch.Tensor | None = None, out_dtype: torch.dtype | None = None) -> torch.Tensor:
    """``q`` (M, K/2) uint8, ``scale`` (M, 1), ``qw`` (N, K/2) uint8, ``w_scale`` (N, 1) -> (M, N)."""
    acc = int4_matmul_reference(q, qw).to(torch.float32)
    y = acc * scale.to(torch.float32).reshape(-1, 1) * w_scale.to(torch.float32).reshape(1, -1)
    if bias is not None:
        y = y + bias.to(torch.float32)
    return y.to(out_dtype or scale.dtype)


def int4_matmul_reference(q: torch.Tensor, qw: torch.Tensor) -> torch.Tensor:
    """The exact integer products ``unpack(q) @ unpack(qw).T`` as int32 (computed in float64, exact)."""
    a = unpack_int4(q).to(torch.float64)
    b = unpack_int4(qw).to(torch.float64)
    return (a @ b.T).to(torch.int32)


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
    vals = torch.stack([lo, hi], dim=2).reshape(packed.shape[0], 2 * packed.shape[1])
    vals = torch.where(vals >= 8, vals - 16, vals).to(torch.int8)
    return vals if n is None else vals[:, :n]


def mma_planes_reference(q: torch.Tensor, sums: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The MMA planes of packed codes ``q`` (M, KB) and the sums of each row's even-column codes: what
    ``sym_quant_into(..., xsum=...)`` writes for the tensor-core GEMV (``csrc/w4a4_planes.cu``). For every
    8 columns, int8 16 x the codes of the 4 even ones, then the codes of the 4 odd ones; rows padded with
    zeros to a multiple of 128 columns. Without ``sums``, the planes without sums (``sym_quant_into``
    with ``mma_planes=True``, no ``xsum``): the even columns' codes themselves, and None for the sums."""
    m, kb = q.shape
    width = -(-2 * kb // 128) * 128
    codes = torch.zeros(m, width, dtype=torch.int16)
    codes[:, :2 * kb] = unpack_int4(q).to(torch.int16)
    groups = codes.reshape(m, width // 8, 4, 2)
    planes = torch.cat([groups[..., 0] * (16 if sums else 1), groups[..., 1]], dim=2).reshape(m, width).to(torch.int8)
    return planes, codes[:, 0::2].sum(dim=1, dtype=torch.int32) if sums else None


def mma_planes_dot_reference(planes: torch.Tensor, qw: torch.Tensor, sums: bool = True) -> torch.Tensor:
    """The tensor-core GEMV's sums on MMA planes, computed as it computes them: each weight word's even
    columns as code + 8 (``(w & 0x0F0F0F0F) ^ 0x08080808``), its odd ones as 16 x code (``w & 0xF0F0F0F0``),
    multiplied by the matching plane bytes. int32 (M, N): 16 x (the dot product + 8 x the activation row's
    even-column code sum). Without ``sums`` (planes without sums), the even columns as 16 x code too
    (``(w << 4) & 0xF0F0F0F0``): 16 x the dot product."""
    n, kb = qw.shape
    w = qw.to(torch.int32)
    if sums:
        even = (((w & 0x0F) ^ 0x08)).to(torch.float64)  # code + 8, in 0..15
    else:
        low = (w << 4) & 0xF0
        even = (low - ((low & 0x80) << 1)).to(torch.float64)  # the low nibble on top, as a signed byte
    odd = ((w & 0xF0) - ((w & 0x80) << 1)).to(torch.float64)  # the byte's high nibble as a signed byte: 16 x code
    x = planes[:, :2 * kb].to(torch.float64).reshape(planes.shape[0], kb // 4, 2, 4)  # [word][even/odd][byte]
    a = torch.stack([even.reshape(n, kb // 4, 4), odd.reshape(n, kb // 4, 4)], dim=2)
    return torch.einsum("mwpb,nwpb->mn", x, a).to(torch.int32)
