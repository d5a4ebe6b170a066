"""The W4A4 GEMM for few rows (M <= 16) on INT8 tensor cores: ``csrc/w4a4_mma.cu``, a CUDA kernel
compiled at first use by NVRTC (through cuda-bindings; no host compiler, no torch extension build, about
a second per configuration) and launched with the driver API on the current stream, so CUDA graphs
capture it like any kernel.

Why not Triton: with 1-16 rows the GEMM only streams the packed weights, and the tensor cores' register
layout lets each thread feed its own 16-byte loads straight into ``mma.m16n8k32`` (the file's header
says how). Triton's ``tl.dot`` pads the rows to 16 and moves every unpacked weight tile through shared
memory into that layout; the dp4a GEMV (``triton_gemv``) runs out of CUDA-core issue slots from about
four rows (each 32-bit word of weights costs two dp4a per row).
"""
from __future__ import annotations

import ctypes
import functools
from dataclasses import dataclass
from pathlib import Path

import torch

from . import launcher
from .launcher import cu_ok as _cu_ok

SOURCE = Path(__file__).parent / "csrc" / "w4a4_mma.cu"
MAX_ROWS = 16  # two 8-column MMA tiles
_TYPES = {torch.float16: 0, torch.bfloat16: 1, torch.float32: 2}


class MmaUnavailable(RuntimeError):
    """The tensor-core GEMV cannot run here: no cuda-bindings, no NVRTC library (``warn``: installing
    them would help), or not a CUDA GPU of sm_80 or newer."""

    def __init__(self, message: str, warn: bool = False):
        super().__init__(message)
        self.warn = warn


@dataclass(frozen=True)
class MmaConfig:
    warps: int  # warps per block, splitting K
    tiles: int  # 16-row weight tiles per block
    unroll: int  # 16-byte words per thread and weight row per step (64 codes each)
    stages: int = 2  # steps whose loads are in flight, plus the one being multiplied
    cluster: int = 1  # CTAs of a thread-block cluster splitting K further (Hopper); the first adds up
    smem: bool = False  # the ring of steps in flight in shared memory (cp.async) instead of registers

    def ring_bytes(self, m: int) -> int:
        """Dynamic shared memory per block for ``m`` rows (0 without ``smem``)."""
        slots = self.unroll * (2 * self.tiles + (1 if m <= 8 else 2))
        return self.stages * slots * 16 * 32 * self.warps if self.smem else 0


def mma_config(m: int, n: int, kw: int) -> MmaConfig:
    """Launch configuration for ``m`` rows, ``n`` outputs and ``kw`` 32-bit words of K (H100 sweeps,
    ``benchmarks/quant.py --sweep-few``): 8 warps splitting K; on long rows a shared-memory ring two
    steps deep (its loads take no registers, so more of them are in flight), on short rows a register
    ring one step deep."""
    if kw > 512:  # K > 4096, as in ops.mma_wanted
        return MmaConfig(8, 1, 2, 3, 1, True)
    return MmaConfig(8, 1, 2, 2, 1, False)


def supports(q: torch.Tensor, qw: torch.Tensor) -> bool:
    """Shapes and alignment the kernel takes: 1-16 rows, K a multiple of 32 (whole 16-byte words), both
    operands 16-byte aligned with row strides in whole 16-byte words."""
    m, kb = q.shape
    return (0 < m <= MAX_ROWS and kb > 0 and kb % 16 == 0 and q.data_ptr() % 16 == 0
            and qw.data_ptr() % 16 == 0 and q.stride(0) % 16 == 0 and qw.stride(0) % 16 == 0)


_CHECKED: dict[torch.device, int | tuple[str, bool]] = {}


def device_index(device: torch.device) -> int:
    """``device``'s CUDA ordinal (the current device where it names none), as the driver calls take it."""
    return device.index if device.index is not None else torch.cuda.current_device()


def check(device: torch.device) -> int:
    """The device's compute capability as 10 * major + minor; raises :class:`MmaUnavailable` where the
    kernel cannot run. The outcome is kept per device, a refusal too: the auto backend asks on every
    call, and a missing package must not cost an import search each time."""
    got = _CHECKED.get(device)
    if got is None:
        try:
            got = _check(device)
        except MmaUnavailable as exc:
            got = (str(exc), exc.warn)
        _CHECKED[device] = got
    if isinstance(got, tuple):
        raise MmaUnavailable(*got)
    return got


def _driver_version() -> int:
    """The CUDA driver's version as 1000 * major + 10 * minor (cuDriverGetVersion)."""
    from cuda.bindings import driver
    result, version = driver.cuDriverGetVersion()
    _cu_ok(result, "cuDriverGetVersion")
    return version


def _check(device: torch.device) -> int:
    if device.type != "cuda":
        raise MmaUnavailable(f"the tensor-core GEMV needs a CUDA device, got {device}")
    major, minor = torch.cuda.get_device_capability(device)
    arch = 10 * major + minor
    if major < 8:
        raise MmaUnavailable(f"the tensor-core GEMV needs sm_80 or newer (INT8 mma.m16n8k32), got sm_{arch}")
    try:
        from cuda.bindings import nvrtc
        version = nvrtc_version()
        result, archs = nvrtc.nvrtcGetSupportedArchs()
        _nvrtc_ok(result)
        driver = _driver_version()
    except Exception as exc:  # ImportError, cuda-pathfinder not finding libnvrtc, a failing call
        raise MmaUnavailable(f"the tensor-core GEMV needs cuda-bindings and NVRTC ({exc}); "
                             "pip install 'graphsafe[cuda]'", warn=True) from exc
    if arch not in archs:
        raise MmaUnavailable(f"NVRTC {version[0]}.{version[1]} cannot compile for sm_{arch} (it knows "
                             f"{', '.join(f'sm_{a}' for a in archs)}); a newer cuda-bindings and "
                             "nvidia-cuda-nvrtc would", warn=True)
    if driver // 1000 < version[0]:
        raise MmaUnavailable(f"NVRTC {version[0]}.{version[1]} makes code for CUDA {version[0]} drivers, and this "
                             f"driver is CUDA {driver // 1000}.{driver % 1000 // 10}; install cuda-bindings and "
                             f"nvidia-cuda-nvrtc of major version {driver // 1000}", warn=True)
    return arch


def _nvrtc_ok(result, prog=None, source: Path = SOURCE) -> None:
    from cuda.bindings import nvrtc
    if result == nvrtc.nvrtcResult.NVRTC_SUCCESS:
        return
    log = _program_log(prog) if prog is not None else ""
    raise RuntimeError(f"NVRTC could not compile {source.name}: {result.name}\n{log}")


def _program_log(prog) -> str:
    """NVRTC's log of one program (the compiler's messages, and ptxas's with ``--ptxas-options=-v``)."""
    from cuda.bindings import nvrtc
    _, size = nvrtc.nvrtcGetProgramLogSize(prog)
    buf = bytearray(size)  # NVRTC writes into it: never a bytes object (b" " * 1 is CPython's shared b" ")
    nvrtc.nvrtcGetProgramLog(prog, buf)
    return buf.decode(errors="replace").strip("\x00 \n")


def nvrtc_version() -> tuple[int, int]:
    """NVRTC's (major, minor); raises ImportError or cuda-pathfinder's error when it is missing."""
    from cuda.bindings import nvrtc
    result, major, minor = nvrtc.nvrtcVersion()
    _nvrtc_ok(result)
    return major, minor


def _headers(folder: Path) -> tuple[list[bytes], list[bytes]]:
    """The names and texts of the headers (``*.cuh``) beside a source, for NVRTC to include from memory."""
    paths = sorted(folder.glob("*.cuh"))
    return [p.name.encode() for p in paths], [p.read_bytes() for p in paths]


def _compile(arch: int | str, defines: tuple[tuple[str, int], ...], extra: tuple[bytes, ...] = (),
             source: Path = SOURCE, ptx: bool = False) -> tuple[bytes, str]:
    """(the cubin, or with ``ptx`` the PTX, and NVRTC's log) of ``source`` for ``sm_<arch>``."""
    from cuda.bindings import nvrtc
    size_of, get = (nvrtc.nvrtcGetPTXSize, nvrtc.nvrtcGetPTX) if ptx else (nvrtc.nvrtcGetCUBINSize, nvrtc.nvrtcGetCUBIN)
    names, texts = _headers(source.parent)
    result, prog = nvrtc.nvrtcCreateProgram(source.read_bytes(), source.name.encode(), len(names), texts, names)
    _nvrtc_ok(result)
    try:
        opts = [f"--gpu-architecture=sm_{arch}".encode(), b"-std=c++17", *extra,
                *(f"-D{k}={v}".encode() for k, v in defines)]
        _nvrtc_ok(nvrtc.nvrtcCompileProgram(prog, len(opts), opts)[0], prog, source)
        result, size = size_of(prog)
        _nvrtc_ok(result, prog)
        out = bytearray(size)  # written by NVRTC, as the log's buffer
        _nvrtc_ok(get(prog, out)[0], prog)
        return bytes(out), _program_log(prog)
    finally:
        nvrtc.nvrtcDestroyProgram(prog)


@functools.lru_cache(maxsize=None)
def compile_cubin(arch: int | str, defines: tuple[tuple[str, int], ...], source: Path = SOURCE) -> bytes:
    """``source`` (default ``csrc/w4a4_mma.cu``) compiled for ``sm_<arch>`` (``arch`` may carry a suffix:
    ``"90a"``) with the given macros (cached per process)."""
    return _compile(arch, defines, source=source)[0]


def compile_ptx(arch: int | str, defines: tuple[tuple[str, int], ...], source: Path = SOURCE) -> str:
    """The PTX NVRTC makes of ``source`` for one configuration (what the CPU tests read instruction
    order from)."""
    return _compile(arch, defines, source=source, ptx=True)[0].rstrip(b"\x00").decode()


def compile_log(arch: int | str, defines: tuple[tuple[str, int], ...], source: Path = SOURCE) -> str:
    """ptxas's report (registers, spills, shared memory, wgmma serialization) for one configuration."""
    return _compile(arch, defines, (b"--ptxas-options=-v",), source)[1]


@functools.lru_cache(maxsize=None)
def _function(index: int, arch: int | str, defines: tuple[tuple[str, int], ...], ring_bytes: int,
              source: Path = SOURCE, name: bytes = b"w4a4_mma"):
    """Kernel ``name`` of ``source`` loaded into device ``index``'s primary context (the one torch uses),
    allowed ``ring_bytes`` of dynamic shared memory."""
    from cuda.bindings import driver
    cubin = compile_cubin(arch, defines, source)
    result, dev = driver.cuDeviceGet(index)
    _cu_ok(result, "cuDeviceGet")
    result, ctx = driver.cuDevicePrimaryCtxRetain(dev)
    _cu_ok(result, "cuDevicePrimaryCtxRetain")
    _cu_ok(driver.cuCtxPushCurrent(ctx)[0], "cuCtxPushCurrent")
    try:
        result, module = driver.cuModuleLoadData(cubin)
        _cu_ok(result, "cuModuleLoadData")
        result, fn = driver.cuModuleGetFunction(module, name)
        _cu_ok(result, "cuModuleGetFunction")
        if ring_bytes:  # over 48 KB with the static part counted, a block must ask for it
            _cu_ok(driver.cuFuncSetAttribute(
                fn, driver.CUfunction_attribute.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, ring_bytes)[0],
                f"allowing {ring_bytes} bytes of shared memory")
    finally:
        _cu_ok(driver.cuCtxPopCurrent()[0], "cuCtxPopCurrent")
    return fn


def macros(m: int, cfg: MmaConfig, types: tuple[torch.dtype, torch.dtype, torch.dtype | None, torch.dtype],
           pdl: bool) -> tuple[tuple[str, int], ...]:
    """The ``-D`` macros of one program: ``m`` rows, ``cfg``, the dtypes of (scale, w_scale, bias or None,
    out), and whether it is launched with PDL."""
    sa, sb, bias, out = types
    return (("WARPS", cfg.warps), ("TILES", cfg.tiles), ("UNROLL", cfg.unroll), ("STAGES", cfg.stages),
            ("CLUSTER", cfg.cluster), ("ASYNC", int(cfg.smem)), ("NT", 1 if m <= 8 else 2),
            ("SA_T", _TYPES[sa]), ("SB_T", _TYPES[sb]), ("BIAS_T", _TYPES[bias] if bias is not None else 0),
            ("OUT_T", _TYPES[out]), ("HAS_BIAS", int(bias is not None)), ("PDL", int(pdl)))


def check_epilogue(scale: torch.Tensor, w_scale: torch.Tensor, bias: torch.Tensor | None, out: torch.Tensor, m: int,
                   n: int, device: torch.device) -> None:
    """The operands of both tensor-core GEMVs' epilogue as they read them: the scales and bias one
    element per row or output, contiguous; out (M, N) with unit column stride; all on ``device``."""
    for name, t, rows in (("scale", scale, m), ("w_scale", w_scale, n), ("bias", bias, n), ("out", out, None)):
        if t is None:
            continue
        if t.dtype not in _TYPES:
            raise ValueError(f"{name} must be float16, bfloat16 or float32, got {t.dtype}")
        if rows is not None and (t.dim() == 0 or t.numel() != rows or t.shape[0] != rows or t.stride(0) != 1):
            raise ValueError(f"{name} must hold one contiguous value per {'row' if rows == m else 'output'} "
                             f"({rows}), got shape {tuple(t.shape)} strides {t.stride()}")
    if tuple(out.shape) != (m, n) or out.stride(1) != 1:
        raise ValueError(f"out must be ({m}, {n}) with unit column stride, got {tuple(out.shape)} strides "
                         f"{out.stride()}")
    if any(t is not None and t.device != device for t in (scale, w_scale, bias, out)):
        raise ValueError(f"every operand must be on {device}")


def mma_into(q: torch.Tensor, scale: torch.Tensor, qw: torch.Tensor, w_scale: torch.Tensor,
             bias: torch.Tensor | None, out: torch.Tensor, config: MmaConfig | None = None,
             after_quantizer: bool = False) -> None:
    """``w4a4_into`` for 1-16 rows where :func:`supports` holds. ``after_quantizer``: the previous kernel
    on the stream is the quantizer writing ``q``/``scale`` and nothing else this kernel reads; it is then
    launched with PDL, loads its first weights while the quantizer finishes, and lets the next kernel
    launch once it has its inputs."""
    m, kb = q.shape
    n = qw.shape[0]
    if m == 0 or n == 0:
        return
    if not supports(q, qw):
        raise ValueError(f"the tensor-core GEMV takes 1-{MAX_ROWS} rows, K % 32 == 0 and 16-byte aligned "
                         f"operands; got q {tuple(q.shape)} at {q.data_ptr() % 16} mod 16, qw at "
                         f"{qw.data_ptr() % 16} mod 16")
    if q.dtype != torch.uint8 or qw.dtype != torch.uint8 or qw.shape[1] != kb or q.stride(1) != 1 or qw.stride(1) != 1:
        raise ValueError(f"q and qw must be packed uint8 codes with unit column stride and rows of the same bytes; "
                         f"got q {q.dtype} {tuple(q.shape)} strides {q.stride()}, qw {qw.dtype} {tuple(qw.shape)} "
                         f"strides {qw.stride()}")
    check_epilogue(scale, w_scale, bias, out, m, n, q.device)
    arch = check(q.device)
    kw = kb // 4
    cfg = config or mma_config(m, n, kw)
    pdl = after_quantizer and arch >= 90
    if cfg.cluster > 1 and arch < 90:
        raise ValueError(f"thread-block clusters need sm_90 or newer; {cfg} on sm_{arch}")
    ring = cfg.ring_bytes(m)
    fn = _function(device_index(q.device), arch,
                   macros(m, cfg, (scale.dtype, w_scale.dtype, bias.dtype if bias is not None else None, out.dtype),
                          pdl), ring)
    grid = -(-n // (16 * cfg.tiles)) * cfg.cluster
    launch = _launch(grid, 32 * cfg.warps, ring, pdl, cfg.cluster)
    launch(fn, torch.cuda.current_stream(q.device).cuda_stream,
           (q.data_ptr(), scale.data_ptr(), qw.data_ptr(), w_scale.data_ptr(),
            (bias if bias is not None else w_scale).data_ptr(), out.data_ptr(), m, n, kw, q.stride(0) // 4,
            qw.stride(0) // 4, out.stride(0)))


PARAMS = (ctypes.c_void_p,) * 6 + (ctypes.c_int,) * 3 + (ctypes.c_longlong,) * 3  # w4a4_mma's parameters


def _launch(grid: int, block: int, ring: int, pdl: bool, cluster: int) -> launcher.Launch:
    """This thread's launch configuration and parameter slots for w4a4_mma (:mod:`.launcher`)."""
    return launcher.launch("w4a4_mma", PARAMS, grid, block, ring, pdl, cluster)
