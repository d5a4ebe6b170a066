"""Builds and loads the seed's CUDA extension (buggy or fixed) on first use, JIT and cached (see
``graphsafe._build`` for where)."""
from __future__ import annotations

import functools
from pathlib import Path
from types import ModuleType

from ..._build import ExtensionUnavailable, build_root, load_extension

__all__ = ["ExtensionUnavailable", "SOURCES", "build_root", "load"]

CSRC = Path(__file__).parent / "csrc"
SOURCES = {"buggy": CSRC / "seed_quant.cu", "fixed": CSRC / "seed_quant_fixed.cu"}

# PyTorch builds extensions with these defines, which switch off cuda_fp16's operators and implicit
# conversions. The seed's kernel uses both (`val > maxVal`, `fmaxf(half, half)`), as its author's
# build did, so they are undefined again here.
_UNDEFINE_HALF_GUARDS = [
    "-U__CUDA_NO_HALF_OPERATORS__",
    "-U__CUDA_NO_HALF_CONVERSIONS__",
    "-U__CUDA_NO_HALF2_OPERATORS__",
    "-U__CUDA_NO_BFLOAT16_CONVERSIONS__",
]


@functools.cache
def load(variant: str = "buggy") -> ModuleType:
    """Return the compiled extension module for ``variant`` ('buggy' or 'fixed')."""
    if variant not in SOURCES:
        raise ValueError(f"unknown seed variant {variant!r}; expected one of {sorted(SOURCES)}")
    return load_extension(f"graphsafe_seed_{variant}", [SOURCES[variant]], _UNDEFINE_HALF_GUARDS)
