"""The many-row W4A4 GEMM as a warp-specialized Gluon kernel for Hopper (Triton 3.6's
``triton.experimental.gluon``), what ``quant_linear`` runs beyond 16 rows on short rows
(``triton_persist.gluon_wanted``).

Same sums, tiles, round plan and epilogue as :mod:`graphsafe.quant.triton_persist` (``out^T = W @ X^T``;
packed weights unpacked to 16 x codes in registers as the wgmma's first operand, INT8 activation planes
from shared memory as its second; the last partial round cut into halves or quarters), but the work is
split between warps instead of software-pipelined in one stream of instructions:

- one **load warp** issues every step's TMA copies (weights and both activation planes) into a ring of
  shared-memory stages, each with an ``empty`` and a ``ready`` mbarrier;
- the **MMA warpgroup** waits for a stage, unpacks its weights, issues two wgmmas (even and odd K
  columns), waits for them and releases the stage, then runs the epilogue at each tile's end;
- two CTAs per SM, each walking its tiles persistently: while one unpacks or stores, the other's wgmmas
  keep the tensor cores busy.

Triton 3.6 cannot keep 8-bit register operands alive across a partial ``warpgroup_mma_wait`` ("Unexpected
bitwidth in WGMMAWaitGroupOp: 8"), so each step waits for its own wgmmas, as the Triton kernel's do.
Leaving the weights out of that wait (each step waiting only for the step before, so that its wgmmas
run while the next step's weights are unpacked) compiles without a serialization warning, but the sums
come out wrong, evidently because the next step's unpacking rewrites registers that an unfinished wgmma
still reads; it was no faster either (H100, 3584->4608 at M = 2048: 55.8 against 53.9 us).
Measured and dropped (H100, benchmarks/README.md): the weights unpacked into shared memory instead, so
one step's wgmmas overlap the next step's unpacking (25-40 % slower); one CTA per SM with two MMA
warpgroups on 256 weight rows (13-26 % slower); programmatic dependent launch after the quantizer
(slower at every shape); 2 or 4 stages instead of 3.

Gluon is experimental and its API moves between Triton releases; this module is imported only where
``triton_persist.gluon_wanted`` holds (Triton 3.6, sm_9x).
"""
from __future__ import annotations

import torch
import triton
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.hopper import (
    fence_async_shared,
    mbarrier,
    tma,
    warpgroup_mma,
    warpgroup_mma_wait,
)
from triton.experimental.gluon.nvidia.hopper import TensorDescriptor

from .triton_kernels import _grouped_tile, _nibbles_x16


@gluon.jit
def _piece_origin(sub, whole, tiles_n, tiles_m, BN: gl.constexpr, BM: gl.constexpr, GROUP_N: gl.constexpr,
                  PN: gl.constexpr, PM: gl.constexpr):
    """(first weight row, first activation row) of the last round's piece ``sub``: its tile's
    ``sub % (PN * PM)``-th piece, PN along the weight rows first."""
    pid_n, pid_m = _grouped_tile(whole + sub // (PN * PM), tiles_n, tiles_m, GROUP_N)
    piece = sub % (PN * PM)
    return pid_n * BN + (piece % PN) * (BN // PN), pid_m * BM + (piece // PN) * (BM // PM)


@gluon.jit
def _load_tile(w_desc, xl_desc, xh_desc, bars, bufs, i, steps, n0, m0):
    """Every K step of one tile (or piece: the descriptors' block shapes) by TMA into the next free
    stages, from the global step counter ``i``; returns the counter after it."""
    empty, ready = bars
    w_bufs, xl_bufs, xh_bufs = bufs
    STAGES: gl.constexpr = w_bufs.type.shape[0]
    SBN: gl.constexpr = w_desc.block_type.shape[0]
    BKB: gl.constexpr = w_desc.block_type.shape[1]
    SBM: gl.constexpr = xl_desc.block_type.shape[0]
    nbytes: gl.constexpr = w_desc.block_type.nbytes + 2 * xl_desc.block_type.nbytes
    for s in range(steps):
        idx = i % STAGES
        mbarrier.wait(empty.index(idx), ((i // STAGES) & 1) ^ 1)
        bar = ready.index(idx)
        mbarrier.expect(bar, nbytes)
        tma.async_copy_global_to_shared(w_desc, [n0, s * BKB], bar, w_bufs.index(idx).slice(0, SBN))
        tma.async_copy_global_to_shared(xl_desc, [m0, s * BKB], bar, xl_bufs.index(idx).slice(0, SBM))
        tma.async_copy_global_to_shared(xh_desc, [m0, s * BKB], bar, xh_bufs.index(idx).slice(0, SBM))
        i += 1
    return i


@gluon.jit
def _load_part(descs, bars, bufs, tiles_n, tiles_m, steps, tail, GROUP_N: gl.constexpr, PN: gl.constexpr,
               PM: gl.constexpr):
    """One warp: the whole tiles, then the last round's pieces (``triton_persist.plan``)."""
    w_desc, xl_desc, xh_desc, w_tail, xl_tail, xh_tail = descs
    BN: gl.constexpr = w_desc.block_type.shape[0]
    BM: gl.constexpr = xl_desc.block_type.shape[0]
    whole = tiles_n * tiles_m - tail
    i = 0
    for t in range(gl.program_id(0), whole, gl.num_programs(0)):
        pid_n, pid_m = _grouped_tile(t, tiles_n, tiles_m, GROUP_N)
        i = _load_tile(w_desc, xl_desc, xh_desc, bars, bufs, i, steps, pid_n * BN, pid_m * BM)
    for sub in range(gl.program_id(0), tail * (PN * PM), gl.num_programs(0)):
        n0, m0 = _piece_origin(sub, whole, tiles_n, tiles_m, BN, BM, GROUP_N, PN, PM)
        i = _load_tile(w_tail, xl_tail, xh_tail, bars, bufs, i, steps, n0, m0)


@gluon.jit
def _mma_steps(acc, bars, bufs, i, steps, a_layout: gl.constexpr, SBN: gl.constexpr, SBM: gl.constexpr):
    """Each stage's weights unpacked into registers as the wgmmas' first operand. Triton 3.6 cannot keep
    8-bit register operands alive across a partial wait, so each step waits for its own wgmmas; the
    other CTA on the SM keeps the tensor cores busy meanwhile. Returns (acc, i)."""
    empty, ready = bars
    w_bufs, xl_bufs, xh_bufs = bufs
    STAGES: gl.constexpr = w_bufs.type.shape[0]
    for _ in range(steps):
        idx = i % STAGES
        mbarrier.wait(ready.index(idx), (i // STAGES) & 1)
        w = w_bufs.index(idx).slice(0, SBN).load(a_layout)
        lo, hi = _nibbles_x16(w, True)
        acc = warpgroup_mma(lo, xl_bufs.index(idx).slice(0, SBM).permute((1, 0)), acc, is_async=True)
        acc = warpgroup_mma(hi, xh_bufs.index(idx).slice(0, SBM).permute((1, 0)), acc, is_async=True)
        acc = warpgroup_mma_wait(num_outstanding=0, deps=(acc,))
        fence_async_shared()  # our generic loads of its weights are ordered before the next TMA into it
        mbarrier.arrive(empty.index(idx))
        i += 1
    return acc, i


@gluon.jit
def _mma_tile(bars, bufs, i, steps, n0, m0, sa_ptr, sb_ptr, bias_ptr, c_ptr, M, N, stride_c,
              SBN: gl.constexpr, SBM: gl.constexpr, HAS_BIAS: gl.constexpr, num_warps: gl.constexpr):
    """One tile (or piece) of SBN weight rows x SBM activation rows: unpack each stage's weights into
    registers, two wgmmas per stage (even and odd K columns), release the stage once they are done;
    then the epilogue. Returns the global step counter after it."""
    mma: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[num_warps, 1],
                                                   instr_shape=[16, SBM, 32])
    a_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=mma, k_width=4)
    out: gl.constexpr = gl.BlockedLayout([SBN // 16, 1], [16, 2], [1, num_warps], [0, 1])
    acc = gl.zeros((SBN, SBM), gl.int32, layout=mma)
    acc, i = _mma_steps(acc, bars, bufs, i, steps, a_layout, SBN, SBM)
    y = gl.convert_layout(acc, out)
    rn = n0 + gl.arange(0, SBN, layout=gl.SliceLayout(1, out))
    rm = m0 + gl.arange(0, SBM, layout=gl.SliceLayout(0, out))
    rb = gl.where(rn < N, rn, 0)
    ra = gl.where(rm < M, rm, 0)
    v = (y >> 8).to(gl.float32) * gl.load(sa_ptr + ra).to(gl.float32)[None, :]
    v = v * gl.load(sb_ptr + rb).to(gl.float32)[:, None]
    if HAS_BIAS:
        v = v + gl.load(bias_ptr + rb).to(gl.float32)[:, None]
    c_ptrs = c_ptr + rm.to(gl.int64)[None, :] * stride_c + rn[:, None]
    gl.store(c_ptrs, v.to(c_ptr.dtype.element_ty), mask=(rn[:, None] < N) & (rm[None, :] < M))
    return i


@gluon.jit
def _mma_part(bars, bufs, sa_ptr, sb_ptr, bias_ptr, c_ptr, M, N, stride_c, tiles_n, tiles_m, steps, tail,
              HAS_BIAS: gl.constexpr, GROUP_N: gl.constexpr, PN: gl.constexpr, PM: gl.constexpr,
              num_warps: gl.constexpr):
    """The default partition: the same tiles and pieces as the load partition, in the same order."""
    BN: gl.constexpr = bufs[0].type.shape[1]
    BM: gl.constexpr = bufs[1].type.shape[1]
    whole = tiles_n * tiles_m - tail
    i = 0
    for t in range(gl.program_id(0), whole, gl.num_programs(0)):
        pid_n, pid_m = _grouped_tile(t, tiles_n, tiles_m, GROUP_N)
        i = _mma_tile(bars, bufs, i, steps, pid_n * BN, pid_m * BM, sa_ptr, sb_ptr, bias_ptr, c_ptr, M, N, stride_c,
                      BN, BM, HAS_BIAS, num_warps)
    for sub in range(gl.program_id(0), tail * (PN * PM), gl.num_programs(0)):
        n0, m0 = _piece_origin(sub, whole, tiles_n, tiles_m, BN, BM, GROUP_N, PN, PM)
        i = _mma_tile(bars, bufs, i, steps, n0, m0, sa_ptr, sb_ptr, bias_ptr, c_ptr, M, N, stride_c,
                      BN // PN, BM // PM, HAS_BIAS, num_warps)


@gluon.jit
def _ws_kernel(w_desc, xl_desc, xh_desc, w_tail, xl_tail, xh_tail, sa_ptr, sb_ptr, bias_ptr, c_ptr,
               M, N, KB, stride_c, tail,
               HAS_BIAS: gl.constexpr, GROUP_N: gl.constexpr, STAGES: gl.constexpr, PN: gl.constexpr,
               PM: gl.constexpr, LOAD_REGS: gl.constexpr, num_warps: gl.constexpr):
    BN: gl.constexpr = w_desc.block_type.shape[0]
    BKB: gl.constexpr = w_desc.block_type.shape[1]
    BM: gl.constexpr = xl_desc.block_type.shape[0]
    w_bufs = gl.allocate_shared_memory(w_desc.dtype, [STAGES, BN, BKB], w_desc.layout)
    xl_bufs = gl.allocate_shared_memory(xl_desc.dtype, [STAGES, BM, BKB], xl_desc.layout)
    xh_bufs = gl.allocate_shared_memory(xh_desc.dtype, [STAGES, BM, BKB], xh_desc.layout)
    empty = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    ready = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    for s in gl.static_range(STAGES):
        mbarrier.init(empty.index(s), count=1)
        mbarrier.init(ready.index(s), count=1)
    tiles_n = gl.cdiv(N, BN)
    tiles_m = gl.cdiv(M, BM)
    steps = gl.cdiv(KB, BKB)
    bars = (empty, ready)
    bufs = (w_bufs, xl_bufs, xh_bufs)
    gl.warp_specialize([
        (_mma_part, (bars, bufs, sa_ptr, sb_ptr, bias_ptr, c_ptr, M, N, stride_c, tiles_n, tiles_m, steps, tail,
                     HAS_BIAS, GROUP_N, PN, PM, num_warps)),
        (_load_part, ((w_desc, xl_desc, xh_desc, w_tail, xl_tail, xh_tail), bars, bufs, tiles_n, tiles_m, steps,
                      tail, GROUP_N, PN, PM)),
    ], [1], [LOAD_REGS])


def ws_into(x16: torch.Tensor, scale: torch.Tensor, qw: torch.Tensor, w_scale: torch.Tensor,
            bias: torch.Tensor | None, out: torch.Tensor, bn: int = 128, bm: int = 128, bkb: int = 64,
            stages: int = 3, group_n: int = 8, per_sm: int = 2, maxnreg: int = 128, load_regs: int = 24,
            split_n: int = 2, split_m: int = 2, sms: int | None = None) -> None:
    """``out`` (M, N) from INT8 activation planes ``x16`` (2, M, K/2), like ``triton_persist.persist_into``
    (needs ``triton_persist.usable``), its last partial round cut the same way (``triton_persist.plan``).
    ``maxnreg``: registers per thread at launch (two CTAs of 8 warps fill an SM's 64K at 128; the load
    warp's warpgroup keeps ``load_regs``, setmaxnreg's least, and gives the rest to the MMA warpgroup:
    232 per thread, where 40 left it 216 and more spills, 4-12 % slower at M >= 2048 beyond 3584->4608
    on an H100); ``sms``: the SM count (default: the device's)."""
    from .triton_persist import operands, plan

    m, n, kb = operands(x16, qw, "the Gluon GEMM")
    if m == 0 or n == 0:
        return
    if split_n > bn // 64:
        raise ValueError(f"the last round's pieces need whole wgmmas of 64 weight rows; got bn={bn} split_n={split_n}")
    if sms is None:
        sms = torch.cuda.get_device_properties(out.device).multi_processor_count
    programs, tail, pn, pm = plan(triton.cdiv(n, bn) * triton.cdiv(m, bm), sms * per_sm, split_n, split_m)

    def desc(t, rows):
        return TensorDescriptor.from_tensor(t, [rows, bkb], gl.NVMMASharedLayout.get_default_for(
            [rows, bkb], gl.uint8 if t.dtype == torch.uint8 else gl.int8))

    w, xl, xh = desc(qw, bn), desc(x16[0], bm), desc(x16[1], bm)
    w_tail, xl_tail, xh_tail = desc(qw, bn // pn), desc(x16[0], bm // pm), desc(x16[1], bm // pm)
    _ws_kernel[(programs,)](w, xl, xh, w_tail, xl_tail, xh_tail, scale, w_scale,
                            bias if bias is not None else w_scale, out, m, n, kb, out.stride(0), tail,
                            HAS_BIAS=bias is not None, GROUP_N=group_n, STAGES=stages, PN=pn, PM=pm,
                            LOAD_REGS=load_regs, num_warps=4, maxnreg=maxnreg)
