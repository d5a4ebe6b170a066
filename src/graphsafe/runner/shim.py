"""Builds and loads the sentinel's native CUPTI callback (``csrc/sentinel_shim.c``) with the system C compiler.

The shim is plain C with no CUDA or CUPTI header, compiled once per source version into graphsafe's build
directory (``$GRAPHSAFE_BUILD_DIR/sentinel_shim`` or ``~/.cache/graphsafe/...``) in well under a second.
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

SOURCE = Path(__file__).with_name("csrc") / "sentinel_shim.c"
NOTIFY = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_uint32, ctypes.c_uint64, ctypes.c_int, ctypes.c_char_p,
                          ctypes.c_void_p)


class ShimUnavailable(RuntimeError):
    """The native callback cannot be built or loaded here (no C compiler, say)."""


def compiler() -> str | None:
    for cand in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if cand and shutil.which(cand):
            return shutil.which(cand)
    return None


@functools.cache
def load() -> ctypes.CDLL:
    from .._build import build_root

    data = SOURCE.read_bytes()
    root = build_root()
    out_dir = (root if os.environ.get("GRAPHSAFE_BUILD_DIR") else root.parent) / "sentinel_shim"
    so = out_dir / f"sentinel_shim-{hashlib.sha256(data).hexdigest()[:16]}.so"
    if not so.is_file():
        cc = compiler()
        if cc is None:
            raise ShimUnavailable("no C compiler found (set CC, or install cc/gcc/clang)")
        tmp = None
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(suffix=".so", dir=out_dir)
            os.close(fd)
            proc = subprocess.run([cc, "-O2", "-shared", "-fPIC", "-o", tmp, str(SOURCE), "-lpthread"],
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                raise ShimUnavailable(f"{cc} failed to build {SOURCE.name}: {proc.stderr.strip()[-400:]}")
            os.replace(tmp, so)
            tmp = None
        except OSError as exc:
            raise ShimUnavailable(f"cannot build {SOURCE.name} in {out_dir}: {exc}") from exc
        finally:
            if tmp is not None and os.path.exists(tmp):
                os.unlink(tmp)
    try:
        lib = ctypes.CDLL(str(so))
    except OSError as exc:
        raise ShimUnavailable(f"cannot load {so}: {exc}") from exc
    lib.gs_configure.argtypes = [NOTIFY, ctypes.c_void_p]
    lib.gs_watch_call.argtypes = [ctypes.c_int, ctypes.c_uint32, ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.gs_enable_watched.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    lib.gs_begin.argtypes = [ctypes.c_uint64, ctypes.c_uint64]
    lib.gs_end.argtypes = [ctypes.c_uint64]
    return lib
