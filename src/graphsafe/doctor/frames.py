"""Python frames: resolving the profiler's file names, and telling user code from library code."""
from __future__ import annotations

import importlib
import os
import sys
import traceback
from pathlib import Path

from ..diagnostics import Location

_PKG = Path(__file__).resolve().parent.parent     # graphsafe's own frames are not the user's ...
_CASES = _PKG / "cases"                            # ... except the bundled cases, which stand in for user code
_DIRS: dict[str, Path | None] = {}


def _package_dir(name: str) -> Path | None:
    """Where library ``name`` (torch, triton) is installed, looked up once; None when it is not."""
    if name not in _DIRS:
        try:
            _DIRS[name] = Path(importlib.import_module(name).__file__).resolve().parent
        except Exception:  # noqa: BLE001 - not installed (or broken): none of its files exist here
            _DIRS[name] = None
    return _DIRS[name]


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
    td = _package_dir("torch")
    if td is not None and (rp == td or td in rp.parents):
        return False
    tt = _package_dir("triton")
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
    return stack_from(sys._getframe(skip))[0]


def stack_from(frame, depth: int | None = None):
    """The user frames from ``frame`` outwards, innermost first, at most ``depth`` of them: (locations, the
    innermost user frame object). Walks frame objects only: no source is read."""
    out, first = [], None
    while frame is not None and (depth is None or len(out) < depth):
        if is_user(frame.f_code.co_filename):
            first = first or frame
            out.append(Location(file=frame.f_code.co_filename, line=frame.f_lineno, function=frame.f_code.co_name))
        frame = frame.f_back
    return dedupe(out), first
