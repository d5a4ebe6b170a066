"""Triton kernels: per-row INT4 quantization and the W4A4 GEMM (the default backend on CUDA).

Both follow :mod:`graphsafe.quant.reference` bit for bit. Launch configurations come from fixed
heuristics (:func:`quant_config`, :func:`gemm_config`), never from ``triton.autotune``: autotuning
times kernels and synchronizes on the first call, which must not happen inside a graph capture.

Hopper has no INT4 tensor-core instruction, so the GEMM unpacks both operands to INT8 in registers and
runs INT8 ``tl.dot`` with int32 accumulation. Unpacking is two 32-bit operations per four bytes: each
nibble is kept in the top half of its byte, i.e. as 16 times its value, and the int32 sum is shifted
right by 8 at the end (exact; it bounds K below 2**17, ``ops.MAX_K``). It never interleaves nibbles
back into column order: a dot product is a sum over k, so summing the even columns (low nibbles) and
the odd columns (high nibbles) as two dots of half depth gives the same exact integer. For one or two
rows :mod:`graphsafe.quant.triton_gemv` takes over (CUDA-core dp4a).

Every pointer offset is computed in 64 bits (row indices are cast before the multiply), so M and N up
to 65,536 and beyond do not overflow. Under ``TRITON_INTERPRET=1`` the kernels run on CPU tensors.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from .reference import rounded_clip

_INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
MAX_SINGLE_BLOCK = 8192  # columns a quantizer program holds in registers at once; wider rows loop
_ROUND = tl.constexpr(12582912.0)  # 1.5 * 2**23: (y + _ROUND) - _ROUND rounds |y| < 2**22 half to even in float32


@triton.jit
def _codes(x, scale, rcp, dt: tl.constexpr):
    """float32 values -> int32 INT4 codes: T(x / scale), NaN -> 0, clamp to [-8, 7], round half even.

    The quotient is the correctly rounded float32 x / scale without a division per element: with
    rcp = RN(1 / scale), q = RN(x * rcp) is within an ulp and one FMA residual step makes it exact
    (Markstein's theorem). scale == 0 keeps x * rcp, i.e. x / 0 (+-Inf, or NaN for 0)."""
    q = x * rcp
    q = tl.where(scale == 0.0, q, tl.fma(tl.fma(-q, scale, x), rcp, q))
    y = q.to(dt).to(tl.float32)
    y = tl.where(y != y, 0.0, y)
    y = tl.minimum(tl.maximum(y, -8.0), 7.0)
    return ((y + _ROUND) - _ROUND).to(tl.int32)


@triton.jit
def _pack(x, scale, rcp, dt: tl.constexpr, BLOCK: tl.constexpr):
    """(BLOCK,) float32 -> (BLOCK // 2,) uint8, element 2j in the low nibble of byte j."""
    lo, hi = tl.split(tl.reshape(x, (BLOCK // 2, 2)))
    byte = (_codes(lo, scale, rcp, dt) & 0xF) | ((_codes(hi, scale, rcp, dt) & 0xF) << 4)
    return byte.to(tl.uint8)


@triton.jit
def _row_amax(x):
    """max |x| that propagates NaN (tl.max alone would drop it)."""
    a = tl.abs(x)
    has_nan = tl.max((a != a).to(tl.int32), axis=0)
    m = tl.max(tl.where(a != a, 0.0, a), axis=0)
    return tl.where(has_nan > 0, float("nan"), m)


@triton.jit
def _sym_quant_kernel(x_ptr, q_ptr, s_ptr, N, NB, stride_x, stride_q, clip,
                      BLOCK: tl.constexpr, SINGLE: tl.constexpr, TRIGGER: tl.constexpr):
    if TRIGGER:  # let a dependent kernel (launched with PDL) start now; it waits for our results itself
        tl.extra.cuda.gdc_launch_dependents()
    row = tl.program_id(0).to(tl.int64)
    x_row = x_ptr + row * stride_x
    q_row = q_ptr + row * stride_q
    dt: tl.constexpr = x_ptr.dtype.element_ty
    cols = tl.arange(0, BLOCK)
    bytes_ = tl.arange(0, BLOCK // 2)
    if SINGLE:
        x = tl.load(x_row + cols, mask=cols < N, other=0.0).to(tl.float32)
        amax = _row_amax(x)
    else:
        amax = tl.zeros((), tl.float32)
        for start in range(0, N, BLOCK):
            x = tl.load(x_row + start + cols, mask=start + cols < N, other=0.0).to(tl.float32)
            m = _row_amax(x)
            amax = tl.where((m != m) | (m > amax), m, amax)
    scale = (amax / 7.0).to(dt).to(tl.float32)
    scale = (scale * clip).to(dt)  # clip arrives already rounded to T
    tl.store(s_ptr + row, scale)
    scale = scale.to(tl.float32)
    rcp = tl.math.div_rn(1.0, scale)
    if SINGLE:
        tl.store(q_row + bytes_, _pack(x, scale, rcp, dt, BLOCK), mask=bytes_ < NB)
    else:
        for start in range(0, N, BLOCK):
            x = tl.load(x_row + start + cols, mask=start + cols < N, other=0.0).to(tl.float32)
            b = start // 2 + bytes_
            tl.store(q_row + b, _pack(x, scale, rcp, dt, BLOCK), mask=b < NB)


def quant_config(n: int, m: int = 1) -> tuple[int, bool, int]:
    """(BLOCK, SINGLE, num_warps) for ``m`` rows of ``n`` columns, from H100 measurements
    (benchmarks/README.md): the whole row in registers up to MAX_SINGLE_BLOCK columns (and up to
    32768 for a few rows, where one program per row is all the parallelism there is), chunks of 4096
    beyond."""
    block = max(triton.next_power_of_2(max(n, 1)), 64)
    if block <= MAX_SINGLE_BLOCK:
        return block, True, 4 if block <= 4096 else 8
    if block <= 32768 and m <= 64:
        return block, True, 16
    return 4096, False, 8


def sym_quant_into(x: torch.Tensor, clip_ratio: float, q: torch.Tensor, scale: torch.Tensor,
                   config: tuple[int, bool, int] | None = None, trigger: bool = False) -> None:
    """Quantize contiguous (M, N) ``x`` into ``q`` (M, ceil(N/2)) uint8 and ``scale`` (M, 1).
    ``trigger``: a kernel launched next with programmatic dependent launch may start at once."""
    m, n = x.shape
    if m == 0:
        return
    block, single, warps = config or quant_config(n, m)
    clip = rounded_clip(clip_ratio, x.dtype)
    _sym_quant_kernel[(m,)](x, q, scale, n, q.shape[1], x.stride(0), q.stride(0), clip,
                            BLOCK=block, SINGLE=single, TRIGGER=trigger and not _INTERPRET, num_warps=warps)


@triton.jit
def _nibbles_x16(p, USE_ASM: tl.constexpr):
    """uint8 bytes -> (16 * low nibble, 16 * high nibble) as int8: a signed nibble times 16 is exactly
    the byte with that nibble on top, so no sign extension is needed. With USE_ASM, two 32-bit ops per 4
    bytes (inline PTX); otherwise int8 arithmetic (the interpreter's path)."""
    if USE_ASM:
        lo = tl.inline_asm_elementwise("{ .reg .b32 t; shl.b32 t, $1, 4; and.b32 $0, t, 0xF0F0F0F0; }",
                                       "=r,r", [p], dtype=tl.int8, is_pure=True, pack=4)
        hi = tl.inline_asm_elementwise("and.b32 $0, $1, 0xF0F0F0F0;", "=r,r", [p], dtype=tl.int8,
                                       is_pure=True, pack=4)
    else:
        s = p.to(tl.int8, bitcast=True)
        lo = s << 4
        hi = s & -16
    return lo, hi


@triton.jit
def _w4a4_kernel(a_ptr, sa_ptr, b_ptr, sb_ptr, bias_ptr, c_ptr, M, N, KB,
                 stride_a, stride_b, stride_c,
                 HAS_BIAS: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BKB: tl.constexpr,
                 GROUP_M: tl.constexpr, USE_ASM: tl.constexpr):
    pid = tl.program_id(0)
    grid_m = tl.cdiv(M, BM)
    grid_n = tl.cdiv(N, BN)
    width = GROUP_M * grid_n
    group = pid // width
    first_m = group * GROUP_M
    size_m = min(grid_m - first_m, GROUP_M)
    pid_m = first_m + (pid % width) % size_m
    pid_n = (pid % width) // size_m

    rm = pid_m * BM + tl.arange(0, BM)
    rn = pid_n * BN + tl.arange(0, BN)
    rk = tl.arange(0, BKB)
    ra = tl.where(rm < M, rm, 0).to(tl.int64)
    rb = tl.where(rn < N, rn, 0).to(tl.int64)
    a_ptrs = a_ptr + ra[:, None] * stride_a + rk[None, :]
    b_ptrs = b_ptr + rb[None, :] * stride_b + rk[:, None]
    acc = tl.zeros((BM, BN), dtype=tl.int32)
    for k in range(0, KB, BKB):
        a = tl.load(a_ptrs, mask=rk[None, :] < KB - k, other=0)
        b = tl.load(b_ptrs, mask=rk[:, None] < KB - k, other=0)
        a_lo, a_hi = _nibbles_x16(a, USE_ASM)
        b_lo, b_hi = _nibbles_x16(b, USE_ASM)
        acc = tl.dot(a_lo, b_lo, acc, out_dtype=tl.int32)
        acc = tl.dot(a_hi, b_hi, acc, out_dtype=tl.int32)
        a_ptrs += BKB
        b_ptrs += BKB

    _dequant_store(acc, sa_ptr + ra, sb_ptr, bias_ptr, c_ptr, rm, rn, rb, M, N, stride_c, HAS_BIAS)


@triton.jit
def _dequant_store(acc, sa_ptrs, sb_ptr, bias_ptr, c_ptr, rm, rn, rb, M, N, stride_c, HAS_BIAS: tl.constexpr):
    """The W4A4 epilogue every GEMM kernel shares, in the reference's order: ``(sum * sa) * sb (+ bias)``
    in float32. ``acc`` holds 256 times the exact sums (both operands carried 16x); ``sa_ptrs`` point at
    each row's activation scale, ``rb`` are the output columns clamped in range."""
    sa = tl.load(sa_ptrs).to(tl.float32)
    sb = tl.load(sb_ptr + rb).to(tl.float32)
    y = (acc >> 8).to(tl.float32) * sa[:, None]
    y = y * sb[None, :]
    if HAS_BIAS:
        y = y + tl.load(bias_ptr + rb).to(tl.float32)[None, :]
    c_ptrs = c_ptr + rm.to(tl.int64)[:, None] * stride_c + rn[None, :]
    tl.store(c_ptrs, y.to(c_ptr.dtype.element_ty), mask=(rm[:, None] < M) & (rn[None, :] < N))


@dataclass(frozen=True)
class GemmConfig:
    bm: int
    bn: int
    bkb: int  # packed bytes of K per step (2 INT4 values each)
    group_m: int
    num_warps: int
    num_stages: int


def gemm_config(m: int, n: int, kb: int) -> GemmConfig:
    """Launch configuration for (M, N, K/2), chosen from H100 measurements (benchmarks/README.md)."""
    if m <= 16:  # memory-bound: stream the weights
        return GemmConfig(16, 64, 256, 1, 4, 4)
    return GemmConfig(128, 128, 128, 8, 4, 3)


def w4a4_into(q: torch.Tensor, scale: torch.Tensor, qw: torch.Tensor, w_scale: torch.Tensor,
              bias: torch.Tensor | None, out: torch.Tensor, config: GemmConfig | None = None) -> None:
    """``out`` (M, N) = dequantized ``unpack(q) @ unpack(qw).T`` (+ bias), int32-exact accumulation."""
    m, kb = q.shape
    n = qw.shape[0]
    if m == 0 or n == 0:
        return
    cfg = config or gemm_config(m, n, kb)
    grid = (triton.cdiv(m, cfg.bm) * triton.cdiv(n, cfg.bn),)
    _w4a4_kernel[grid](q, scale, qw, w_scale, bias if bias is not None else w_scale, out, m, n, kb,
                       q.stride(0), qw.stride(0), out.stride(0), HAS_BIAS=bias is not None,
                       BM=cfg.bm, BN=cfg.bn, BKB=cfg.bkb, GROUP_M=cfg.group_m, USE_ASM=not _INTERPRET,
                       num_warps=cfg.num_warps, num_stages=cfg.num_stages)
