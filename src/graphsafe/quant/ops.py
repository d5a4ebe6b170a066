"""Public INT4 ops: :func:`sym_quant`, :func:`pack_int4_weights`, :func:`w4a4_linear`, :func:`quant_linear`.

Each is a ``torch.library`` custom op (``torch.ops.graphsafe.*``) with a fake implementation, so it
traces under ``torch.compile(fullgraph=True)``, and each launches on the current stream, so a
CUDA-graph capture records it. The Python functions validate their arguments first and raise
``TypeError``/``ValueError`` naming the bad one; the ops themselves assume valid input.

Backends: ``"auto"`` (the default) runs the Triton kernels on CUDA, except that a GEMM of 3-16 rows
where it is faster (:func:`mma_wanted`) runs the tensor-core GEMV, a CUDA kernel compiled at first use
by NVRTC (``mma_gemv``); on CPU it runs the reference. ``"triton"``: Triton kernels only. ``"cuda"``:
the fixed seed kernel (quantization only). ``"reference"``: plain PyTorch. The Triton kernels also run
on CPU tensors under ``TRITON_INTERPRET=1``, which is how the CPU tests exercise them.
"""
from __future__ import annotations

import os
import warnings
from typing import Optional

import torch

from . import reference
from .reference import FLOAT_DTYPES, rounded_clip

BACKENDS = ("auto", "triton", "cuda", "reference")
SMALL_MAX_M = 16  # rows up to which it runs as the swapped-operand GEMM for few rows (triton_swap.small_into)
MAX_K = (1 << 17) - 2  # the Triton kernels' int32 bound: 256 * 64 * K < 2**31 (both operands carry 16x)
OUT_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


# --- argument checks ------------------------------------------------------------------------------

def _tensor(name: str, t, *, rank: int, dtypes, device: torch.device | None = None) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in dtypes:
        names = " or ".join(str(d).replace("torch.", "") for d in dtypes)
        raise TypeError(f"{name} must be {names}, got {str(t.dtype).replace('torch.', '')}")
    if t.dim() != rank:
        raise ValueError(f"{name} must be {rank}-D, got shape {tuple(t.shape)}")
    if device is not None and t.device != device:
        raise ValueError(f"{name} is on {t.device} but the other arguments are on {device}")
    if not t.is_contiguous():
        raise ValueError(f"{name} must be contiguous (call .contiguous() first); got strides {t.stride()}")


def _shape(name: str, t: torch.Tensor, expected: tuple[int, ...]) -> None:
    if tuple(t.shape) != expected:
        raise ValueError(f"{name} must have shape {expected}, got {tuple(t.shape)}")


def _clip(clip_ratio, dtype: torch.dtype) -> None:
    """A clip ratio shrinks the row's range: in (0, 1], and not 0 once rounded to ``dtype`` (the value every
    backend multiplies by). Above 1 a finite row's scale could overflow ``dtype`` and its outputs be NaN."""
    if isinstance(clip_ratio, bool) or not isinstance(clip_ratio, (int, float)):
        raise TypeError(f"clip_ratio must be a number, got {type(clip_ratio).__name__}")
    if not 0 < clip_ratio <= 1:
        raise ValueError(f"clip_ratio must be in (0, 1] (the share of each row's range kept), got {clip_ratio}")
    # a ratio of 2^-14 or more is a normal number in float16 and bfloat16 alike: only a smaller one can round
    # to 0, and only then is it rounded here (a tensor round trip the per-call path need not pay)
    if clip_ratio < 2.0 ** -14 and rounded_clip(clip_ratio, dtype) == 0:
        raise ValueError(f"clip_ratio {clip_ratio} rounds to 0 in {dtype}, which would zero every scale")


def _backend(name: str, backend: str, allowed=BACKENDS) -> None:
    if backend not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {backend!r}")


def _resolve(backend: str, device: torch.device) -> str:
    """The backend that runs on ``device``; raises when the requested one cannot."""
    interpret = os.environ.get("TRITON_INTERPRET") == "1"
    if backend == "auto":
        return "triton" if device.type == "cuda" else "reference"
    if backend == "triton" and device.type != "cuda" and not interpret:
        raise ValueError(f"backend='triton' needs CUDA tensors (or TRITON_INTERPRET=1); got {device}")
    if backend == "cuda" and device.type != "cuda":
        raise ValueError(f"backend='cuda' needs CUDA tensors; got {device}")
    return backend


# --- sym_quant ------------------------------------------------------------------------------------

def _quant_into(x: torch.Tensor, clip_ratio: float, backend: str, q: torch.Tensor, scale: torch.Tensor) -> None:
    which = _resolve(backend, x.device)
    if which == "triton":
        from . import triton_kernels
        triton_kernels.sym_quant_into(x, clip_ratio, q, scale)
    elif which == "cuda":
        from . import cuda_backend
        cuda_backend.sym_quant_into(x, clip_ratio, q, scale)
    else:
        q_ref, s_ref = reference.sym_quant_reference(x, clip_ratio)
        q.copy_(q_ref)
        scale.copy_(s_ref)


@torch.library.custom_op("graphsafe::sym_quant", mutates_args=())
def _sym_quant_op(x: torch.Tensor, clip_ratio: float, backend: str) -> tuple[torch.Tensor, torch.Tensor]:
    q = x.new_empty((x.shape[0], (x.shape[1] + 1) // 2), dtype=torch.uint8)
    scale = x.new_empty((x.shape[0], 1))
    _quant_into(x, clip_ratio, backend, q, scale)
    return q, scale


@_sym_quant_op.register_fake
def _(x, clip_ratio, backend):
    return (x.new_empty((x.shape[0], (x.shape[1] + 1) // 2), dtype=torch.uint8), x.new_empty((x.shape[0], 1)))


@torch.library.custom_op("graphsafe::sym_quant_out", mutates_args=("q", "scale"))
def _sym_quant_out_op(x: torch.Tensor, clip_ratio: float, backend: str, q: torch.Tensor,
                      scale: torch.Tensor) -> None:
    _quant_into(x, clip_ratio, backend, q, scale)


@_sym_quant_out_op.register_fake
def _(x, clip_ratio, backend, q, scale):
    return None


def sym_quant(x: torch.Tensor, clip_ratio: float = 1.0, *, out: torch.Tensor | None = None,
              scale_out: torch.Tensor | None = None, backend: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row symmetric INT4 quantization with the seed's semantics (:mod:`graphsafe.quant.reference`).

    ``x``: contiguous (M, N) float16 or bfloat16. Returns ``(q, scale)``: ``q`` uint8 (M, ceil(N/2)),
    two codes per byte, low nibble = even column; ``scale`` (M, 1) of x's dtype. ``out`` and
    ``scale_out`` are optional preallocated outputs (for CUDA graphs and static buffers).
    """
    _tensor("x", x, rank=2, dtypes=FLOAT_DTYPES)
    _clip(clip_ratio, x.dtype)
    _backend("backend", backend)
    m, n = x.shape
    if out is None and scale_out is None:
        return _sym_quant_op(x, float(clip_ratio), backend)
    if out is None:
        out = x.new_empty((m, (n + 1) // 2), dtype=torch.uint8)
    if scale_out is None:
        scale_out = x.new_empty((m, 1))
    _tensor("out", out, rank=2, dtypes=(torch.uint8,), device=x.device)
    _shape("out", out, (m, (n + 1) // 2))
    _tensor("scale_out", scale_out, rank=2, dtypes=(x.dtype,), device=x.device)
    _shape("scale_out", scale_out, (m, 1))
    _sym_quant_out_op(x, float(clip_ratio), backend, out, scale_out)
    return out, scale_out


def pack_int4_weights(w: torch.Tensor, *, backend: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """Per-output-channel INT4 weights: ``w`` (out, in) -> ``(qw, w_scale)`` with ``qw`` uint8
    (out, ceil(in/2)) and ``w_scale`` (out, 1). Rows are quantized like activations (clip 1);
    float32 weights are quantized as float16, and a finite one beyond float16's range raises ``ValueError``
    (outside a CUDA-graph capture or ``torch.compile``, where the check's host read cannot run: there it
    becomes +Inf, a NaN output column, as for non-finite weights)."""
    _tensor("w", w, rank=2, dtypes=(*FLOAT_DTYPES, torch.float32))
    if w.dtype == torch.float32:
        w = _to_half("w", w)
    return sym_quant(w, 1.0, backend=backend)


def _to_half(name: str, w: torch.Tensor) -> torch.Tensor:
    """``w`` in float16, refusing finite values the cast would make infinite (where it may read them)."""
    half = w.to(torch.float16)
    capturing = w.is_cuda and torch.cuda.is_current_stream_capturing()
    if not capturing and not torch.compiler.is_compiling() and w.numel():
        overflow = torch.isinf(half) & torch.isfinite(w)
        if bool(overflow.any()):
            big = float(w[overflow].abs().max())
            raise ValueError(f"{name} holds finite values up to {big:g}, beyond float16's range (65504): float32 "
                             "weights are quantized as float16; pass them as bfloat16, or rescale the layer")
    return half


# --- w4a4_linear ----------------------------------------------------------------------------------

def _dp4a(q: torch.Tensor, qw: torch.Tensor) -> bool:
    """Whether the dp4a GEMV takes this GEMM: up to 3 rows, or 4 unless the layer is wide (H100 sweeps,
    ``triton_gemv.dp4a_config``); K > 0 a multiple of 8; both operands aligned for int32 words."""
    from .triton_gemv import wide
    m, kb = q.shape
    return ((m <= 3 or (m == 4 and not wide(qw.shape[0], kb))) and kb % 4 == 0 and kb > 0
            and q.data_ptr() % 4 == 0 and qw.data_ptr() % 4 == 0)


def mma_wanted(m: int, n: int, kb: int) -> bool:
    """Whether the tensor-core GEMV (``mma_gemv``) beats the Triton GEMMs for ``m`` rows, ``n`` outputs
    and ``kb`` bytes of K (H100 sweeps, ``benchmarks/quant.py --sweep-few``): from 3 rows on long rows
    (K > 4096), at 5-8 rows, and at 4 in wide layers (N > 2K); the dp4a GEMV stays ahead up to 2 rows
    (and to 4 on short rows that are not wide), the swapped Triton GEMM at 9-16 short rows."""
    from .triton_gemv import wide
    if not 3 <= m <= SMALL_MAX_M:
        return False
    return kb > 2048 or 5 <= m <= 8 or (m == 4 and wide(n, kb))


def planes_wanted(m: int, n: int, kb: int) -> bool:
    """Whether ``quant_linear`` runs the tensor-core GEMV on MMA planes (``mma_planes``) for ``m`` rows,
    ``n`` outputs and ``kb`` bytes of K, where it beat the GEMMs on packed codes chained after the
    quantizer (H100, ``benchmarks/few_chain.py``): on rows of up to 4096, 1-8 rows (at 3-8 by 0.3-0.6 µs
    in 3584->4608; at 1-2 it is 0.15-0.5 µs behind in calls in a row but 0.5-0.8 ahead after a torch
    kernel, as a layer after a norm runs), and 2-8 in wide layers (at 1 there the dp4a GEMV is 0.7 µs
    ahead in a row, 0.3 behind after a torch kernel); 9-16 on longer rows (0.5 µs in 18944->3584 at 16)."""
    if not 1 <= m <= SMALL_MAX_M:
        return False
    from .triton_gemv import wide
    if kb > 2048:
        return 9 <= m
    return m <= 8 and (m >= 2 or not wide(n, kb))


_MMA_WARNED: set = set()


def _tensor_core_gemv(device: torch.device) -> bool:
    """Whether the NVRTC-compiled GEMVs can run on ``device``; where they cannot (no cuda-bindings or
    NVRTC) the Triton GEMMs run instead, and the reason is warned about once per device."""
    from . import mma_gemv
    try:
        mma_gemv.check(device)
    except mma_gemv.MmaUnavailable as exc:
        if exc.warn and device not in _MMA_WARNED:
            _MMA_WARNED.add(device)
            warnings.warn(f"{exc}; the few-row GEMM runs on the slower Triton kernels", RuntimeWarning, stacklevel=5)
        return False
    return True


def _mma(q: torch.Tensor, qw: torch.Tensor, backend: str) -> bool:
    """``backend="auto"`` only: the tensor-core GEMV takes this GEMM (where it can run)."""
    from . import mma_gemv
    if backend != "auto" or not mma_wanted(q.shape[0], qw.shape[0], q.shape[1]) or not mma_gemv.supports(q, qw):
        return False
    return _tensor_core_gemv(q.device)


def _planes(m: int, qw: torch.Tensor, backend: str) -> bool:
    """``backend="auto"`` only: quant_linear's GEMM is the tensor-core GEMV on MMA planes."""
    from . import mma_planes
    if backend != "auto" or not planes_wanted(m, qw.shape[0], qw.shape[1]) or not mma_planes.supports(qw, m):
        return False
    return _tensor_core_gemv(qw.device)


def _few_rows_into(q, scale, qw, w_scale, bias, backend: str, out: torch.Tensor, after_quantizer: bool = False) -> None:
    """The GEMM for up to SMALL_MAX_M rows on CUDA: the tensor-core GEMV where ``_mma`` wants it, else the
    dp4a GEMV where it takes the rows, else the swapped Triton GEMM (``after_quantizer``: see each)."""
    if _mma(q, qw, backend):
        from . import mma_gemv
        mma_gemv.mma_into(q, scale, qw, w_scale, bias, out, after_quantizer=after_quantizer)
    elif _dp4a(q, qw):
        from . import triton_gemv
        triton_gemv.dp4a_into(q, scale, qw, w_scale, bias, out, after_quantizer=after_quantizer)
    else:
        from . import triton_swap
        triton_swap.small_into(q, scale, qw, w_scale, bias, out, after_quantizer=after_quantizer)


def _linear_into(q, scale, qw, w_scale, bias, backend: str, out: torch.Tensor) -> None:
    which = _resolve(backend, q.device)
    if which == "triton" and q.shape[0] <= SMALL_MAX_M:
        _few_rows_into(q, scale, qw, w_scale, bias, backend, out)
    elif which == "triton":
        from . import triton_kernels
        triton_kernels.w4a4_into(q, scale, qw, w_scale, bias, out)
    else:
        out.copy_(reference.w4a4_linear_reference(q, scale, qw, w_scale, bias, out.dtype))


@torch.library.custom_op("graphsafe::w4a4_linear", mutates_args=())
def _w4a4_op(q: torch.Tensor, scale: torch.Tensor, qw: torch.Tensor, w_scale: torch.Tensor,
             bias: Optional[torch.Tensor], out_dtype: torch.dtype, backend: str) -> torch.Tensor:
    out = q.new_empty((q.shape[0], qw.shape[0]), dtype=out_dtype)
    _linear_into(q, scale, qw, w_scale, bias, backend, out)
    return out


@_w4a4_op.register_fake
def _(q, scale, qw, w_scale, bias, out_dtype, backend):
    return q.new_empty((q.shape[0], qw.shape[0]), dtype=out_dtype)


@torch.library.custom_op("graphsafe::w4a4_linear_out", mutates_args=("out",))
def _w4a4_out_op(q: torch.Tensor, scale: torch.Tensor, qw: torch.Tensor, w_scale: torch.Tensor,
                 bias: Optional[torch.Tensor], backend: str, out: torch.Tensor) -> None:
    _linear_into(q, scale, qw, w_scale, bias, backend, out)


@_w4a4_out_op.register_fake
def _(q, scale, qw, w_scale, bias, backend, out):
    return None


def _packed_k(nbytes: int) -> str:
    """What a packed row of ``nbytes`` bytes says of K: two values a byte, the last maybe padding."""
    return f"{nbytes} bytes a row (K = {2 * nbytes - 1} or {2 * nbytes})" if nbytes else "0 bytes a row (K = 0)"


def _check_weights(qw, w_scale, bias, kb: int, dev: torch.device, what: str, k: Optional[int] = None) -> None:
    """``kb``: the packed bytes a row of the activations give; ``k``: their K where known (unpacked ``x``)."""
    _tensor("qw", qw, rank=2, dtypes=(torch.uint8,), device=dev)
    _tensor("w_scale", w_scale, rank=2, dtypes=OUT_DTYPES, device=dev)
    if qw.shape[1] != kb:
        have = f"K = {k} ({kb} bytes a row packed)" if k is not None else _packed_k(kb)
        raise ValueError(f"{what} and qw disagree on K: {what} has {have}, qw has {_packed_k(qw.shape[1])}")
    n = qw.shape[0]
    _shape("w_scale", w_scale, (n, 1))
    if bias is not None:
        _tensor("bias", bias, rank=1, dtypes=OUT_DTYPES, device=dev)
        _shape("bias", bias, (n,))


def _k_bound(k: int, backend: str, dev: torch.device) -> None:
    if k > MAX_K and _resolve(backend, dev) == "triton":
        raise ValueError(f"K = {k} exceeds {MAX_K}, the most the Triton kernels accumulate exactly in int32 "
                         "(their operands carry a factor 16 each); use backend='reference'")


def _out_dtype(out_dtype, out, default: torch.dtype) -> torch.dtype:
    if out_dtype is None and out is not None:
        if out.dtype not in OUT_DTYPES:
            raise TypeError(f"out must be float16, bfloat16 or float32, got {out.dtype}")
        return out.dtype
    if out_dtype is None:
        return default
    if not isinstance(out_dtype, torch.dtype):
        raise TypeError(f"out_dtype must be a torch.dtype (torch.float16, torch.bfloat16 or torch.float32), "
                        f"got {type(out_dtype).__name__} {out_dtype!r}")
    if out_dtype not in OUT_DTYPES:
        raise TypeError(f"out_dtype must be float16, bfloat16 or float32, got {out_dtype}")
    return out_dtype


def w4a4_linear(q: torch.Tensor, scale: torch.Tensor, qw: torch.Tensor, w_scale: torch.Tensor,
                bias: torch.Tensor | None = None, out_dtype: torch.dtype | None = None, *,
                out: torch.Tensor | None = None, backend: str = "auto") -> torch.Tensor:
    """INT4 x INT4 linear: ``y[m, n] = sum_k qx[m, k] qw[n, k]`` (exact int32) ``* scale[m] * w_scale[n]
    (+ bias[n])``, as ``out_dtype`` (default: scale's dtype). ``q`` (M, K/2) and ``scale`` (M, 1) come
    from :func:`sym_quant`, ``qw`` (N, K/2) and ``w_scale`` (N, 1) from :func:`pack_int4_weights`."""
    _tensor("q", q, rank=2, dtypes=(torch.uint8,))
    dev = q.device
    _tensor("scale", scale, rank=2, dtypes=OUT_DTYPES, device=dev)
    m, kb = q.shape
    _check_weights(qw, w_scale, bias, kb, dev, "q")
    _shape("scale", scale, (m, 1))
    _backend("backend", backend, ("auto", "triton", "reference"))
    _k_bound(2 * kb, backend, dev)
    out_dtype = _out_dtype(out_dtype, out, scale.dtype)
    if out is None:
        return _w4a4_op(q, scale, qw, w_scale, bias, out_dtype, backend)
    _tensor("out", out, rank=2, dtypes=(out_dtype,), device=dev)
    _shape("out", out, (m, qw.shape[0]))
    _w4a4_out_op(q, scale, qw, w_scale, bias, backend, out)
    return out


# --- quant_linear: quantize and multiply ----------------------------------------------------------

def _quant_linear_into(x, clip_ratio: float, qw, w_scale, bias, backend: str, out: torch.Tensor) -> None:
    which = _resolve(backend, x.device)
    m, kb = x.shape[0], (x.shape[1] + 1) // 2
    scale = x.new_empty((m, 1))
    if which != "triton":
        q = x.new_empty((m, kb), dtype=torch.uint8)
        _quant_into(x, clip_ratio, which, q, scale)
        _linear_into(q, scale, qw, w_scale, bias, which, out)
        return
    from . import triton_gemv, triton_kernels, triton_persist
    if m > SMALL_MAX_M:  # the quantizer writes INT8 operands, which the GEMM reads without unpacking
        x16 = x.new_empty((2, m, kb), dtype=torch.int8)
        # the CUDA GEMM is the one many-row GEMM that launches early (PDL), once the quantizer has its input
        which = triton_persist.route(x16, qw)
        pdl = which == "wgmma" and triton_gemv.pdl_available(x.device)
        triton_kernels.sym_quant_into(x, clip_ratio, x16, scale, trigger=pdl)
        triton_persist.many_rows_into(x16, scale, qw, w_scale, bias, out, after_quantizer=pdl, which=which)
        return
    # few rows: the GEMM follows its own quantizer, so it may launch early (programmatic dependent launch)
    pdl = triton_gemv.pdl_available(x.device)
    if _planes(m, qw, backend):  # the quantizer writes the activations unpacked, as the MMA takes them
        from . import mma_planes
        cfg = mma_planes.planes_config(m, qw.shape[0], qw.shape[1] // 4)
        planes = x.new_empty((m, triton_kernels.mma_planes_width(x.shape[1])), dtype=torch.int8)
        xsum = x.new_empty((m,), dtype=torch.int32) if cfg.xsum else None  # else planes without sums
        mma_planes.chain_into(x, clip_ratio, planes, xsum, scale, qw, w_scale, bias, out, cfg, pdl)
        return
    q = x.new_empty((m, kb), dtype=torch.uint8)
    triton_kernels.sym_quant_into(x, clip_ratio, q, scale, trigger=pdl, wait=pdl)
    _few_rows_into(q, scale, qw, w_scale, bias, backend, out, after_quantizer=pdl)


@torch.library.custom_op("graphsafe::quant_linear", mutates_args=())
def _quant_linear_op(x: torch.Tensor, clip_ratio: float, qw: torch.Tensor, w_scale: torch.Tensor,
                     bias: Optional[torch.Tensor], out_dtype: torch.dtype, backend: str) -> torch.Tensor:
    out = x.new_empty((x.shape[0], qw.shape[0]), dtype=out_dtype)
    _quant_linear_into(x, clip_ratio, qw, w_scale, bias, backend, out)
    return out


@_quant_linear_op.register_fake
def _(x, clip_ratio, qw, w_scale, bias, out_dtype, backend):
    return x.new_empty((x.shape[0], qw.shape[0]), dtype=out_dtype)


@torch.library.custom_op("graphsafe::quant_linear_out", mutates_args=("out",))
def _quant_linear_out_op(x: torch.Tensor, clip_ratio: float, qw: torch.Tensor, w_scale: torch.Tensor,
                         bias: Optional[torch.Tensor], backend: str, out: torch.Tensor) -> None:
    _quant_linear_into(x, clip_ratio, qw, w_scale, bias, backend, out)


@_quant_linear_out_op.register_fake
def _(x, clip_ratio, qw, w_scale, bias, backend, out):
    return None


def quant_linear(x: torch.Tensor, qw: torch.Tensor, w_scale: torch.Tensor, bias: torch.Tensor | None = None,
                 out_dtype: torch.dtype | None = None, *, clip_ratio: float = 1.0,
                 out: torch.Tensor | None = None, backend: str = "auto") -> torch.Tensor:
    """Quantize ``x`` (M, K) per row and apply the INT4 weights: exactly
    ``w4a4_linear(*sym_quant(x, clip_ratio), qw, w_scale, bias, out_dtype)`` (default ``out_dtype``:
    x's dtype). What :class:`W4A4Linear` runs."""
    _tensor("x", x, rank=2, dtypes=FLOAT_DTYPES)
    dev = x.device
    _check_weights(qw, w_scale, bias, (x.shape[1] + 1) // 2, dev, "x", k=x.shape[1])
    _clip(clip_ratio, x.dtype)
    _backend("backend", backend, ("auto", "triton", "reference"))
    _k_bound(x.shape[1], backend, dev)
    out_dtype = _out_dtype(out_dtype, out, x.dtype)
    if out is None:
        return _quant_linear_op(x, float(clip_ratio), qw, w_scale, bias, out_dtype, backend)
    _tensor("out", out, rank=2, dtypes=(out_dtype,), device=dev)
    _shape("out", out, (x.shape[0], qw.shape[0]))
    _quant_linear_out_op(x, float(clip_ratio), qw, w_scale, bias, backend, out)
    return out
