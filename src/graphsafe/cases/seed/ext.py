"""Builds and loads the seed's CUDA extension (buggy or fixed) on first use, JIT and cached.

The build directory is ``$GRAPHSAFE_BUILD_DIR/<name>`` when that variable is set, otherwise
``$XDG_CACHE_HOME/graphsafe/torch_extensions/<name>`` (``~/.cache`` by default). torch's
``cpp_extension`` rebuilds only when the sources or flags change.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path
from types import ModuleType

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


def build_root() -> Path:
    env = os.environ.get("GRAPHSAFE_BUILD_DIR")
    if env:
        return Path(env).expanduser().resolve()
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "graphsafe" / "torch_extensions"


class ExtensionUnavailable(RuntimeError):
    """The seed extension cannot be built or loaded on this machine (no CUDA, no compiler)."""


@functools.cache
def load(variant: str = "buggy") -> ModuleType:
    """Return the compiled extension module for ``variant`` ('buggy' or 'fixed')."""
    if variant not in SOURCES:
        raise ValueError(f"unknown seed variant {variant!r}; expected one of {sorted(SOURCES)}")
    import torch
    from torch.utils import cpp_extension

    if not torch.cuda.is_available():
        raise ExtensionUnavailable("the seed extension needs a CUDA GPU; torch.cuda.is_available() is False")
    if cpp_extension.CUDA_HOME is None:
        raise ExtensionUnavailable("the seed extension needs the CUDA toolkit (nvcc); CUDA_HOME was not found")
    name = f"graphsafe_seed_{variant}"
    build_dir = build_root() / name
    build_dir.mkdir(parents=True, exist_ok=True)
    return cpp_extension.load(
        name=name,
        sources=[str(SOURCES[variant])],
        extra_cuda_cflags=["-O3", *_UNDEFINE_HALF_GUARDS],
        build_directory=str(build_dir),
        verbose=bool(os.environ.get("GRAPHSAFE_VERBOSE_BUILD")),
    )
