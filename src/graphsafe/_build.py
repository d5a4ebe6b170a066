"""Builds graphsafe's CUDA extensions (the cases' and the quant CUDA backend's) on first use, JIT
through ``torch.utils.cpp_extension`` and cached.

The build directory is ``$GRAPHSAFE_BUILD_DIR/<name>`` when that variable is set, otherwise
``$XDG_CACHE_HOME/graphsafe/torch_extensions/<name>`` (``~/.cache`` by default). torch rebuilds only
when the sources or flags change.

A build that is killed (a timeout's SIGTERM or SIGKILL, a crash; torch cleans up after Ctrl-C) leaves
torch's ``lock`` file in the build directory, and every later ``cpp_extension.load`` of that extension
would wait for it forever, silently. graphsafe builds holding an OS lock on ``graphsafe.lock`` beside it
(``fcntl.flock``, released by the OS when its holder dies, however it dies). Only graphsafe builds into
its build directories, so a ``lock`` file found while holding the OS lock was left by a build that no
longer runs: it is removed, with a warning naming it. (A build into the same directory by something
that does not take the OS lock, an older graphsafe or a direct ``cpp_extension.load``, would lose its
file; so would one on another host where the filesystem's locks are not shared.) Without ``fcntl``
(Windows), or where the filesystem refuses ``flock`` (some NFS, Lustre or FUSE mounts: a warning
says so), torch's own waiting is left as it is.
"""
from __future__ import annotations

import contextlib
import errno
import os
import threading
import warnings
from pathlib import Path
from types import ModuleType

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

TORCH_BATON = "lock"  # torch.utils.cpp_extension's FileBaton in the build directory
OUR_LOCK = "graphsafe.lock"
_NO_FLOCK = {errno.ENOLCK, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP}  # the filesystem has no flock
_held = threading.local()  # the build directories this thread holds (a nested load must not wait on itself)


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
    """Hold ``build_dir``'s OS lock (waiting for another process's or thread's build to finish), first
    removing torch's ``lock`` file if a killed build left it. Reentrant within a thread."""
    held = _held.__dict__.setdefault("dirs", set())
    key = os.path.realpath(build_dir)
    if fcntl is None or key in held:
        yield
        return
    with open(build_dir / OUR_LOCK, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX)  # released on close, or by the OS when this process dies
        except OSError as exc:
            if exc.errno not in _NO_FLOCK:
                raise
            warnings.warn(f"{build_dir} is on a filesystem without flock ({exc.strerror}): a build killed "
                          f"there leaves {build_dir / TORCH_BATON}, which later builds wait on until it is "
                          "removed by hand", RuntimeWarning, stacklevel=4)
            yield
            return
        held.add(key)
        try:
            baton = build_dir / TORCH_BATON
            if baton.exists():
                baton.unlink(missing_ok=True)
                warnings.warn(f"removed {baton}, left by a build of this extension that was killed (no build "
                              "holds the directory's lock); building again", RuntimeWarning, stacklevel=4)
            yield
        finally:
            held.discard(key)
            fcntl.flock(f, fcntl.LOCK_UN)
