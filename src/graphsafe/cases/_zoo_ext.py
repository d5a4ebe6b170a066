"""The zoo's CUDA extension (``csrc/zoo_ops.cu``), built on first use like the seed's."""
from __future__ import annotations

import functools
from pathlib import Path
from types import ModuleType

from .._build import load_extension

SOURCE = Path(__file__).parent / "csrc" / "zoo_ops.cu"


@functools.cache
def load() -> ModuleType:
    return load_extension("graphsafe_zoo_ops", [SOURCE])
