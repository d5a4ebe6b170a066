"""The CUDA C++ backend (``backend="cuda"``): the seed's quantization kernel, fixed
(``csrc/sym_quant.cu`` says what changed). Built on first use, JIT and cached (see
:mod:`graphsafe._build`)."""
from __future__ import annotations

import functools
from pathlib import Path
from types import ModuleType

import torch

from .._build import load_extension
from .reference import rounded_clip

SOURCE = Path(__file__).parent / "csrc" / "sym_quant.cu"
DEFAULT_BLOCK = 256


@functools.cache
def load() -> ModuleType:
    return load_extension("graphsafe_quant_cuda", [SOURCE])


def sym_quant_into(x: torch.Tensor, clip_ratio: float, q: torch.Tensor, scale: torch.Tensor,
                   block: int = DEFAULT_BLOCK) -> None:
    load().sym_quant_into(x, q, scale, rounded_clip(clip_ratio, x.dtype), block)
