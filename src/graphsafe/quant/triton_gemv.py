"""The W4A4 GEMV for up to four rows (``ops._dp4a``): CUDA-core dp4a instead of tensor cores.

With so few rows the linear only has to stream the packed weights once, and a tensor-core tile (16
rows at least) would be mostly padding. Here each program reads its output rows' packed weights as
int32 words, turns each word's low nibbles (even columns) and high nibbles (odd columns) into four bytes
of 16x codes with two integer ops each, and ``dp4a`` sums four byte products at a time in int32,
exactly, into one accumulator per row that is reduced once, at the end. Programs are many and small
(2 or 4 output columns, 1-4 warps) so that every SM keeps enough loads in flight; no workspace, no
atomics, one kernel.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from .triton_kernels import _INTERPRET, _column_scales, _keep_time, _now, _prefetch_l2, _scale_store, \
    _wait_then_release, check_timeline

_F0 = tl.constexpr(-252645136)  # 0xF0F0F0F0 as int32
MAX_ROWS = 4  # one accumulator per row


@triton.jit
def _dp4a(a, b, c, USE_ASM: tl.constexpr):
    """c + the dot product of the four signed bytes of a and of b (int32 words), elementwise."""
    if USE_ASM:
        return tl.inline_asm_elementwise("dp4a.s32.s32 $0, $1, $2, $3;", "=r,r,r,r", [a, b, c],
                                         dtype=tl.int32, is_pure=True, pack=1)
    else:
        for i in tl.static_range(4):
            c += ((a << (24 - 8 * i)) >> 24) * ((b << (24 - 8 * i)) >> 24)
        return c


@triton.jit
def _row_step(acc, w_lo, w_hi, a, USE_ASM: tl.constexpr):
    """acc (BN, BW) + the dp4a products of one activation row's words ``a`` (BW,) with the weights'."""
    a = a[None, :]
    return _dp4a(w_hi, a & _F0, _dp4a(w_lo, (a << 4) & _F0, acc, USE_ASM), USE_ASM)


@triton.jit
def _words(ptr, k, rw, KW):
    """Words [k, k + BW) of one row, 0 past its end."""
    return tl.load(ptr + k + rw, mask=k + rw < KW, other=0)


@triton.jit
def _dp4a_kernel(a_ptr, sa_ptr, b_ptr, sb_ptr, bias_ptr, c_ptr, t_ptr, N, KW, stride_a, stride_b, stride_c,
                 M: tl.constexpr, HAS_BIAS: tl.constexpr, BN: tl.constexpr, BW: tl.constexpr,
                 PDL: tl.constexpr, PREFETCH: tl.constexpr, USE_ASM: tl.constexpr, TIMELINE: tl.constexpr = False):
    """A and B as int32 words (4 packed bytes, 8 codes); each word's low nibbles (even columns) and
    high nibbles (odd columns) become 4 bytes of 16x codes, and dp4a sums 4 products at a time into one
    (BN, BW) accumulator per row (up to 4 rows), reduced over K once, at the end, in the layout the
    weights were loaded in. The next step's weight and activation words are requested before the
    current ones are used; with PDL (programmatic dependent launch) the first weight tile, and L2
    prefetches of the next PREFETCH 128-byte lines of each weight row, are requested before waiting for
    the previous kernel (the quantizer) to finish. TIMELINE: each program's start, wait release and end
    times and SM go to t_ptr (4 int64 a program)."""
    pid = tl.program_id(0)
    if TIMELINE:
        started = _now(pid)
    rn = pid * BN + tl.arange(0, BN)
    rb = tl.where(rn < N, rn, 0).to(tl.int64)
    rw = tl.arange(0, BW)
    b_ptrs = b_ptr + rb[:, None] * stride_b + rw[None, :]
    w = tl.load(b_ptrs, mask=rw[None, :] < KW, other=0)
    sb, bias = _column_scales(sb_ptr, bias_ptr, rb, HAS_BIAS)  # now: no round trip after the last step
    if PDL:
        if PREFETCH > 0:
            lines = tl.minimum(BW * 4 + tl.arange(0, PREFETCH) * 128, KW * 4 - 1)  # bytes past the first tile
            _prefetch_l2(b_ptr.to(tl.pointer_type(tl.int8)) + rb[:, None] * stride_b * 4 + lines[None, :])
        _wait_then_release()  # q and its scales come from the previous kernel; the weights do not
    if TIMELINE:
        released = _now(pid)
    MP: tl.constexpr = 1 if M == 1 else (2 if M == 2 else 4)
    rm = tl.arange(0, MP)
    sa = tl.load(sa_ptr + tl.where(rm < M, rm, 0)).to(tl.float32)
    a0 = _words(a_ptr, 0, rw, KW)
    a1 = a0
    a2 = a0
    a3 = a0
    if M > 1:
        a1 = _words(a_ptr + stride_a, 0, rw, KW)
    if M > 2:
        a2 = _words(a_ptr + 2 * stride_a, 0, rw, KW)
    if M > 3:
        a3 = _words(a_ptr + 3 * stride_a, 0, rw, KW)
    acc0 = tl.zeros((BN, BW), dtype=tl.int32)
    acc1 = tl.zeros((BN, BW), dtype=tl.int32)
    acc2 = tl.zeros((BN, BW), dtype=tl.int32)
    acc3 = tl.zeros((BN, BW), dtype=tl.int32)
    for k in range(0, KW, BW):
        w_lo = (w << 4) & _F0
        w_hi = w & _F0
        acc0 = _row_step(acc0, w_lo, w_hi, a0, USE_ASM)
        if M > 1:
            acc1 = _row_step(acc1, w_lo, w_hi, a1, USE_ASM)
        if M > 2:
            acc2 = _row_step(acc2, w_lo, w_hi, a2, USE_ASM)
        if M > 3:
            acc3 = _row_step(acc3, w_lo, w_hi, a3, USE_ASM)
        w = tl.load(b_ptrs + k + BW, mask=k + BW + rw[None, :] < KW, other=0)
        a0 = _words(a_ptr, k + BW, rw, KW)
        if M > 1:
            a1 = _words(a_ptr + stride_a, k + BW, rw, KW)
        if M > 2:
            a2 = _words(a_ptr + 2 * stride_a, k + BW, rw, KW)
        if M > 3:
            a3 = _words(a_ptr + 3 * stride_a, k + BW, rw, KW)
    acc = tl.where(rm[:, None] == 0, tl.sum(acc0, axis=1)[None, :], 0)
    if M > 1:
        acc = tl.where(rm[:, None] == 1, tl.sum(acc1, axis=1)[None, :], acc)
    if M > 2:
        acc = tl.where(rm[:, None] == 2, tl.sum(acc2, axis=1)[None, :], acc)
    if M > 3:
        acc = tl.where(rm[:, None] == 3, tl.sum(acc3, axis=1)[None, :], acc)
    _scale_store(acc, sa, sb, bias, c_ptr, rm, rn, M, N, stride_c, HAS_BIAS)
    if TIMELINE:
        _keep_time(t_ptr, pid, started, released)


@dataclass(frozen=True)
class Dp4aConfig:
    bn: int  # output columns per program
    bw: int  # int32 words of K (8 codes each) per step
    num_warps: int
    prefetch: int = 0  # after the quantizer (PDL): 128-byte lines of each weight row to prefetch to L2


def dp4a_config(m: int, n: int, kb: int) -> Dp4aConfig:
    """From H100 sweeps (``benchmarks/quant.py --sweep-few``, benchmarks/README.md), timed after the
    quantizer as ``quant_linear`` runs them: small programs (1-4 warps, 2 or 4 output columns) so that many
    stream weights at once; rows longer than 4096 codes take more words per step and, from three rows,
    an L2 prefetch of the next 2 KB of each weight row while the quantizer runs (on shorter rows that
    prefetch cost 0.3-0.5 us, except in wide layers)."""
    long = kb > 2048
    if m == 1:
        return Dp4aConfig(4, 512, 4) if long else Dp4aConfig(4, 256, 1)
    if m == 2:
        return Dp4aConfig(4, 512, 1) if long else Dp4aConfig(2, 256, 1)
    if long:
        return Dp4aConfig(4, 256, 1, 16)
    return Dp4aConfig(2, 256, 1, 16) if wide(n, kb) else Dp4aConfig(4, 128, 1)


def wide(n: int, kb: int) -> bool:
    """Many more output columns than inputs (N > 2 K): there, from 4 rows, the tensor-core GEMM for
    few rows (``triton_swap.small_into``) beats the dp4a GEMV (H100 sweeps)."""
    return n > 4 * kb


def dp4a_into(q: torch.Tensor, scale: torch.Tensor, qw: torch.Tensor, w_scale: torch.Tensor,
              bias: torch.Tensor | None, out: torch.Tensor, config: Dp4aConfig | None = None,
              after_quantizer: bool = False, timeline: torch.Tensor | None = None) -> None:
    """``w4a4_into`` for up to ``MAX_ROWS`` rows and K a multiple of 8 (whole int32 words per row).
    ``after_quantizer``: the previous kernel on the stream is the quantizer writing ``q``/``scale`` and
    nothing else this kernel reads, so it may be launched early (programmatic dependent launch) and
    stream its weights while the quantizer runs; it lets the next kernel launch early in turn.
    ``timeline``: int64 (programs, 4) that gets each program's start, wait release and end (%globaltimer
    ns) and SM (``benchmarks/chain_timeline.py``)."""
    m, kb = q.shape
    n = qw.shape[0]
    if m == 0 or n == 0:
        return
    if m > MAX_ROWS:
        raise ValueError(f"the dp4a GEMV takes at most {MAX_ROWS} rows, got {m}")
    if kb % 4 or kb == 0:
        raise ValueError(f"the dp4a GEMV needs K > 0 and K % 8 == 0, got K = {2 * kb}")
    cfg = config or dp4a_config(m, n, kb)
    a, b = q.view(torch.int32), qw.view(torch.int32)
    pdl = after_quantizer and pdl_available(out.device)
    programs = triton.cdiv(n, cfg.bn)
    check_timeline(timeline, programs)
    _dp4a_kernel[(programs,)](
        a, scale, b, w_scale, bias if bias is not None else w_scale, out,
        timeline if timeline is not None else out, n, kb // 4, a.stride(0), b.stride(0), out.stride(0), M=m,
        HAS_BIAS=bias is not None, BN=cfg.bn, BW=cfg.bw, PDL=pdl, PREFETCH=cfg.prefetch if pdl else 0,
        USE_ASM=not _INTERPRET, TIMELINE=timeline is not None and not _INTERPRET, num_warps=cfg.num_warps,
        enable_fp_fusion=False, **({"launch_pdl": True} if pdl else {}))  # unfused: the reference's rounding


@functools.lru_cache(maxsize=None)
def pdl_available(device: torch.device) -> bool:
    """Programmatic dependent launch: Hopper or newer, and a Triton that can launch with it. Cached per
    device: ``quant_linear`` and the GEMM it launches both ask, on every call."""
    if _INTERPRET or device.type != "cuda":
        return False
    from triton.backends.nvidia.compiler import CUDAOptions
    return "launch_pdl" in CUDAOptions.__dataclass_fields__ and torch.cuda.get_device_capability(device)[0] >= 9
