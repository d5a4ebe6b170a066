"""W4A4 GEMMs with swapped operands: the weights are the MMA's first operand, the activations its second.

``out^T = W @ X^T`` computes the same exact int32 sums as ``X @ W^T``, but puts the long dimension N on
the MMA's M side, which must be at least 64 rows for Hopper's wgmma, and the short dimension (the rows
of X) on its N side, which may be as small as 8. So:

- **few rows** (:func:`small_into`, up to 16 rows where neither GEMV takes them, ``ops._few_rows_into``):
  a 16-row tile of X is no longer 15/16 padding of a 64-row MMA, and one program covers 32 or 64 output
  columns instead of 16 x 64.
- **many rows** (:func:`big_into`): the weights, unpacked from nibbles to INT8 in registers, can feed
  the MMA from registers (wgmma's first operand may live there; the second must be in shared memory).
  The activations come as INT8 already (the quantizer writes them as 16 x codes, even and odd columns
  in two planes: ``sym_quant_into`` with a 3-D ``q``), so they go from global to shared memory untouched.
  ``quant_linear`` runs it below one full round of tiles; from there on Hopper, its persistent TMA
  variant (:mod:`graphsafe.quant.triton_persist`).

Both keep the tile GEMM's conventions (:mod:`graphsafe.quant.triton_kernels`): 16 x codes, even and odd
columns as two dots of half depth, 64-bit offsets, the shared dequantizing epilogue.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from .triton_gemv import pdl_available
from .triton_kernels import (_INTERPRET, _column_scales, _dequant_store, _dot_packed, _dot_planes, _grouped_tile,
                             _prefetch_l2, _scale_store, _wait_then_release)

NUM_SMS_H100 = 132


@triton.jit
def _small_kernel(a_ptr, sa_ptr, b_ptr, sb_ptr, bias_ptr, c_ptr, M, N, KB, stride_a, stride_b, stride_c,
                  HAS_BIAS: tl.constexpr, BN: tl.constexpr, MP: tl.constexpr, BKB: tl.constexpr,
                  PDL: tl.constexpr, PREFETCH: tl.constexpr, USE_ASM: tl.constexpr):
    """acc^T (BN, MP) over packed weights (BN rows) and packed activations (all M rows, padded to MP)."""
    pid = tl.program_id(0)
    rn = pid * BN + tl.arange(0, BN)
    rb = tl.where(rn < N, rn, 0).to(tl.int64)
    rm = tl.arange(0, MP)
    ra = tl.where(rm < M, rm, 0).to(tl.int64)
    rk = tl.arange(0, BKB)
    w_ptrs = b_ptr + rb[:, None] * stride_b + rk[None, :]
    x_ptrs = a_ptr + ra[None, :] * stride_a + rk[:, None]
    sb, bias = _column_scales(sb_ptr, bias_ptr, rb, HAS_BIAS)  # now: no round trip after the last step
    if PDL:
        if PREFETCH > 0:  # while the quantizer runs, pull the first PREFETCH 128-byte lines of each row into L2
            lines = tl.minimum(tl.arange(0, PREFETCH) * 128, KB - 1)
            _prefetch_l2(b_ptr + rb[:, None] * stride_b + lines[None, :])
        _wait_then_release()  # the activations come from the previous kernel (the quantizer)
    sa = tl.load(sa_ptr + ra).to(tl.float32)
    acc = tl.zeros((BN, MP), dtype=tl.int32)
    for k in range(0, KB, BKB):
        w = tl.load(w_ptrs, mask=rk[None, :] < KB - k, other=0)
        x = tl.load(x_ptrs, mask=(rk[:, None] < KB - k) & (rm[None, :] < M), other=0)
        acc = _dot_packed(acc, w, x, USE_ASM)
        w_ptrs += BKB
        x_ptrs += BKB
    _scale_store(tl.trans(acc), sa, sb, bias, c_ptr, rm, rn, M, N, stride_c, HAS_BIAS)


@triton.jit
def _big_kernel(x_ptr, plane, sa_ptr, b_ptr, sb_ptr, bias_ptr, c_ptr, M, N, KB, stride_x, stride_b, stride_c,
                HAS_BIAS: tl.constexpr, BN: tl.constexpr, BM: tl.constexpr, BKB: tl.constexpr,
                GROUP_N: tl.constexpr, USE_ASM: tl.constexpr):
    """acc^T (BN, BM): packed weights unpacked in registers times INT8 activation planes (even, odd)."""
    pid_n, pid_m = _grouped_tile(tl.program_id(0), tl.cdiv(N, BN), tl.cdiv(M, BM), GROUP_N)
    rn = pid_n * BN + tl.arange(0, BN)
    rm = pid_m * BM + tl.arange(0, BM)
    rb = tl.where(rn < N, rn, 0).to(tl.int64)
    ra = tl.where(rm < M, rm, 0).to(tl.int64)
    rk = tl.arange(0, BKB)
    w_ptrs = b_ptr + rb[:, None] * stride_b + rk[None, :]
    xl_ptrs = x_ptr + ra[None, :] * stride_x + rk[:, None]
    xh_ptrs = xl_ptrs + plane
    acc = tl.zeros((BN, BM), dtype=tl.int32)
    for k in range(0, KB, BKB):
        w = tl.load(w_ptrs, mask=rk[None, :] < KB - k, other=0)
        xl = tl.load(xl_ptrs, mask=rk[:, None] < KB - k, other=0)
        xh = tl.load(xh_ptrs, mask=rk[:, None] < KB - k, other=0)
        acc = _dot_planes(acc, w, xl, xh, USE_ASM)
        w_ptrs += BKB
        xl_ptrs += BKB
        xh_ptrs += BKB
    _dequant_store(tl.trans(acc), sa_ptr + ra, sb_ptr, bias_ptr, c_ptr, rm, rn, rb, M, N, stride_c, HAS_BIAS)


@dataclass(frozen=True)
class SmallConfig:
    bn: int  # output columns per program
    bkb: int  # packed bytes of K per step
    num_warps: int
    num_stages: int
    prefetch: int = 0  # after the quantizer (PDL): 128-byte lines of each weight row to prefetch to L2


@dataclass(frozen=True)
class BigConfig:
    bn: int
    bm: int
    bkb: int
    group_n: int
    num_warps: int
    num_stages: int


def small_config(m: int, n: int, kb: int) -> SmallConfig:
    """From H100 sweeps (``benchmarks/quant.py --sweep``, benchmarks/README.md): 64 columns and
    256 bytes of K per step; long rows (K >= 8192) take 32 columns and 512 bytes, since few columns
    would leave SMs idle; one stage less when the grid is over two waves. After the quantizer, long rows
    prefetch 2 KB of each weight row to L2 (0.9 us less for 18944 -> 3584), short rows 512 bytes."""
    if kb >= 4096:
        return SmallConfig(32, 512, 4, 4, prefetch=16)
    return SmallConfig(64, 256, 4, 4 if triton.cdiv(n, 64) <= 2 * NUM_SMS_H100 else 3, prefetch=4)


def big_config(m: int, n: int, kb: int) -> BigConfig:
    """From H100 sweeps (benchmarks/README.md): 128 x 128 tiles, 64 bytes (128 codes) of K per step;
    where those tiles would not fill one wave (two programs per SM), half-size tiles, three stages deep,
    so that three or four programs share each SM: 128 weight rows x 64 activation rows, or on long rows
    (K >= 8192) 64 x 128 with 128 bytes of K per step (M = 512: 18944 -> 3584 94 -> 60 us, 3584 -> 4608
    25.5 -> 21.3 us)."""
    if triton.cdiv(n, 128) * triton.cdiv(m, 128) < 2 * NUM_SMS_H100:
        return BigConfig(64, 128, 128, 8, 4, 3) if kb >= 4096 else BigConfig(128, 64, 64, 4, 4, 3)
    return BigConfig(128, 128, 64, 8, 4, 4)


def small_into(q: torch.Tensor, scale: torch.Tensor, qw: torch.Tensor, w_scale: torch.Tensor,
               bias: torch.Tensor | None, out: torch.Tensor, config: SmallConfig | None = None,
               after_quantizer: bool = False) -> None:
    """``w4a4_into`` for up to 64 rows (fast up to 16). ``after_quantizer``: the previous kernel is the
    quantizer writing ``q``/``scale`` and it let this one launch early (programmatic dependent launch)."""
    m, kb = q.shape
    n = qw.shape[0]
    if m == 0 or n == 0:
        return
    if m > 64:
        raise ValueError(f"small_into takes at most 64 rows, got {m}")
    cfg = config or small_config(m, n, kb)
    pdl = after_quantizer and pdl_available(out.device)
    _small_kernel[(triton.cdiv(n, cfg.bn),)](
        q, scale, qw, w_scale, bias if bias is not None else w_scale, out, m, n, kb, q.stride(0), qw.stride(0),
        out.stride(0), HAS_BIAS=bias is not None, BN=cfg.bn, MP=max(16, triton.next_power_of_2(m)), BKB=cfg.bkb,
        PDL=pdl, PREFETCH=cfg.prefetch, USE_ASM=not _INTERPRET,
        num_warps=cfg.num_warps, num_stages=cfg.num_stages, enable_fp_fusion=False,  # the reference's rounding
        **({"launch_pdl": True} if pdl else {}))


def big_into(x16: torch.Tensor, scale: torch.Tensor, qw: torch.Tensor, w_scale: torch.Tensor,
             bias: torch.Tensor | None, out: torch.Tensor, config: BigConfig | None = None) -> None:
    """``out`` (M, N) from INT8 activation planes ``x16`` (2, M, K/2) (see ``sym_quant_into``)."""
    _, m, kb = x16.shape
    n = qw.shape[0]
    if m == 0 or n == 0:
        return
    cfg = config or big_config(m, n, kb)
    grid = (triton.cdiv(n, cfg.bn) * triton.cdiv(m, cfg.bm),)
    _big_kernel[grid](x16, x16.stride(0), scale, qw, w_scale, bias if bias is not None else w_scale, out, m, n, kb,
                      x16.stride(1), qw.stride(0), out.stride(0), HAS_BIAS=bias is not None, BN=cfg.bn, BM=cfg.bm,
                      BKB=cfg.bkb, GROUP_N=cfg.group_n, USE_ASM=not _INTERPRET, num_warps=cfg.num_warps,
                      num_stages=cfg.num_stages)
