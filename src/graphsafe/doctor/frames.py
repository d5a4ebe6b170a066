"""Python frames: resolving the profiler's file names, and telling user code from library code."""
from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path

from ..diagnostics import Location

_PKG = Path(__file__).resolve().parent.parent     # graphsafe's own frames are not the user's ...
_CASES = _PKG / "cases"                            # ... except the bundled cases, which stand in for user code
_TORCH_DIR: Path | None = None
_TRITON_DIR: Path | None | bool = False  # False: not looked up yet


def _torch_dir() -> Path | None:
    global _TORCH_DIR
    if _TORCH_DIR is None:
        try:
            import torch
            _TORCH_DIR = Path(torch.__file__).resolve().parent
        except Exception:  # noqa: BLE001 - torch missing: nothing is torch's
            return None
    return _TORCH_DIR


def _triton_dir() -> Path | None:
    global _TRITON_DIR
    if _TRITON_DIR is False:
        try:
            import triton
            _TRITON_DIR = Path(triton.__file__).resolve().parent
        except Exception:  # noqa: BLE001 - no triton: nothing is triton's
            _TRITON_DIR = None
    return _TRITON_DIR  # type: ignore[return-value]


def resolve(file: str | None) -> str | None:
    """The profiler reports paths relative to a ``sys.path`` entry (``pkg/mod.py``); make them real."""
    if not file or file.startswith("<") or os.path.isabs(file):
        return file
    for base in sys.path:
        cand = os.path.join(base or os.getcwd(), file)
        if os.path.isfile(cand):
            return os.path.abspath(cand)
    return file


def location(file: str | None, line: int | None, function: str | None = None) -> Location:
    return Location(file=resolve(file), line=line or None, function=function or None)


_LIB_PARTS = ("/contextlib.py", "/runpy.py", "/functools.py", "/threading.py", "/importlib/")


_USER: dict[str, bool] = {}


def is_user(file: str | None) -> bool:
    """True for frames of the user's code: not torch or triton, not the doctor itself, not the stdlib's
    plumbing, not frozen or generated code."""
    if not file or file.startswith("<"):
        return False
    known = _USER.get(file)
    if known is None:
        known = _USER[file] = _is_user(file)
    return known


def _is_user(file: str) -> bool:
    p = Path(file)
    if not p.is_absolute():
        return not file.startswith(("torch/", "triton/")) and (not file.startswith("graphsafe/")
                                                  or file.startswith("graphsafe/cases/"))
    rp = p.resolve()
    td = _torch_dir()
    if td is not None and (rp == td or td in rp.parents):
        return False
    tt = _triton_dir()
    if tt is not None and tt in rp.parents:
        return False
    if _PKG in rp.parents and _CASES not in rp.parents:
        return False
    return not any(part in str(rp) for part in _LIB_PARTS)


def dedupe(locs: list[Location]) -> list[Location]:
    out: list[Location] = []
    for loc in locs:
        if not out or (out[-1].file, out[-1].line) != (loc.file, loc.line):
            out.append(loc)
    return out


def c_function_name(profiler_name: str) -> str:
    """``<built-in method sym_quant_fuse of PyCapsule object at 0x..>`` -> ``sym_quant_fuse``."""
    s = profiler_name.strip("<>")
    for prefix in ("built-in method ", "built-in function "):
        if s.startswith(prefix):
            return s[len(prefix):].split(" of ")[0].strip() or profiler_name
    return profiler_name


def user_frames(tb) -> list[Location]:
    """User frames of a traceback, innermost first."""
    out = [Location(file=f.filename, line=f.lineno, function=f.name)
           for f in reversed(traceback.extract_tb(tb)) if is_user(f.filename)]
    return dedupe(out)


def caller_frames(skip: int = 1) -> list[Location]:
    """User frames of the current call stack, innermost first."""
    out = [Location(file=f.filename, line=f.lineno, function=f.name)
           for f in reversed(traceback.extract_stack()[:-skip]) if is_user(f.filename)]
    return dedupe(out)
