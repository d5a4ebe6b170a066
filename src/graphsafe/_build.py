"""Builds graphsafe's CUDA extensions (the cases' and the quant CUDA backend's) on first use, JIT
through ``torch.utils.cpp_extension`` and cached.

The build directory is ``$GRAPHSAFE_BUILD_DIR/<name>`` when that variable is set, otherwise
``$XDG_CACHE_HOME/graphsafe/torch_extensions/<name>`` (``~/.cache`` by default). torch rebuilds only
when the sources or flags change.
"""
from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType


class ExtensionUnavailable(RuntimeError):
    """A case's extension cannot be built or loaded on this machine (no CUDA, no compiler)."""


def build_root() -> Path:
    env = os.environ.get("GRAPHSAFE_BUILD_DIR")
    if env:
        return Path(env).expanduser().resolve()
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "graphsafe" / "torch_extensions"


def load_extension(name: str, sources: list[Path], cuda_flags: list[str] = ()) -> ModuleType:
    import torch
    from torch.utils import cpp_extension

    if not torch.cuda.is_available():
        raise ExtensionUnavailable(f"{name} needs a CUDA GPU; torch.cuda.is_available() is False")
    if cpp_extension.CUDA_HOME is None:
        raise ExtensionUnavailable(f"{name} needs the CUDA toolkit (nvcc); CUDA_HOME was not found")
    build_dir = build_root() / name
    build_dir.mkdir(parents=True, exist_ok=True)
    return cpp_extension.load(
        name=name, sources=[str(s) for s in sources], extra_cuda_cflags=["-O3", *cuda_flags],
        build_directory=str(build_dir), verbose=bool(os.environ.get("GRAPHSAFE_VERBOSE_BUILD")))
