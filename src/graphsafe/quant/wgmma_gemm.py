"""The many-row W4A4 GEMM in CUDA C++ for Hopper: ``csrc/w4a4_wgmma.cu``, compiled at first use by NVRTC
for sm_90a and launched with the driver API on the current stream (as :mod:`graphsafe.quant.mma_gemv`).

``quant_linear`` runs it from one full round of tiles on sm_90 (``triton_persist.route``), with two
consumer warpgroups on 256 x 128 tiles (one CTA per SM), the weights read with ``ldmatrix``, four
stages, and PDL after the quantizer (:data:`MANY_ROWS`). On an H100 it took 52 µs at 3584->4608
M = 2048 against 53 for the Gluon GEMM, and 181 against 207 at 18944->3584 (benchmarks/README.md).
It does what the Gluon GEMM (:mod:`graphsafe.quant.gluon_ws`) cannot express in Triton 3.6: the wgmmas of
each 32-byte K chunk wait only for the chunk before them (two register sets of unpacked weights, each
fenced after the wait that ends its wgmmas), so unpacking overlaps the tensor cores within one
warpgroup, and no barrier runs per step (each consumer warp releases a stage with its own mbarrier
arrival). Same round plan (the last partial round cut into halves or quarters, ``triton_persist.plan``),
sums and epilogue arithmetic as the Gluon GEMM, so the two are bit-equal.
"""
from __future__ import annotations

import ctypes
import functools
import warnings
from pathlib import Path

import torch

from . import launcher, mma_gemv

SOURCE = Path(__file__).parent / "csrc" / "w4a4_wgmma.cu"
BN = BM = 128  # weight rows and activation rows per tile
BKB = 64  # packed bytes of K per step
_TYPES = {torch.float16: 0, torch.bfloat16: 1, torch.float32: 2}
# what quant_linear runs (H100, benchmarks/README.md): fits one CTA per SM with any output dtype
MANY_ROWS = {"consumers": 2, "stages": 4, "ldsm": True}
_WARNED: set[torch.device] = set()


def available(device: torch.device) -> bool:
    """Whether the GEMM runs on ``device``: sm_90, with cuda-bindings and an NVRTC that compiles for it
    (``mma_gemv.check``). Where a missing or mismatched package is the reason, a RuntimeWarning says so
    once per device (the many-row GEMM then runs on the Triton kernels)."""
    try:
        arch = mma_gemv.check(device)
    except mma_gemv.MmaUnavailable as exc:
        if exc.warn and device not in _WARNED:
            _WARNED.add(device)
            warnings.warn(f"{exc}; the many-row GEMM runs on the slower Triton kernels", RuntimeWarning,
                          stacklevel=4)
        return False
    return arch == 90


def shared_bytes(stages: int, out_size: int = 2, consumers: int = 1) -> int:
    """Dynamic shared memory per CTA: the stages (8 KB of weights per consumer warpgroup and both planes'
    8 KB tiles), 256 bytes for their full and empty mbarriers, each consumer's epilogue staging buffer (128
    activation rows of 64 values of ``out_size`` bytes, padded by 16 bytes), and 1 KB to align the stages
    for the 64-byte swizzle."""
    epilogue = consumers * BM * (64 * out_size + 16)
    return stages * (consumers + 2) * 128 * BKB + 256 + epilogue + 1024


def macros(stages: int, group_n: int, types: tuple[torch.dtype, torch.dtype, torch.dtype | None, torch.dtype],
           pdl: bool = False, consumers: int = 1, ldsm: bool = False, ablate: int = 0
           ) -> tuple[tuple[str, int], ...]:
    """The ``-D`` macros of one program: ring depth, tile grouping, the dtypes of (scale, w_scale,
    bias or None, out), whether it is launched with PDL after the quantizer, its consumer warpgroups,
    whether it reads the weights with ldmatrix, and the ablation (timing only; 0 for none)."""
    sa, sb, bias, out = types
    return (("STAGES", stages), ("GROUP_N", group_n), ("SA_T", _TYPES[sa]), ("SB_T", _TYPES[sb]),
            ("BIAS_T", _TYPES[bias] if bias is not None else 0), ("OUT_T", _TYPES[out]),
            ("HAS_BIAS", int(bias is not None)), ("PDL", int(pdl)), ("CONSUMERS", consumers),
            ("LDSM", int(ldsm)), ("ABLATE", ablate))


def descriptor(t: torch.Tensor, box_rows: int) -> bytes:
    """The TMA descriptor (CUtensorMap, 128 bytes) of the 2-D byte matrix ``t`` (rows of K bytes, unit
    stride along K): boxes of ``box_rows`` x 64 bytes with the 64-byte swizzle, zero-filled past the
    edges. It depends only on the address, shape, row stride and box, so it is encoded once per such key
    (:func:`_encode`, an LRU cache) and then copied: a layer's weights, and activation buffers that the
    caching allocator hands out again, skip the driver call."""
    rows, cols = t.shape
    return _encode(t.data_ptr(), rows, cols, t.stride(0), box_rows)


@functools.lru_cache(maxsize=512)
def _encode(address: int, rows: int, cols: int, stride: int, box_rows: int) -> bytes:
    """Encoded by the driver's ``cuTensorMapEncodeTiled`` through ctypes into a 64-byte aligned buffer
    (the driver requires that alignment; cuda-bindings' ``CUtensorMap`` objects are only 16-byte
    aligned)."""
    from cuda.bindings import driver
    buf = ctypes.create_string_buffer(128 + 64)
    aligned = (ctypes.addressof(buf) + 63) // 64 * 64
    u64, u32 = ctypes.c_uint64, ctypes.c_uint32
    result = _libcuda().cuTensorMapEncodeTiled(
        ctypes.c_void_p(aligned), int(driver.CUtensorMapDataType.CU_TENSOR_MAP_DATA_TYPE_UINT8), 2,
        ctypes.c_void_p(address), (u64 * 2)(cols, rows), (u64 * 1)(stride), (u32 * 2)(BKB, box_rows),
        (u32 * 2)(1, 1), int(driver.CUtensorMapInterleave.CU_TENSOR_MAP_INTERLEAVE_NONE),
        int(driver.CUtensorMapSwizzle.CU_TENSOR_MAP_SWIZZLE_64B),
        int(driver.CUtensorMapL2promotion.CU_TENSOR_MAP_L2_PROMOTION_L2_128B),
        int(driver.CUtensorMapFloatOOBfill.CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE))
    launcher.cu_ok(driver.CUresult(result), "cuTensorMapEncodeTiled")
    return ctypes.string_at(aligned, 128)


PARAMS = (ctypes.c_void_p,) * 4 + (ctypes.c_int,) * 3 + (ctypes.c_longlong,) + (ctypes.c_int,) * 4  # after 6 maps


def _launch(grid: int, block: int, smem: int, pdl: bool) -> launcher.Launch:
    """This thread's launch configuration and parameter slots for w4a4_wgmma (:mod:`.launcher`): six
    descriptors (weights, even and odd planes, whole tiles then the last round's pieces), then the
    values."""
    return launcher.launch("w4a4_wgmma", PARAMS, grid, block, smem, pdl, maps=6)


_LIBCUDA = None


def _libcuda():
    """The CUDA driver library, loaded once, with cuTensorMapEncodeTiled's C signature."""
    global _LIBCUDA
    if _LIBCUDA is None:
        lib = ctypes.CDLL("libcuda.so.1")
        p = ctypes.c_void_p
        lib.cuTensorMapEncodeTiled.argtypes = [p, ctypes.c_int, ctypes.c_uint32, p, p, p, p, p, ctypes.c_int,
                                               ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.cuTensorMapEncodeTiled.restype = ctypes.c_int
        _LIBCUDA = lib
    return _LIBCUDA


def wgmma_into(x16: torch.Tensor, scale: torch.Tensor, qw: torch.Tensor, w_scale: torch.Tensor,
               bias: torch.Tensor | None, out: torch.Tensor, stages: int = 3, group_n: int = 8,
               per_sm: int | None = None, split_n: int = 2, split_m: int = 2, sms: int | None = None,
               consumers: int = 1, after_quantizer: bool = False, ldsm: bool = False, _ablate: int = 0) -> None:
    """``out`` (M, N) from INT8 activation planes ``x16`` (2, M, K/2), like ``gluon_ws.ws_into`` (needs
    ``triton_persist.usable``; Hopper only). ``consumers``: MMA warpgroups per CTA, 1 (128 x 128 tiles,
    two CTAs per SM by default) or 2 (256 x 128 tiles sharing each stage's activations, one CTA per SM);
    ``per_sm``: CTAs per SM (at most 2 with one consumer, 1 with two: their registers; refused where
    their shared memory does not fit); ``split_n``, ``split_m``
    (1 or 2): how far the last partial round's tiles may be cut along the weight rows and the activation
    rows. ``after_quantizer``: launched with PDL, so it may start before the previous kernel ends and
    reads the weights (never written by that kernel) before waiting for it; the previous kernel must be
    the quantizer of ``x16`` and ``scale``, and it must trigger its dependents only after its own wait
    for its input (``sym_quant_into(trigger=True)`` does). ``ldsm``: read the weights with ``ldmatrix``
    (a 64-row half's fragments of a 32-byte chunk in one instruction instead of four loads).
    ``_ablate`` (timing only, wrong outputs): 1 issues no wgmma, 2 loads nothing."""
    from .triton_persist import operands, plan

    m, n, kb = operands(x16, qw, "the CUDA wgmma GEMM")
    if m == 0 or n == 0:
        return
    if out.shape != (m, n) or out.stride(1) != 1 or not (scale.is_contiguous() and w_scale.is_contiguous()
                                                         and (bias is None or bias.is_contiguous())):
        raise ValueError(f"the CUDA wgmma GEMM writes rows of a unit-stride out ({m}, {n}) and reads contiguous "
                         f"scales and bias; got out {tuple(out.shape)} strides {out.stride()}")
    if stages < 2:
        raise ValueError(f"the CUDA wgmma GEMM needs at least 2 stages (a step's stage is released only once "
                         f"the next step's first wgmmas are issued); got {stages}")
    if consumers not in (1, 2):
        raise ValueError(f"the CUDA wgmma GEMM has one or two consumer warpgroups; got {consumers}")
    if per_sm is not None and not 1 <= per_sm <= 3 - consumers:
        raise ValueError(f"the CUDA wgmma GEMM fits at most {3 - consumers} CTA(s) of {consumers} consumer "
                         f"warpgroup(s) per SM (registers); got per_sm={per_sm}")
    if split_n not in (1, 2) or split_m not in (1, 2):
        raise ValueError(f"the CUDA wgmma GEMM cuts tiles at most in halves each way; got split_n={split_n} "
                         f"split_m={split_m}")
    arch = mma_gemv.check(x16.device)
    if arch != 90:
        raise ValueError(f"the CUDA wgmma GEMM runs on sm_90 (Hopper) only, got sm_{arch}")
    index = mma_gemv.device_index(x16.device)
    props = torch.cuda.get_device_properties(x16.device)
    if sms is None:
        sms = props.multi_processor_count
    smem = shared_bytes(stages, out.element_size(), consumers)
    per_sm = per_sm or 3 - consumers
    limit = props.shared_memory_per_multiprocessor
    block_limit = getattr(props, "shared_memory_per_block_optin", limit)  # CUDA builds of torch have it
    if per_sm * (smem + 1024) > limit or smem > block_limit:  # the driver reserves 1 KB per CTA
        raise ValueError(f"{per_sm} CTAs of {smem} bytes of shared memory ({stages} stages, {out.dtype} out, "
                         f"{consumers} consumer(s)) do not fit an SM's {limit} bytes")
    bn = BN * consumers
    types = (scale.dtype, w_scale.dtype, bias.dtype if bias is not None else None, out.dtype)
    defs = macros(stages, group_n, types, after_quantizer, consumers, ldsm, _ablate)
    fn = mma_gemv._function(index, "90a", defs, smem, SOURCE, b"w4a4_wgmma")
    vec = out.data_ptr() % 16 == 0 and out.stride(0) * out.element_size() % 16 == 0
    programs, tail, pn, pm = plan(-(-n // bn) * -(-m // BM), per_sm * sms, split_n, split_m)
    maps = (descriptor(qw, bn), descriptor(x16[0], BM), descriptor(x16[1], BM),
            descriptor(qw, bn // pn), descriptor(x16[0], BM // pm), descriptor(x16[1], BM // pm))
    values = (scale.data_ptr(), w_scale.data_ptr(), (bias if bias is not None else w_scale).data_ptr(),
              out.data_ptr(), m, n, kb, out.stride(0), tail, pn, pm, int(vec))
    _launch(programs, 128 * (1 + consumers), smem, after_quantizer)(
        fn, torch.cuda.current_stream(x16.device).cuda_stream, values, maps)
