"""Builds graphsafe's CUDA extensions (the cases' and the quant CUDA backend's) on first use, JIT
through ``torch.utils.cpp_extension`` and cached.

The build directory is ``$GRAPHSAFE_BUILD_DIR/<name>`` when that variable is set, otherwise
``$XDG_CACHE_HOME/graphsafe/torch_extensions/<name>`` (``~/.cache`` by default). torch rebuilds only
when the sources or flags change.

An interrupted build (Ctrl-C, a timeout's kill) leaves torch's ``lock`` file in the build directory,
and every later ``cpp_extension.load`` of that extension would wait for it forever, silently. graphsafe
builds holding an OS lock on ``graphsafe.lock`` beside it (``fcntl.flock``, released by the OS when its
holder dies, however it dies); a ``lock`` file found while holding it was left by a build that no
longer runs, and is removed with a warning naming it. Without ``fcntl`` (Windows) torch's own waiting
is left as it is.
"""
from __future__ import annotations

import contextlib
import os
import warnings
from pathlib import Path
from types import ModuleType

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

TORCH_BATON = "lock"  # torch.utils.cpp_extension's FileBaton in the build directory
OUR_LOCK = "graphsafe.lock"


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
    with build_lock(build_dir):
        return cpp_extension.load(
            name=name, sources=[str(s) for s in sources], extra_cuda_cflags=["-O3", *cuda_flags],
            build_directory=str(build_dir), verbose=bool(os.environ.get("GRAPHSAFE_VERBOSE_BUILD")))


@contextlib.contextmanager
def build_lock(build_dir: Path):
    """Hold ``build_dir``'s OS lock (waiting for another process's build to finish), first removing
    torch's ``lock`` file if an interrupted build left it."""
    if fcntl is None:
        yield
        return
    with open(build_dir / OUR_LOCK, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # released on close, or by the OS when this process dies
        try:
            baton = build_dir / TORCH_BATON
            if baton.exists():
                baton.unlink(missing_ok=True)
                warnings.warn(f"removed {baton}, left by an interrupted build of this extension (no build "
                              "holds the directory's lock); building again", RuntimeWarning, stacklevel=3)
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
