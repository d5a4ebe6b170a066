"""The W4A4 GEMV for one or two rows (``ops.DP4A_MAX_M``): CUDA-core dp4a instead of tensor cores.

With so few rows the linear only has to stream the packed weights once, and a tensor-core tile (16
rows at least) would be mostly padding. Here each program reads its output rows' packed weights as
int32 words, turns each word's low nibbles (even columns) and high nibbles (odd columns) into four bytes
of 16x codes with two integer ops each, and ``dp4a`` sums four byte products at a time in int32,
exactly. Programs are many and tiny (2-4 output columns, 1-2 warps) so that every SM keeps enough loads
in flight; no workspace, no atomics, one kernel.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from .triton_kernels import _INTERPRET, _dequant_store

_F0 = tl.constexpr(-252645136)  # 0xF0F0F0F0 as int32


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
def _dp4a_kernel(a_ptr, sa_ptr, b_ptr, sb_ptr, bias_ptr, c_ptr, N, KW, stride_a, stride_b, stride_c,
                 M: tl.constexpr, MP: tl.constexpr, HAS_BIAS: tl.constexpr, BN: tl.constexpr, BW: tl.constexpr,
                 PDL: tl.constexpr, USE_ASM: tl.constexpr):
    """A and B as int32 words (4 packed bytes, 8 codes); each word's low nibbles (even columns) and
    high nibbles (odd columns) become 4 bytes of 16x codes, and dp4a sums 4 products at a time. The
    next weight tile is requested before the current one is used; with PDL (programmatic dependent
    launch) the first is requested before waiting for the previous kernel (the quantizer) to finish."""
    pid = tl.program_id(0)
    rn = pid * BN + tl.arange(0, BN)
    rb = tl.where(rn < N, rn, 0).to(tl.int64)
    rw = tl.arange(0, BW)
    rm = tl.arange(0, MP)
    b_ptrs = b_ptr + rb[:, None] * stride_b + rw[None, :]
    w = tl.load(b_ptrs, mask=rw[None, :] < KW, other=0)
    if PDL:
        tl.extra.cuda.gdc_wait()  # q and its scales come from the previous kernel; the weights do not
    acc = tl.zeros((MP, BN), dtype=tl.int32)
    for k in range(0, KW, BW):
        w_lo = (w << 4) & _F0
        w_hi = w & _F0
        for m in tl.static_range(M):
            a = tl.load(a_ptr + m * stride_a + k + rw, mask=k + rw < KW, other=0)
            t = _dp4a(w_lo, ((a << 4) & _F0)[None, :], tl.zeros((BN, BW), dtype=tl.int32), USE_ASM)
            t = _dp4a(w_hi, (a & _F0)[None, :], t, USE_ASM)
            acc = tl.where(rm[:, None] == m, acc + tl.sum(t, axis=1)[None, :], acc)
        w = tl.load(b_ptrs + k + BW, mask=k + BW + rw[None, :] < KW, other=0)
    _dequant_store(acc, sa_ptr + tl.where(rm < M, rm, 0), sb_ptr, bias_ptr, c_ptr, rm, rn, rb, M, N, stride_c,
                   HAS_BIAS)


@dataclass(frozen=True)
class Dp4aConfig:
    bn: int  # output columns per program
    bw: int  # int32 words of K (8 codes each) per step
    num_warps: int


def dp4a_config(m: int, n: int, kb: int) -> Dp4aConfig:
    """From H100 measurements (``benchmarks/quant.py --sweep-gemv``, benchmarks/README.md): tiny
    programs, so that many stream weights at once: 2 output columns, 256 words of K per step and one
    warp; for a single row longer than 4096 codes, 4 columns, 512 words and 4 warps."""
    if m == 1 and kb > 2048:
        return Dp4aConfig(4, 512, 4)
    return Dp4aConfig(2, 256, 1)


def dp4a_into(q: torch.Tensor, scale: torch.Tensor, qw: torch.Tensor, w_scale: torch.Tensor,
              bias: torch.Tensor | None, out: torch.Tensor, config: Dp4aConfig | None = None,
              after_quantizer: bool = False) -> None:
    """``w4a4_into`` for M <= ``ops.DP4A_MAX_M`` rows (other M are correct but slow: the kernel unrolls
    one pass per row) and K a multiple of 8 (whole int32 words per row). ``after_quantizer``: the previous kernel on the stream is
    the quantizer writing ``q``/``scale`` and nothing else this kernel reads, so it may be launched
    early (programmatic dependent launch) and stream its weights while the quantizer runs."""
    m, kb = q.shape
    n = qw.shape[0]
    if m == 0 or n == 0:
        return
    if kb % 4 or kb == 0:
        raise ValueError(f"the dp4a GEMV needs K > 0 and K % 8 == 0, got K = {2 * kb}")
    cfg = config or dp4a_config(m, n, kb)
    a, b = q.view(torch.int32), qw.view(torch.int32)
    pdl = after_quantizer and pdl_available(out.device)
    _dp4a_kernel[(triton.cdiv(n, cfg.bn),)](
        a, scale, b, w_scale, bias if bias is not None else w_scale, out, n, kb // 4, a.stride(0),
        b.stride(0), out.stride(0), M=m, MP=triton.next_power_of_2(m), HAS_BIAS=bias is not None, BN=cfg.bn,
        BW=cfg.bw, PDL=pdl, USE_ASM=not _INTERPRET, num_warps=cfg.num_warps, **({"launch_pdl": True} if pdl else {}))


@functools.lru_cache(maxsize=None)
def pdl_available(device: torch.device) -> bool:
    """Programmatic dependent launch: Hopper or newer, and a Triton that can launch with it. Cached per
    device: ``quant_linear`` and the GEMM it launches both ask, on every call."""
    if _INTERPRET or device.type != "cuda":
        return False
    from triton.backends.nvidia.compiler import CUDAOptions
    return "launch_pdl" in CUDAOptions.__dataclass_fields__ and torch.cuda.get_device_capability(device)[0] >= 9
