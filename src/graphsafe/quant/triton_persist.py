"""The many-row W4A4 GEMM as a persistent kernel on TMA descriptors, its last partial round split finer.

Same sums and epilogue as :func:`graphsafe.quant.triton_swap.big_into` (``out^T = W @ X^T``, packed
weights unpacked to 16 x codes in registers as the MMA's first operand, INT8 activation planes from
shared memory as its second), but:

- **persistent**: a fixed number of programs (``per_sm`` per SM) walk the output tiles, and Triton
  flattens the tile and K loops into one software pipeline, so a program's next tile is already
  loading while it stores the last;
- **TMA**: each step's weight and activation tiles arrive by tensor-memory-accelerator copies
  (zero-filled past the edges), not by per-thread ``cp.async``;
- **cut last round**: when the tiles do not divide into whole rounds over the programs and the last
  round would be at most half full, its tiles are cut into halves or quarters (along the weight rows,
  then the activation rows), so that more programs share that round and it takes a fraction of a
  tile's time.

The program count and the cut are compile-time constants, so a layer meets up to three variants as its
row count changes (whole rounds, halves, quarters); each compiles at first use, like any Triton kernel,
which a warm-up call outside a graph capture keeps out of the capture.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from .triton_kernels import _INTERPRET, _dequant_store, _dot_planes, _grouped_tile
from .triton_swap import NUM_SMS_H100


@triton.jit
def _tile_sums(w_desc, xl_desc, xh_desc, n0, m0, steps, BN: tl.constexpr, BM: tl.constexpr, BKB: tl.constexpr,
               USE_ASM: tl.constexpr):
    """acc^T (BN, BM) of the tile at weight row n0, activation row m0: 256 x the exact int32 sums."""
    acc = tl.zeros((BN, BM), dtype=tl.int32)
    for s in range(steps):
        w = w_desc.load([n0, s * BKB])
        xl = xl_desc.load([m0, s * BKB])
        xh = xh_desc.load([m0, s * BKB])
        acc = _dot_planes(acc, w, xl.T, xh.T, USE_ASM)
    return acc


@triton.jit
def _store_tile(acc, n0, m0, sa_ptr, sb_ptr, bias_ptr, c_ptr, M, N, stride_c,
                HAS_BIAS: tl.constexpr, BN: tl.constexpr, BM: tl.constexpr):
    rn = n0 + tl.arange(0, BN)
    rm = m0 + tl.arange(0, BM)
    rb = tl.where(rn < N, rn, 0).to(tl.int64)
    ra = tl.where(rm < M, rm, 0).to(tl.int64)
    _dequant_store(tl.trans(acc), sa_ptr + ra, sb_ptr, bias_ptr, c_ptr, rm, rn, rb, M, N, stride_c, HAS_BIAS)


@triton.jit
def _persist_kernel(w_desc, xl_desc, xh_desc, w_tail, xl_tail, xh_tail, sa_ptr, sb_ptr, bias_ptr, c_ptr,
                    M, N, KB, stride_c, TAIL,
                    HAS_BIAS: tl.constexpr, BN: tl.constexpr, BM: tl.constexpr, BKB: tl.constexpr,
                    GROUP_N: tl.constexpr, PROGRAMS: tl.constexpr, SPLIT_N: tl.constexpr, SPLIT_M: tl.constexpr,
                    USE_ASM: tl.constexpr):
    """PROGRAMS programs: the whole tiles in rounds, then the last TAIL tiles in SPLIT_N x SPLIT_M pieces
    (``w_tail``/``xl_tail``/``xh_tail``: descriptors with the pieces' block shapes)."""
    pid = tl.program_id(0)
    tiles_n = tl.cdiv(N, BN)
    tiles_m = tl.cdiv(M, BM)
    steps = tl.cdiv(KB, BKB)
    whole = tiles_n * tiles_m - TAIL  # tiles done whole, in rounds over the programs
    for tile in tl.range(pid, whole, PROGRAMS, flatten=True):
        pid_n, pid_m = _grouped_tile(tile, tiles_n, tiles_m, GROUP_N)
        acc = _tile_sums(w_desc, xl_desc, xh_desc, pid_n * BN, pid_m * BM, steps, BN, BM, BKB, USE_ASM)
        _store_tile(acc, pid_n * BN, pid_m * BM, sa_ptr, sb_ptr, bias_ptr, c_ptr, M, N, stride_c, HAS_BIAS, BN, BM)
    if SPLIT_N * SPLIT_M > 1:  # the last, partial round: each tile in SPLIT_N x SPLIT_M pieces
        for sub in tl.range(pid, TAIL * (SPLIT_N * SPLIT_M), PROGRAMS, flatten=True):
            pid_n, pid_m = _grouped_tile(whole + sub // (SPLIT_N * SPLIT_M), tiles_n, tiles_m, GROUP_N)
            piece = sub % (SPLIT_N * SPLIT_M)
            n0 = pid_n * BN + (piece % SPLIT_N) * (BN // SPLIT_N)
            m0 = pid_m * BM + (piece // SPLIT_N) * (BM // SPLIT_M)
            acc = _tile_sums(w_tail, xl_tail, xh_tail, n0, m0, steps, BN // SPLIT_N, BM // SPLIT_M, BKB, USE_ASM)
            _store_tile(acc, n0, m0, sa_ptr, sb_ptr, bias_ptr, c_ptr, M, N, stride_c, HAS_BIAS, BN // SPLIT_N,
                        BM // SPLIT_M)


@dataclass(frozen=True)
class PersistConfig:
    bn: int = 128  # weight rows (output columns) per tile
    bm: int = 128  # activation rows per tile
    bkb: int = 64  # packed bytes of K per step
    group_n: int = 8
    num_warps: int = 4
    num_stages: int = 4
    per_sm: int = 2  # programs per SM
    split_n: int = 2  # the most pieces a tile of the last round is cut into along the weight rows...
    split_m: int = 2  # ... and then along the activation rows (1 and 1: never cut)


def persist_config(m: int, n: int, kb: int) -> PersistConfig:
    """From H100 sweeps (benchmarks/README.md): 128 x 128 tiles, 64 bytes of K per step, four stages,
    two programs per SM."""
    return PersistConfig()


def plan(tiles: int, programs: int, split_n: int = 2, split_m: int = 2) -> tuple[int, int, int, int]:
    """(programs to launch, tail tiles, pieces along N, pieces along M). The tiles run in rounds over
    the programs; where the last round is at most half full, its tiles are cut into the most pieces
    that still fit in one round: halved along the weight rows first (at most ``split_n`` pieces), then
    along the activation rows (at most ``split_m``)."""
    if tiles <= 0:
        return 0, 0, 1, 1
    tail = tiles - (-(-tiles // programs) - 1) * programs
    pn = pm = 1
    while pn * 2 <= split_n and tail * pn * pm * 2 <= programs:
        pn *= 2
    while pm * 2 <= split_m and tail * pn * pm * 2 <= programs:
        pm *= 2
    if pn * pm == 1:
        return min(tiles, programs), 0, 1, 1
    return programs, tail, pn, pm


def usable(x16: torch.Tensor, qw: torch.Tensor) -> bool:
    """TMA needs 16-byte aligned bases and row strides (rows of a multiple of 16 packed bytes; the odd
    plane starts one plane stride after the even one), unit strides along K, and K > 0."""
    return (x16.shape[2] > 0 and x16.stride(2) == 1 and qw.stride(1) == 1 and x16.stride(1) % 16 == 0
            and x16.stride(0) % 16 == 0 and qw.stride(0) % 16 == 0 and x16.data_ptr() % 16 == 0
            and qw.data_ptr() % 16 == 0)


def operands(x16: torch.Tensor, qw: torch.Tensor, what: str) -> tuple[int, int, int]:
    """(M, N, K/2) of a GEMM on TMA descriptors; a ValueError naming ``what`` where TMA cannot address
    them (:func:`usable`) and the call has work."""
    _, m, kb = x16.shape
    n = qw.shape[0]
    if m and n and not usable(x16, qw):
        raise ValueError(f"{what} needs K > 0 and 16-byte aligned operands and row strides (TMA); got "
                         f"planes {tuple(x16.shape)} strides {x16.stride()} at {x16.data_ptr() % 16} mod 16, "
                         f"weights strides {qw.stride()} at {qw.data_ptr() % 16} mod 16")
    return m, n, kb


def persist_into(x16: torch.Tensor, scale: torch.Tensor, qw: torch.Tensor, w_scale: torch.Tensor,
                 bias: torch.Tensor | None, out: torch.Tensor, config: PersistConfig | None = None,
                 sms: int | None = None) -> None:
    """``out`` (M, N) from INT8 activation planes ``x16`` (2, M, K/2), like ``triton_swap.big_into``;
    needs :func:`usable`. ``sms``: the SM count (default: the device's)."""
    from triton.tools.tensor_descriptor import TensorDescriptor

    m, n, kb = operands(x16, qw, "the persistent GEMM")
    if m == 0 or n == 0:
        return
    cfg = config or persist_config(m, n, kb)
    if sms is None:
        sms = NUM_SMS_H100 if _INTERPRET else torch.cuda.get_device_properties(out.device).multi_processor_count
    programs, tail, pn, pm = plan(triton.cdiv(n, cfg.bn) * triton.cdiv(m, cfg.bm), sms * cfg.per_sm, cfg.split_n,
                                  cfg.split_m)
    w = TensorDescriptor.from_tensor(qw, [cfg.bn, cfg.bkb])
    xl = TensorDescriptor.from_tensor(x16[0], [cfg.bm, cfg.bkb])
    xh = TensorDescriptor.from_tensor(x16[1], [cfg.bm, cfg.bkb])
    w_tail = TensorDescriptor.from_tensor(qw, [cfg.bn // pn, cfg.bkb]) if pn > 1 else w
    xl_tail = TensorDescriptor.from_tensor(x16[0], [cfg.bm // pm, cfg.bkb]) if pm > 1 else xl
    xh_tail = TensorDescriptor.from_tensor(x16[1], [cfg.bm // pm, cfg.bkb]) if pm > 1 else xh
    _persist_kernel[(programs,)](
        w, xl, xh, w_tail, xl_tail, xh_tail, scale, w_scale, bias if bias is not None else w_scale, out,
        m, n, kb, out.stride(0), tail, HAS_BIAS=bias is not None, BN=cfg.bn, BM=cfg.bm, BKB=cfg.bkb,
        GROUP_N=cfg.group_n, PROGRAMS=programs, SPLIT_N=pn, SPLIT_M=pm, USE_ASM=not _INTERPRET,
        num_warps=cfg.num_warps, num_stages=cfg.num_stages)


def wanted(m: int, n: int, arch: int, sms: int, config: PersistConfig | None = None) -> bool:
    """Whether ``quant_linear`` should take the persistent GEMM for (M, N): on Hopper (sm_9x; TMA needs
    sm_90, and newer GPUs, whose MMAs Triton lowers differently, were never measured), from one full round
    of tiles; below it the per-tile kernel (``triton_swap.big_into``, with its smaller tiles there) is
    faster (H100 sweeps, benchmarks/README.md)."""
    cfg = config or persist_config(m, n, 0)
    return 90 <= arch < 100 and triton.cdiv(n, cfg.bn) * triton.cdiv(m, cfg.bm) >= sms * cfg.per_sm


GLUON_TRITON = "3.6."  # the Triton release graphsafe.quant.gluon_ws was written and measured with
GLUON_MAX_KB = 4096  # packed bytes per row (K <= 8192)


def gluon_wanted(kb: int, arch: int, version: str | None = None) -> bool:
    """Whether :func:`many_rows_into` takes the warp-specialized Gluon GEMM (``graphsafe.quant.gluon_ws``)
    where :func:`wanted` and :func:`usable` hold: Triton 3.6 (Gluon is experimental; its API moves between
    releases), sm_9x, and rows of at most ``GLUON_MAX_KB`` packed bytes. On an H100 (benchmarks/README.md),
    on rows of 3584 it was 6-15 % faster at 3584->4608 M = 1024 and 2048 and within run-to-run noise
    elsewhere, and on rows of 18944 0-11 % slower; the bound between them (K = 8192) is a guess, no row
    length between those two was measured."""
    version = triton.__version__ if version is None else version
    return 90 <= arch < 100 and version.startswith(GLUON_TRITON) and 0 < kb <= GLUON_MAX_KB


def route(x16: torch.Tensor, qw: torch.Tensor) -> str:
    """Which GEMM :func:`many_rows_into` runs on these operands: where :func:`wanted` and :func:`usable`
    hold, ``"wgmma"`` (the CUDA C++ GEMM of ``graphsafe.quant.wgmma_gemm``) on sm_90 where cuda-bindings
    and NVRTC can build it, else ``"gluon"`` where :func:`gluon_wanted`, else ``"persist"`` (this
    module's); otherwise ``"per-tile"`` (``triton_swap.big_into``)."""
    if _INTERPRET or not x16.is_cuda:
        return "per-tile"
    props = torch.cuda.get_device_properties(x16.device)
    arch, sms = props.major * 10 + props.minor, props.multi_processor_count
    cfg = persist_config(x16.shape[1], qw.shape[0], x16.shape[2])
    if not (wanted(x16.shape[1], qw.shape[0], arch, sms, cfg) and usable(x16, qw)):
        return "per-tile"
    from . import wgmma_gemm
    if wgmma_gemm.available(x16.device):
        return "wgmma"
    return "gluon" if gluon_wanted(x16.shape[2], arch) else "persist"


def many_rows_into(x16: torch.Tensor, scale: torch.Tensor, qw: torch.Tensor, w_scale: torch.Tensor,
                   bias: torch.Tensor | None, out: torch.Tensor, after_quantizer: bool = False,
                   which: str | None = None) -> None:
    """The GEMM ``quant_linear`` runs beyond 16 rows, as :func:`route` picks it (``which``: its answer,
    where the caller already asked). ``after_quantizer``: the previous kernel is the quantizer of ``x16``
    and ``scale``, launched with ``trigger=True``, and the CUDA GEMM may launch with PDL to load its first
    weights while it finishes (the other GEMMs ignore it and wait for it as usual)."""
    from . import triton_swap

    which = which or route(x16, qw)
    if which == "wgmma":
        from . import wgmma_gemm
        wgmma_gemm.wgmma_into(x16, scale, qw, w_scale, bias, out, after_quantizer=after_quantizer,
                              **wgmma_gemm.MANY_ROWS)
    elif which == "per-tile":
        triton_swap.big_into(x16, scale, qw, w_scale, bias, out)
    else:
        sms = torch.cuda.get_device_properties(x16.device).multi_processor_count
        cfg = persist_config(x16.shape[1], qw.shape[0], x16.shape[2])  # the tiles both kernels run
        if which == "gluon":
            from . import gluon_ws
            gluon_ws.ws_into(x16, scale, qw, w_scale, bias, out, bn=cfg.bn, bm=cfg.bm, bkb=cfg.bkb,
                             group_n=cfg.group_n, per_sm=cfg.per_sm, split_n=cfg.split_n, split_m=cfg.split_m,
                             sms=sms)
        else:
            persist_into(x16, scale, qw, w_scale, bias, out, cfg, sms=sms)
