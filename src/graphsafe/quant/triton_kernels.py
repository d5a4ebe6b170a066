"""Triton kernels: per-row INT4 quantization and the W4A4 tile GEMM (the default backend on CUDA).

Both follow :mod:`graphsafe.quant.reference` bit for bit. Launch configurations come from fixed
heuristics (:func:`quant_config`, :func:`gemm_config`), never from ``triton.autotune``: autotuning
times kernels and synchronizes on the first call, which must not happen inside a graph capture.

Hopper has no INT4 tensor-core instruction, so the GEMMs unpack to INT8 in registers and run INT8
``tl.dot`` with int32 accumulation. Unpacking is two 32-bit operations per four bytes: each nibble is
kept in the top half of its byte, i.e. as 16 times its value, and the int32 sum is shifted right by 8 at
the end (exact; it bounds K below 2**17, ``ops.MAX_K``). It never interleaves nibbles back into column
order: a dot product is a sum over k, so summing the even columns (low nibbles) and the odd columns
(high nibbles) as two dots of half depth gives the same exact integer. The tile GEMM here serves
``w4a4_linear`` beyond 16 rows; :mod:`graphsafe.quant.triton_gemv` (up to 4 rows, dp4a) and
:mod:`graphsafe.quant.triton_swap` (up to 16 rows, and ``quant_linear`` beyond) with
:mod:`graphsafe.quant.triton_persist` (``quant_linear`` from one full round of tiles on Hopper) take the rest.

Every pointer offset is computed in 64 bits (row indices are cast before the multiply), so M and N up
to 65,536 and beyond do not overflow. Under ``TRITON_INTERPRET=1`` the kernels run on CPU tensors.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace

import torch
import triton
import triton.language as tl

from .reference import rounded_clip

_INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
MAX_REGISTER_ROW = 32768  # columns a quantizer program holds in registers at once; wider rows loop
_ROUND = tl.constexpr(12582912.0)  # 1.5 * 2**23: (y + _ROUND) - _ROUND rounds |y| < 2**22 half to even in float32


@triton.jit
def _codes(x, scale, rcp, dt: tl.constexpr, USE_ASM: tl.constexpr):
    """float32 values -> int32 INT4 codes: T(x / scale), NaN -> 0, clamp to [-8, 7], round half even.

    The quotient is the correctly rounded float32 x / scale without a division per element: with
    rcp = RN(1 / scale), q = RN(x * rcp) is within an ulp and one FMA residual step makes it exact
    (Markstein's theorem). scale == 0 keeps x * rcp, i.e. x / 0 (+-Inf, or NaN for 0). With USE_ASM one
    ``cvt.rni`` rounds half to even, turns NaN into 0 and saturates +-Inf; the interpreter spells it out."""
    q = x * rcp
    q = tl.where(scale == 0.0, q, tl.fma(tl.fma(-q, scale, x), rcp, q))
    y = q.to(dt).to(tl.float32)
    if USE_ASM:
        c = tl.inline_asm_elementwise("cvt.rni.s32.f32 $0, $1;", "=r,r", [y], dtype=tl.int32, is_pure=True, pack=1)
    else:
        y = tl.where(y != y, 0.0, tl.minimum(tl.maximum(y, -8.0), 7.0))
        c = ((y + _ROUND) - _ROUND).to(tl.int32)
    return tl.minimum(tl.maximum(c, -8), 7)


@triton.jit
def _now(dummy):
    """%globaltimer (ns), for the TIMELINE of a program (``dummy``: any int32 scalar; inline asm takes one)."""
    return tl.inline_asm_elementwise("mov.u64 $0, %globaltimer;", "=l,r", [dummy], dtype=tl.int64, is_pure=False,
                                     pack=1)


@triton.jit
def _keep_time(t_ptr, program, started, released):
    """Row ``program`` of a timeline (benchmarks/chain_timeline.py): start, wait release, end (ns) and SM."""
    sm = tl.inline_asm_elementwise("mov.u32 $0, %smid;", "=r,r", [program], dtype=tl.int32, is_pure=False, pack=1)
    row = t_ptr + program.to(tl.int64) * 4
    tl.store(row, started)
    tl.store(row + 1, released)
    tl.store(row + 2, _now(program))
    tl.store(row + 3, sm.to(tl.int64))


@triton.jit
def _abs_bits_max(x):
    """The largest |x| of a float16/bfloat16 tile, as the int32 of its bits. Without the sign bit,
    larger magnitudes have larger bits and every NaN's bits exceed Inf's, so the row's NaN wins."""
    return tl.max(x.to(tl.int16, bitcast=True) & 0x7FFF, axis=0)


@triton.jit
def _store_codes(x, q_row, start, NB, plane, scale, rcp, dt: tl.constexpr, BLOCK: tl.constexpr,
                 LAYOUT: tl.constexpr, USE_ASM: tl.constexpr):
    """Codes of columns [start, start + BLOCK) of one row; returns the sum of the even columns' codes (LAYOUT
    2 only, else 0). LAYOUT 0, packed: byte j holds column 2j in its low nibble. 1: 16 x the even columns'
    codes as int8 at q_row[j] and the odd columns' at q_row[plane + j] (the large-M GEMM's operand,
    :mod:`graphsafe.quant.triton_swap`). 2, the MMA planes (``csrc/w4a4_planes.cu``): for every 8 columns,
    16 x the 4 even columns' codes, then the 4 odd columns' codes, as int8 bytes (NB: bytes in the row). 3:
    as 2 with the even columns' codes themselves, not 16 x, and no sum."""
    lo, hi = tl.split(tl.reshape(x, (BLOCK // 2, 2)))
    c_lo = _codes(lo.to(tl.float32), scale, rcp, dt, USE_ASM)
    c_hi = _codes(hi.to(tl.float32), scale, rcp, dt, USE_ASM)
    if LAYOUT >= 2:  # even column 2j goes to byte 8 (j // 4) + j % 4, odd column 2j + 1 four bytes later:
        j = tl.arange(0, BLOCK // 2)  # stored where they are, with no exchange between threads
        b = start + 8 * (j // 4) + j % 4
        tl.store(q_row + b, (c_lo << 4 if LAYOUT == 2 else c_lo).to(tl.int8), mask=b < NB)
        tl.store(q_row + b + 4, c_hi.to(tl.int8), mask=b + 4 < NB)
        return tl.sum(c_lo, axis=0) if LAYOUT == 2 else 0
    b = start // 2 + tl.arange(0, BLOCK // 2)
    if LAYOUT == 1:
        tl.store(q_row + b, (c_lo << 4).to(tl.int8), mask=b < NB)
        tl.store(q_row + plane + b, (c_hi << 4).to(tl.int8), mask=b < NB)
    else:
        tl.store(q_row + b, ((c_lo & 0xF) | (c_hi << 4)).to(tl.uint8), mask=b < NB)
    return 0


@triton.jit
def _sym_quant_kernel(x_ptr, q_ptr, s_ptr, sum_ptr, t_ptr, N, NB, stride_x, stride_q, plane, clip,
                      BLOCK: tl.constexpr, BLOCK_B: tl.constexpr, LOOP: tl.constexpr, PART: tl.constexpr,
                      LAYOUT: tl.constexpr, TRIGGER: tl.constexpr, WAIT: tl.constexpr, USE_ASM: tl.constexpr,
                      TIMELINE: tl.constexpr = False, WARM_X: tl.constexpr = False):
    """Program (row, part). Without LOOP the row stays in registers as one tile of BLOCK columns and,
    when BLOCK_B > 0, a second of BLOCK_B after it (two powers of two waste fewer lanes than one: 16384
    + 4096 for rows of 18944). With LOOP, tiles of BLOCK are read twice (the second time from L2). With
    PART > 0 the row is split over programs: each still finds the whole row's maximum (the same scale in
    every program, bit for bit), then reads its PART columns again (from L1 or L2) and writes their codes,
    so a few long rows spread the per-element work over several SMs instead of one each. LAYOUT: see
    _store_codes; never 2 or 3 with PART; with 2 the sum of the row's even-column codes goes to sum_ptr[row].
    TIMELINE: each program's start, wait release and end times and SM go to t_ptr (4 int64 a program).
    WARM_X (with WAIT, rows in registers): before waiting, the program asks L2 for its row's 128-byte lines
    (``prefetch.global.L2``), so that an x that is not in L2 already arrives while the kernel before
    finishes. That is safe while it may still be writing x: L2 is where every SM's writes land, and x is
    read only after the wait, through L1, which the prefetch does not fill."""
    program = tl.program_id(0) * tl.num_programs(1) + tl.program_id(1)
    if TIMELINE:
        started = _now(program)
    row = tl.program_id(0).to(tl.int64)
    x_row = x_ptr + row * stride_x
    q_row = q_ptr + row * stride_q
    dt: tl.constexpr = x_ptr.dtype.element_ty
    if WAIT:  # we were launched with PDL, early: the previous kernel may still be writing x
        if WARM_X and not LOOP:  # meanwhile x's lines go to L2, where the writes of the kernel before land too
            _prefetch_l2(x_row + tl.minimum(tl.arange(0, BLOCK // 64) * 64, N - 1))  # 64 elements: 128 bytes
            if BLOCK_B > 0:
                _prefetch_l2(x_row + tl.minimum(BLOCK + tl.arange(0, BLOCK_B // 64) * 64, N - 1))
        tl.extra.cuda.gdc_wait()
    if TIMELINE:
        released = _now(program)
    if TRIGGER:  # a kernel launched next with PDL may start now (it waits for our results itself); not
        tl.extra.cuda.gdc_launch_dependents()  # before our wait, or it would crowd the previous kernel
    cols = tl.arange(0, BLOCK)
    if LOOP:
        bits = tl.zeros((), tl.int32)
        for start in range(0, N, BLOCK):
            bits = tl.maximum(bits, _abs_bits_max(tl.load(x_row + start + cols, mask=start + cols < N, other=0.0)))
    else:
        xa = tl.load(x_row + cols, mask=cols < N, other=0.0)
        bits = _abs_bits_max(xa)
        if BLOCK_B > 0:
            cols_b = BLOCK + tl.arange(0, BLOCK_B)
            xb = tl.load(x_row + cols_b, mask=cols_b < N, other=0.0)
            bits = tl.maximum(bits, _abs_bits_max(xb))
    amax = bits.to(tl.int16).to(dt, bitcast=True).to(tl.float32)
    scale = (amax / 7.0).to(dt).to(tl.float32)
    scale = (scale * clip).to(dt)  # clip arrives already rounded to T
    if tl.program_id(1) == 0:  # every part found the same scale (without PART, one program per row)
        tl.store(s_ptr + row, scale)
    scale = scale.to(tl.float32)
    rcp = tl.math.div_rn(1.0, scale)
    even = tl.zeros((), tl.int32)
    if PART > 0:
        start = tl.program_id(1) * PART
        part_cols = start + tl.arange(0, PART)
        x = tl.load(x_row + part_cols, mask=part_cols < N, other=0.0)
        _store_codes(x, q_row, start, NB, plane, scale, rcp, dt, PART, LAYOUT, USE_ASM)
    elif LOOP:
        for start in range(0, N, BLOCK):
            x = tl.load(x_row + start + cols, mask=start + cols < N, other=0.0)
            even += _store_codes(x, q_row, start, NB, plane, scale, rcp, dt, BLOCK, LAYOUT, USE_ASM)
    else:
        even += _store_codes(xa, q_row, 0, NB, plane, scale, rcp, dt, BLOCK, LAYOUT, USE_ASM)
        if BLOCK_B > 0:
            even += _store_codes(xb, q_row, BLOCK, NB, plane, scale, rcp, dt, BLOCK_B, LAYOUT, USE_ASM)
    if LAYOUT == 2:
        tl.store(sum_ptr + row, even)
    if TIMELINE:
        _keep_time(t_ptr, program, started, released)


@dataclass(frozen=True)
class QuantConfig:
    block: int  # columns of the first tile (LOOP: of every tile)
    block_b: int  # columns of the second tile, 0 for none
    loop: bool
    num_warps: int
    part: int = 0  # columns each program writes codes for (a power of two; 0: the whole row, one program)


def quant_config(n: int, m: int = 1, split: bool = True) -> QuantConfig:
    """For ``m`` rows of ``n`` columns, from H100 measurements (benchmarks/README.md): rows up to
    MAX_REGISTER_ROW stay in registers, as one power-of-two tile or as two when that wastes fewer lanes;
    4 warps for many short rows, 8 otherwise; wider rows loop over tiles of 4096. With ``split``, up to
    16 rows longer than 8192 are split over about 80 programs of at least 1024 columns (rows of 18944:
    3.15 -> 2.26 us at M = 1, 3.28 -> 2.75 us at M = 16). Not in a PDL chain (``quant_linear`` on Hopper),
    where the extra programs delay the hand-off to the GEMM (+1.2 us for 18944 -> 3584 at M = 2)."""
    full = max(triton.next_power_of_2(max(n, 1)), 64)
    if full > MAX_REGISTER_ROW:
        return QuantConfig(4096, 0, True, 8)
    a, b = full, 0
    if full > 2048 and n < full:
        rest = max(triton.next_power_of_2(n - full // 2), 64)
        if full // 2 + rest < full:
            a, b = full // 2, rest
    part = max(1024, triton.next_power_of_2(-(-n * m // 80))) if split and m <= 16 and n > 8192 else 0
    return QuantConfig(a, b, False, 4 if (m > 256 and a + b <= 4096) else 8, part)  # part < n / 2 when set


def check_timeline(timeline: torch.Tensor | None, programs: int) -> None:
    """A kernel's ``timeline=`` buffer: int64 (programs, 4), or None."""
    if timeline is not None and (timeline.shape != (programs, 4) or timeline.dtype != torch.int64):
        raise ValueError(f"timeline must be int64 ({programs}, 4), got {timeline.dtype} {tuple(timeline.shape)}")


def mma_planes_width(n: int) -> int:
    """Bytes per row of the MMA planes of ``n`` columns (with or without sums): one per column,
    padded with zeros to whole chunks of 128 columns, as the tensor-core GEMV reads them."""
    return -(-n // 128) * 128


def sym_quant_into(x: torch.Tensor, clip_ratio: float, q: torch.Tensor, scale: torch.Tensor,
                   config: QuantConfig | None = None, trigger: bool = False, wait: bool = False,
                   xsum: torch.Tensor | None = None, timeline: torch.Tensor | None = None,
                   mma_planes: bool = False, warm_x: bool = True) -> None:
    """Quantize contiguous (M, N) ``x`` into ``q`` and ``scale`` (M, 1). ``q`` is either the packed
    codes, uint8 (M, ceil(N/2)), or int8 (2, M, ceil(N/2)): 16 x the even columns' codes, then 16 x the
    odd columns' (the operand of :func:`graphsafe.quant.triton_swap.big_into`), or, with ``xsum``, the
    MMA planes of ``mma_planes.planes_into``: int8 (M, mma_planes_width(N)), for every 8 columns 16 x the
    codes of the 4 even ones, then the codes of the 4 odd ones, zeros past N; ``xsum`` (M,) int32 gets
    the sum of each row's even-column codes. With ``mma_planes`` and no ``xsum``, an int8 (M,
    mma_planes_width(N)) ``q`` gets the planes of the GEMV without sums (``PlanesConfig.xsum`` False):
    the even columns' codes themselves, not 16 x. Programmatic dependent
    launch (PDL; the caller checks ``triton_gemv.pdl_available``): ``trigger`` lets a kernel launched
    next with PDL start once this one has its input; ``wait`` launches this one with PDL, so it starts
    while the previous kernel finishes and waits for it before reading ``x``. A few long rows are split
    over programs (``quant_config``) except when either is set, or into MMA planes. ``timeline``: int64
    (programs, 4) that gets each program's start, wait release and end (%globaltimer ns) and SM.
    ``warm_x`` (with ``wait``; ``False`` for benchmarks): each program asks L2 for its row of x before it
    waits, so that an x the kernel before did not write (a residual, an input set long ago) comes from HBM
    while that kernel finishes rather than after it."""
    m, n = x.shape
    if m == 0:
        return
    layout = 2 if xsum is not None else 3 if mma_planes else 1 if q.dim() == 3 else 0
    if layout == 3 and (q.shape != (m, mma_planes_width(n)) or q.dtype != torch.int8 or q.stride(1) != 1):
        raise ValueError(f"MMA planes without sums need q int8 ({m}, {mma_planes_width(n)}) with unit column "
                         f"stride, got {q.dtype} {tuple(q.shape)} strides {q.stride()}")
    if layout == 0 and q.dtype != torch.uint8:  # int8 2-D: MMA planes meant, with neither xsum nor mma_planes
        raise ValueError(f"packed codes are uint8, got {q.dtype} {tuple(q.shape)}: for the MMA planes pass xsum= "
                         f"(with the row sums) or mma_planes=True (without)")
    if layout == 2 and (q.shape != (m, mma_planes_width(n)) or q.dtype != torch.int8 or q.stride(1) != 1
                        or xsum.shape != (m,) or xsum.dtype != torch.int32 or xsum.stride(0) != 1):
        raise ValueError(f"MMA planes need q int8 ({m}, {mma_planes_width(n)}) and xsum int32 ({m},) with "
                         f"unit column stride, got q {q.dtype} {tuple(q.shape)} and xsum {xsum.dtype} "
                         f"{tuple(xsum.shape)}")
    cfg = config or quant_config(n, m, split=not (trigger or wait or layout >= 2))
    if layout >= 2:  # every byte of the padded row written: tiles of at least 128 columns
        cfg = replace(cfg, block=max(cfg.block, 128), block_b=cfg.block_b and max(cfg.block_b, 128))
    plane = q.stride(0) if layout == 1 else 0
    stride_q = q.stride(1) if layout == 1 else q.stride(0)
    clip = rounded_clip(clip_ratio, x.dtype)
    trigger, wait = trigger and not _INTERPRET, wait and not _INTERPRET
    if cfg.part and (cfg.loop or cfg.part % 2 or cfg.part & (cfg.part - 1) or layout >= 2):
        raise ValueError(f"QuantConfig.part must be an even power of two and the row held in registers (and "
                         f"not with MMA planes), got {cfg}")
    parts = triton.cdiv(n, cfg.part) if cfg.part else 1
    check_timeline(timeline, m * parts)
    _sym_quant_kernel[(m, parts)](x, q, scale, xsum if xsum is not None else scale,
                                  timeline if timeline is not None else scale, n, q.shape[-1], x.stride(0),
                                  stride_q, plane, clip, BLOCK=cfg.block, BLOCK_B=cfg.block_b, LOOP=cfg.loop,
                                  PART=cfg.part, LAYOUT=layout, TRIGGER=trigger, WAIT=wait, USE_ASM=not _INTERPRET,
                                  TIMELINE=timeline is not None and not _INTERPRET, WARM_X=wait and warm_x,
                                  num_warps=cfg.num_warps, **({"launch_pdl": True} if wait else {}))


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
def _dot_packed(acc, a, b, USE_ASM: tl.constexpr):
    """acc + a @ b for packed tiles (uint8, two codes a byte): the even columns' codes (low nibbles) and
    the odd columns' (high nibbles) as two INT8 dots of half depth, each operand carrying 16x."""
    a_lo, a_hi = _nibbles_x16(a, USE_ASM)
    b_lo, b_hi = _nibbles_x16(b, USE_ASM)
    acc = tl.dot(a_lo, b_lo, acc, out_dtype=tl.int32)
    return tl.dot(a_hi, b_hi, acc, out_dtype=tl.int32)


@triton.jit
def _dot_planes(acc, w, xl, xh, USE_ASM: tl.constexpr):
    """acc + packed weights ``w`` (BN, BKB) times INT8 activation planes ``xl``, ``xh`` (BKB, BM): the low
    nibbles (even columns) against the even plane, the high nibbles against the odd one (the many-row
    GEMMs, :mod:`graphsafe.quant.triton_swap` and :mod:`graphsafe.quant.triton_persist`)."""
    w_lo, w_hi = _nibbles_x16(w, USE_ASM)
    acc = tl.dot(w_lo, xl, acc, out_dtype=tl.int32)
    return tl.dot(w_hi, xh, acc, out_dtype=tl.int32)


@triton.jit
def _prefetch_l2(ptrs):
    """Ask L2 for the 128-byte lines at ``ptrs`` (any shape); nothing waits for them."""
    tl.inline_asm_elementwise("prefetch.global.L2 [$1]; mov.b32 $0, 0;", "=r,l", [ptrs], dtype=tl.int32,
                              is_pure=False, pack=1)


@triton.jit
def _wait_then_release():
    """For a GEMM launched with PDL after the quantizer: wait for the previous kernel (its inputs), then
    let the next kernel, if launched with PDL, start and wait for ours. Not before the wait, or calls in
    a row would all launch at once and crowd the running one."""
    tl.extra.cuda.gdc_wait()
    tl.extra.cuda.gdc_launch_dependents()


@triton.jit
def _grouped_tile(pid, grid_a, grid_b, GROUP: tl.constexpr):
    """Program ``pid`` -> its (tile along a, tile along b), in groups of GROUP tiles along a that walk b
    together, so that the tiles running at once share operands in L2."""
    width = GROUP * grid_b
    first = (pid // width) * GROUP
    size = min(grid_a - first, GROUP)
    return first + (pid % width) % size, (pid % width) // size


@triton.jit
def _w4a4_kernel(a_ptr, sa_ptr, b_ptr, sb_ptr, bias_ptr, c_ptr, M, N, KB,
                 stride_a, stride_b, stride_c,
                 HAS_BIAS: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BKB: tl.constexpr,
                 GROUP_M: tl.constexpr, USE_ASM: tl.constexpr):
    pid_m, pid_n = _grouped_tile(tl.program_id(0), tl.cdiv(M, BM), tl.cdiv(N, BN), GROUP_M)

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
        acc = _dot_packed(acc, a, b, USE_ASM)
        a_ptrs += BKB
        b_ptrs += BKB

    _dequant_store(acc, sa_ptr + ra, sb_ptr, bias_ptr, c_ptr, rm, rn, rb, M, N, stride_c, HAS_BIAS)


@triton.jit
def _dequant_store(acc, sa_ptrs, sb_ptr, bias_ptr, c_ptr, rm, rn, rb, M, N, stride_c, HAS_BIAS: tl.constexpr):
    """The W4A4 epilogue every GEMM kernel shares, in the reference's order: ``(sum * sa) * sb (+ bias)``
    in float32. ``acc`` holds 256 times the exact sums (both operands carried 16x); ``sa_ptrs`` point at
    each row's activation scale, ``rb`` are the output columns clamped in range."""
    sa = tl.load(sa_ptrs).to(tl.float32)
    sb, bias = _column_scales(sb_ptr, bias_ptr, rb, HAS_BIAS)
    _scale_store(acc, sa, sb, bias, c_ptr, rm, rn, M, N, stride_c, HAS_BIAS)


@triton.jit
def _column_scales(sb_ptr, bias_ptr, rb, HAS_BIAS: tl.constexpr):
    """The epilogue's per-column operands as float32: each column's weight scale and its bias (``sb``
    again without HAS_BIAS, never read then). ``rb``: the columns, clamped in range."""
    sb = tl.load(sb_ptr + rb).to(tl.float32)
    bias = tl.load(bias_ptr + rb).to(tl.float32) if HAS_BIAS else sb
    return sb, bias


@triton.jit
def _scale_store(acc, sa, sb, bias, c_ptr, rm, rn, M, N, stride_c, HAS_BIAS: tl.constexpr):
    """``_dequant_store`` with its operands already loaded: float32 ``sa`` per row, ``sb`` and ``bias``
    per column (``bias`` ignored without HAS_BIAS). Launched with ``enable_fp_fusion=False`` it rounds as
    the reference and the CUDA GEMVs do; fused, ``y * sb + bias`` becomes one FMA, a rounding apart."""
    y = (acc >> 8).to(tl.float32) * sa[:, None]
    y = y * sb[None, :]
    if HAS_BIAS:
        y = y + bias[None, :]
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
