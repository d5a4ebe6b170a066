"""Python interface of the seed's extension: ``sym_quant_fuse(x) -> (q, scale)``."""
from __future__ import annotations

from . import ext


def sym_quant_fuse(x, clip_ratio: float = 1.0):
    """The user's op, as reported: per-row INT4 quantization, launched on the legacy default stream."""
    return ext.load("buggy").sym_quant_fuse(x, clip_ratio)


def sym_quant_fuse_fixed(x, clip_ratio: float = 1.0):
    """The fixed twin: the same kernel launched on PyTorch's current stream, launch checked."""
    return ext.load("fixed").sym_quant_fuse(x, clip_ratio)
