"""Zoo 12 — operations that break capture, each with its fixed twin.

CUDA rejects some operations while a stream captures and invalidates the capture (errors 900-908).
Each buggy target here does one of them inside the captured function; graphsafe must name the CUDA
error in plain words and the line that ran it (GSD003). The fixed twins keep values on the device,
allocate through PyTorch, and copy from device or pinned memory.

=================  =====================================================  ================================
bad target         what it does during capture                            fixed twin
=================  =====================================================  ================================
``item``           ``.item()`` copies a value to the host and waits       keeps the peak on the device
``synchronize``    ``torch.cuda.synchronize()`` waits for the device      no host wait inside the step
``mask_index``     ``x[x > 0]`` needs the count of kept elements (sync)   ``torch.where(x > 0, x, 0)``
``cuda_malloc``    a C++ op calls ``cudaMalloc``/``cudaFree`` for scratch  scratch from ``torch::empty_like``
``pageable_copy``  ``torch.tensor([...], device="cuda")`` from pageable   a device buffer made once
``dlpack``         hands the tensor to a library that consumes it on the  export on the current stream
                   legacy default stream (DLPack ``stream=1``, as CuPy)
=================  =====================================================  ================================
"""
from __future__ import annotations

import torch

from ..doctor.target import Target
from ._common import randn


def make_inputs(seed: int):
    return (randn(seed, 64, 64),)


def item_bad(x):
    peak = x.abs().max().item()  # host sync: not allowed while capturing
    return x / peak


def item_good(x):
    return x / x.abs().amax()    # the peak stays a device tensor


def synchronize_bad(x):
    y = torch.tanh(x)
    torch.cuda.synchronize()     # waits for the device: a capturing stream cannot be waited on
    return y * 2


def synchronize_good(x):
    return torch.tanh(x) * 2


def mask_index_bad(x):
    kept = x[x > 0]              # boolean-mask indexing: the output size needs a host sync
    return kept.sum().reshape(1)


def mask_index_good(x):
    return torch.where(x > 0, x, 0).sum().reshape(1)


def cuda_malloc_bad(x):
    from ._zoo_ext import load

    return load().affine_raw_scratch(x.contiguous())


def cuda_malloc_good(x):
    from ._zoo_ext import load

    return load().affine_scratch(x.contiguous())


def pageable_copy_bad(x):
    bias = torch.tensor([0.5, -0.5], device=x.device)   # a copy from pageable host memory
    return x + bias.repeat(x.shape[-1] // 2)


_BIAS: dict[torch.device, torch.Tensor] = {}


def pageable_copy_good(x):
    if x.device not in _BIAS:                             # made at the first (warm-up) call
        _BIAS[x.device] = torch.tensor([0.5, -0.5], device=x.device).repeat(x.shape[-1] // 2)
    return x + _BIAS[x.device]


class _LegacyStreamLibrary:
    """Stands in for a library (CuPy, Numba) that consumes DLPack tensors on the legacy default stream."""

    @staticmethod
    def consume(t: torch.Tensor, stream: int):
        return torch.from_dlpack(t.__dlpack__(stream=stream))


def dlpack_bad(x):
    y = torch.tanh(x)
    z = _LegacyStreamLibrary.consume(y, stream=1)         # makes the legacy stream wait on captured work
    return z * 2


def dlpack_good(x):
    y = torch.tanh(x)
    z = _LegacyStreamLibrary.consume(y, stream=torch.cuda.current_stream().cuda_stream)
    return z * 2


item = Target(item_bad, make_inputs, name="capture_breaking.item")
synchronize = Target(synchronize_bad, make_inputs, name="capture_breaking.synchronize")
mask_index = Target(mask_index_bad, make_inputs, name="capture_breaking.mask_index")
cuda_malloc = Target(cuda_malloc_bad, make_inputs, name="capture_breaking.cuda_malloc")
pageable_copy = Target(pageable_copy_bad, make_inputs, name="capture_breaking.pageable_copy")
dlpack = Target(dlpack_bad, make_inputs, name="capture_breaking.dlpack")

item_fixed = Target(item_good, make_inputs, name="capture_breaking.item_fixed")
synchronize_fixed = Target(synchronize_good, make_inputs, name="capture_breaking.synchronize_fixed")
mask_index_fixed = Target(mask_index_good, make_inputs, name="capture_breaking.mask_index_fixed")
cuda_malloc_fixed = Target(cuda_malloc_good, make_inputs, name="capture_breaking.cuda_malloc_fixed")
pageable_copy_fixed = Target(pageable_copy_good, make_inputs, name="capture_breaking.pageable_copy_fixed")
dlpack_fixed = Target(dlpack_good, make_inputs, name="capture_breaking.dlpack_fixed")

VARIANTS = ("item", "synchronize", "mask_index", "cuda_malloc", "pageable_copy", "dlpack")
bad, good = item, item_fixed
