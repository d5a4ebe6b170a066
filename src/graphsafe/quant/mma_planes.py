"""The tensor-core GEMV on MMA planes (``csrc/w4a4_planes.cu``): ``quant_linear``'s GEMM for few rows,
where its own quantizer writes the activations already unpacked (``sym_quant_into(..., xsum=...)``).

The GEMV on packed codes (:mod:`.mma_gemv`, ``csrc/w4a4_mma.cu``) unpacks every activation word in every
block, three instructions a register as for the weights, and guards each word against the end of K. On
planes the activations go to the MMA as loaded, each weight register costs one instruction (the even
columns as code + 8, whose excess the quantizer's sum of even codes takes off), and the loop reads whole
chunks of 128 columns with no guard: at M = 4 in 3584->4608 its loop needs 4.1 instructions per weight
word where the GEMV on packed codes needs 10.2 (``benchmarks/gemv_sass.py --kind planes``). It is
compiled by NVRTC and launched like that one (:mod:`.mma_gemv`, :mod:`.launcher`).

Two variants (``PlanesConfig.xsum``): with the quantizer's row sums, as above; or without them, where
the even plane holds the codes themselves and the weights' even columns go in as 16 x code too (two
instructions a register, 5.2 a weight word), so the quantizer adds nothing up and finishes sooner
(``benchmarks/chain_timeline.py``: 0.74 µs after its wait against 0.93 with the sum).

Alone it is the fastest few-row GEMM at 4 and 8 rows on an H100 (3584->4608 M = 4: 5.04 µs against 5.27
for the GEMV on packed codes and 5.46 for the dp4a GEMV, at 8 warps). With 10 warps a block (seventeenth
session) it also leads chained after the quantizer from 1 row on rows up to 4096, and by more after a
torch kernel; ``ops.planes_wanted`` routes it where it won (``benchmarks/README.md``). On rows up
to 4096, where 16-row tiles would put a block more on some SMs than on the others, its rows
are shared out over a full wave of blocks instead (``PlanesConfig.balance``, twenty-first session),
leaving a block's room on one SM per activation row for the next call's quantizer.
"""
from __future__ import annotations

import ctypes
import functools
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from . import launcher, mma_gemv
from .triton_kernels import mma_planes_width, sym_quant_into

SOURCE = Path(__file__).parent / "csrc" / "w4a4_planes.cu"
MAX_ROWS = 16


@dataclass(frozen=True)
class PlanesConfig:
    warps: int  # warps per block, splitting K chunk by chunk
    tiles: int  # 16-row weight tiles per block
    ring: int  # chunks in each thread's register ring: ring - 1 in flight while one is multiplied
    prefetch: bool = False  # with PDL on sm_90: the block's weight rows prefetched into L2 before the wait
    timeline: int = 0  # blocks whose start, wait and end times are kept (benchmarks/chain_timeline.py)
    xsum: bool = True  # planes with the even-code sums (the quantizer's layout 2), else without (layout 3)
    early: bool = True  # the first chunks' weights requested before the PDL wait (False: after it; benchmarks)
    head: int = 100  # with prefetch: the percentage of each weight row prefetched before the PDL wait; the
                     # rest once the block has requested its first planes
    balance: int = 0  # 1: where 16 tiles rows a block would put a block more on some SMs than on the rest
                      # at a full wave, as many blocks as fit the GPU at once, each an equal share of the
                      # rows (``grid``); 2: that wherever it is more blocks than the tiles (tests,
                      # benchmarks); 0: never
    spare: int | None = None  # with balance: SMs left a block short, where the next call's quantizer programs
                              # fit while this GEMV runs (None: one per activation row, as many as it has)

    def __post_init__(self):
        if self.balance not in (0, 1, 2) or self.spare is not None and self.spare < 0:
            raise ValueError(f"PlanesConfig.balance is 0, 1 or 2 and spare None or >= 0, got {self}")


def planes_config(m: int, n: int, kw: int) -> PlanesConfig:
    """Launch configuration for ``m`` rows, ``n`` outputs and ``kw`` 32-bit words of K, from H100 runs of
    ``benchmarks/few_chain.py`` (quantizer and GEMV chained, weights and activations from HBM): on rows up
    to 4096, 10 warps and a ring of two chunks, on planes without sums. 10 warps leave each warp 3 of the
    28 chunks of 3584 (8 left it 4) and still fit 3 blocks an SM (60 registers): 3584->4608 at 4 rows 5.64
    µs against 5.96 with 8 warps, 3584->18944 14.32 against 14.38 for 4 warps three chunks deep with sums.
    On long rows (K > 4096, where it runs at 9-16 rows) the same, with each block's weight rows prefetched
    into L2 while the quantizer runs: 18944->3584 at 16 rows 16.39 µs against 16.67 for 8 warps with sums.
    On rows up to 4096 the rows are shared out over as many blocks as fit the GPU at once,
    three an SM on all but ``m`` SMs (``balance``, where ``grid`` finds a third block on only some SMs):
    3584->4608 at 2 / 4 / 8 rows 5.49 / 5.51 / 5.57 µs against 5.66 / 5.72 / 5.88 with 288 blocks of 16
    rows (after a torch op 5.71 / 5.78 / 5.94 against 5.88 / 6.01 / 6.17). At 1 row it was level on an H100
    in the twenty-first session (5.55 against 5.60) and 0.1 µs slower on an H200; in the twenty-third, two
    H100 runs in either order gave 5.40-5.41 against 5.51-5.55 with the tiles, so the rows are shared out
    from 1 row too (``quant.py``'s W4A4 row did not move: 5.49 against 5.48-5.49, on two machines).
    ``n`` does not change the choice (``grid`` decides where the balance applies)."""
    return PlanesConfig(10, 1, 2, prefetch=kw > 512, xsum=False, balance=int(kw <= 512))


def supports(qw: torch.Tensor, m: int) -> bool:
    """Shapes and alignment the kernel takes: 1-16 rows, K a multiple of 32 (whole 16-byte words of
    weights), packed uint8 weights with unit column stride, 16-byte aligned, rows of whole 16-byte words."""
    kb = qw.shape[1]
    return (0 < m <= MAX_ROWS and kb > 0 and kb % 16 == 0 and qw.dtype == torch.uint8 and qw.stride(1) == 1
            and qw.data_ptr() % 16 == 0 and qw.stride(0) % 16 == 0)


def _check_operands(planes, xsum, scale, w_scale, bias, out, m: int, n: int, kb: int) -> None:
    """Each operand as the kernel reads it: planes rows of mma_planes_width(K) bytes on 16-byte boundaries;
    xsum, the scales and bias one element per row or output, contiguous; out (M, N) with unit column
    stride; all on the planes' device."""
    width = mma_planes_width(2 * kb)
    if (planes.dtype != torch.int8 or planes.shape[1] != width or planes.stride(1) != 1
            or planes.stride(0) % 16 or planes.data_ptr() % 16
            or xsum is not None and (xsum.shape != (m,) or xsum.dtype != torch.int32 or xsum.stride(0) != 1)):
        raise ValueError(f"planes must be int8 ({m}, {width}) with 16-byte aligned rows, and xsum contiguous "
                         f"int32 ({m},); got {planes.dtype} {tuple(planes.shape)} strides {planes.stride()}, "
                         + ("no xsum" if xsum is None else
                            f"xsum {xsum.dtype} {tuple(xsum.shape)} strides {xsum.stride()}"))
    if xsum is not None and xsum.device != planes.device:
        raise ValueError(f"every operand must be on {planes.device}")
    mma_gemv.check_epilogue(scale, w_scale, bias, out, m, n, planes.device)


def macros(m: int, cfg: PlanesConfig, types: tuple[torch.dtype, torch.dtype, torch.dtype | None, torch.dtype],
           pdl: bool) -> tuple[tuple[str, int], ...]:
    """The ``-D`` macros of one program: ``m`` rows, ``cfg``, the dtypes of (scale, w_scale, bias or None,
    out), and whether it is launched with PDL."""
    sa, sb, bias, out = types
    code = mma_gemv._TYPES
    return (("WARPS", cfg.warps), ("TILES", cfg.tiles), ("RING", cfg.ring), ("NT", 1 if m <= 8 else 2),
            ("SA_T", code[sa]), ("SB_T", code[sb]), ("BIAS_T", code[bias] if bias is not None else 0),
            ("OUT_T", code[out]), ("HAS_BIAS", int(bias is not None)), ("PDL", int(pdl)),
            ("PREFETCH", int(cfg.prefetch and pdl)), ("TIMELINE", cfg.timeline), ("XSUM", int(cfg.xsum)),
            ("EARLY", int(cfg.early)), ("HEAD", cfg.head), ("BALANCE", int(cfg.balance > 0)))


def tile_blocks(n: int, cfg: PlanesConfig) -> int:
    """Blocks of ``cfg.tiles`` 16-row weight tiles that cover ``n`` outputs (the grid without balance)."""
    return -(-n // (16 * cfg.tiles))


def grid(n: int, cfg: PlanesConfig, resident: int, sms: int, m: int = 1) -> int:
    """Blocks of a launch for ``n`` outputs and ``m`` activation rows: one per 16 ``cfg.tiles`` rows; with
    ``cfg.balance`` 1, where those tiles' last round puts a block more on some SMs than on the rest at a
    full wave (more than ``resident`` - 1 blocks an SM on ``sms`` SMs, ``resident`` being as many as fit
    at once), ``resident`` blocks an SM instead on all SMs but ``cfg.spare`` (default ``m``), so that no
    SM waits on a block more than the others (3584->4608 at 10 warps and 4 rows: 392 blocks of 11-12
    rows, where 288 blocks of 16 put a third block on 24 of 132 SMs and two on the rest) and the next
    call's quantizer, one program a row, finds room on the spare SMs instead of waiting for this GEMV's
    blocks to leave. Fewer tiles keep their grid: spread over a full wave they ran slower (on an H200,
    3584->3584 and 3584->512). ``cfg.balance`` 2 takes the full wave wherever it is more blocks."""
    tiled = tile_blocks(n, cfg)
    if not cfg.balance or cfg.balance == 1 and tiled <= (resident - 1) * sms:
        return tiled
    spare = m if cfg.spare is None else cfg.spare
    return max(tiled, min(resident * sms - spare, n), 1)  # every block at least one row


@functools.lru_cache(maxsize=None)
def _resident(index: int, arch: int, defines: tuple[tuple[str, int], ...], threads: int) -> tuple[int, int]:
    """(blocks of this program that fit an SM at once, the device's SMs), from the driver's occupancy."""
    from cuda.bindings import driver

    from .launcher import cu_ok
    fn = mma_gemv._function(index, arch, defines, 0, SOURCE, b"w4a4_planes")
    result, blocks = driver.cuOccupancyMaxActiveBlocksPerMultiprocessor(fn, threads, 0)
    cu_ok(result, "cuOccupancyMaxActiveBlocksPerMultiprocessor")
    if blocks < 1:
        raise RuntimeError(f"no block of w4a4_planes {dict(defines)} fits an SM")
    return blocks, torch.cuda.get_device_properties(index).multi_processor_count


def plan(m: int, n: int, cfg: PlanesConfig, types, pdl: bool, device: torch.device) -> tuple[PlanesConfig, int]:
    """(the configuration launched, its blocks) for ``m`` rows and ``n`` outputs on ``device``, ``types``
    and ``pdl`` as for :func:`macros`: ``cfg`` on :func:`grid`'s blocks where ``cfg.balance`` gives more
    blocks than the tiles, else ``cfg`` without ``balance`` on the tiles (the program without BALANCE).
    Whether the tiles leave SMs uneven is read from the occupancy of the program they run, so shapes the
    balance does not reach (most) compile and load only that program; the full wave, from the BALANCE
    program's own occupancy where it is lower. Shapes it reaches load both programs on first use (the
    tiles' one only read; at 10 warps both fit 3 blocks an SM: 60-62 and 62-64 registers on sm_90)."""
    return _plan(mma_gemv.device_index(device), mma_gemv.check(device), m, n, cfg, tuple(types), pdl)


@functools.lru_cache(maxsize=4096)
def _plan(index: int, arch: int, m: int, n: int, cfg: PlanesConfig, types, pdl: bool) -> tuple[PlanesConfig, int]:
    tiled, tiles = tile_blocks(n, cfg), replace(cfg, balance=0)
    if cfg.balance:  # where the tiles fill no SM more than another, or a wave, they keep their grid
        resident, sms = _resident(index, arch, macros(m, tiles, types, pdl), 32 * cfg.warps)
        if grid(n, cfg, resident, sms, m) > tiled:  # the tiles' program judges its tiles; the wave is
            own = _resident(index, arch, macros(m, cfg, types, pdl), 32 * cfg.warps)[0]  # BALANCE's own
            shared = grid(n, cfg, min(own, resident), sms, m)
            if shared > tiled:
                return cfg, shared
    return tiles, tiled


def planes_into(planes: torch.Tensor, xsum: torch.Tensor | None, scale: torch.Tensor, qw: torch.Tensor,
                w_scale: torch.Tensor, bias: torch.Tensor | None, out: torch.Tensor,
                config: PlanesConfig | None = None, after_quantizer: bool = False) -> None:
    """``out`` (M, N) = dequantized (activations . weights^T) (+ bias) from MMA planes ``planes`` (M,
    mma_planes_width(K)) and their even-code sums ``xsum`` (M,), as ``sym_quant_into(..., xsum=...)``
    writes them, for 1-16 rows where :func:`supports` holds; with ``xsum`` None, planes without sums
    (``sym_quant_into(..., mma_planes=True)`` without ``xsum``) and a configuration with ``xsum`` False.
    ``after_quantizer``: the previous kernel on the stream is that quantizer and nothing else this kernel
    reads is written by it; it is then launched with PDL, loads its first weights while the quantizer
    finishes, and lets the next kernel launch once it has its inputs."""
    m = planes.shape[0]
    n, kb = qw.shape
    if m == 0 or n == 0:
        return
    if not supports(qw, m):
        raise ValueError(f"the tensor-core GEMV on planes takes 1-{MAX_ROWS} rows, K % 32 == 0 and 16-byte "
                         f"aligned weights; got {m} rows, weights {tuple(qw.shape)} at {qw.data_ptr() % 16} mod 16")
    _check_operands(planes, xsum, scale, w_scale, bias, out, m, n, kb)
    cfg = config or replace(planes_config(m, n, kb // 4), xsum=xsum is not None)
    if cfg.xsum != (xsum is not None):
        raise ValueError(f"{cfg} {'needs' if cfg.xsum else 'takes no'} xsum")
    arch = mma_gemv.check(planes.device)
    pdl = after_quantizer and arch >= 90
    index = mma_gemv.device_index(planes.device)
    types = (scale.dtype, w_scale.dtype, bias.dtype if bias is not None else None, out.dtype)
    cfg, blocks = _plan(index, arch, m, n, cfg, types, pdl)
    fn = mma_gemv._function(index, arch, macros(m, cfg, types, pdl), 0, SOURCE, b"w4a4_planes")
    launch = launcher.launch("w4a4_planes", PARAMS, blocks, 32 * cfg.warps, 0, pdl)
    launch(fn, torch.cuda.current_stream(planes.device).cuda_stream,
           (planes.data_ptr(), (xsum if xsum is not None else scale).data_ptr(), scale.data_ptr(), qw.data_ptr(), w_scale.data_ptr(),
            (bias if bias is not None else w_scale).data_ptr(), out.data_ptr(), m, n, kb // 4, planes.stride(0) // 4,
            qw.stride(0) // 4, out.stride(0)))


def chain_into(x: torch.Tensor, clip_ratio: float, planes: torch.Tensor, xsum: torch.Tensor | None,
               scale: torch.Tensor, qw: torch.Tensor, w_scale: torch.Tensor, bias: torch.Tensor | None,
               out: torch.Tensor, cfg: PlanesConfig, pdl: bool, *, early: bool = True, quant=None,
               warm_x: bool = True) -> None:
    """``quant_linear``'s route on MMA planes: the quantizer writes ``x``'s planes into ``planes`` (with
    the row sums into ``xsum`` where ``cfg.xsum``, else ``xsum`` is not used) and ``scale``, then the
    GEMV reads them into ``out``. ``pdl`` (the caller checks ``triton_gemv.pdl_available``): the quantizer
    waits for the kernel before it on the stream and lets the GEMV start while it finishes; ``early``
    False (benchmarks) keeps that release back, so the GEMV runs in plain stream order. ``quant`` (a
    ``QuantConfig``) and ``warm_x`` go to the quantizer."""
    sums = xsum if cfg.xsum else None
    sym_quant_into(x, clip_ratio, planes, scale, quant, trigger=pdl and early, wait=pdl, xsum=sums,
                   mma_planes=True, warm_x=warm_x)
    planes_into(planes, sums, scale, qw, w_scale, bias, out, cfg, after_quantizer=pdl and early)


def timeline(cfg: PlanesConfig, m: int, types, pdl: bool, device: torch.device, n: int | None = None) -> torch.Tensor:
    """The timestamps a ``cfg.timeline`` configuration kept for the blocks of its latest launch on
    ``device`` (int64 (cfg.timeline, 4): %globaltimer ns at the block's start, after its PDL wait and at
    its end, then its SM), copied out of the module's ``w4a4_timeline``. ``m``, ``types``, ``pdl`` and,
    with ``cfg.balance``, the launch's outputs ``n`` as the launch had them (they pick the program)."""
    from cuda.bindings import driver

    from .launcher import cu_ok
    if not cfg.timeline:
        raise ValueError(f"{cfg} keeps no timeline")
    if cfg.balance and n is None:
        raise ValueError(f"{cfg} shares its rows out where that gives more blocks: pass the launch's n")
    index = mma_gemv.device_index(device)
    arch = mma_gemv.check(device)
    if cfg.balance:
        cfg = _plan(index, arch, m, n, cfg, tuple(types), pdl)[0]
    fn = mma_gemv._function(index, arch, macros(m, cfg, types, pdl), 0, SOURCE, b"w4a4_planes")
    result, module = driver.cuFuncGetModule(fn)
    cu_ok(result, "cuFuncGetModule")
    result, ptr, size = driver.cuModuleGetGlobal(module, b"w4a4_timeline")
    cu_ok(result, "cuModuleGetGlobal")
    out = torch.empty(cfg.timeline, 4, dtype=torch.int64, device=device)
    torch.cuda.synchronize(device)
    cu_ok(driver.cuMemcpyDtoD(out.data_ptr(), ptr, size)[0], "cuMemcpyDtoD")
    torch.cuda.synchronize(device)
    return out


PARAMS = (ctypes.c_void_p,) * 7 + (ctypes.c_int,) * 3 + (ctypes.c_longlong,) * 3  # w4a4_planes's parameters
