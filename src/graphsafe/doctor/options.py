"""The check's arguments, validated before anything runs: a bad one is the caller's mistake, said at once
with the argument's name, never reported later as something the target did."""
from __future__ import annotations

import math
import os
from numbers import Integral, Real
from typing import Any

LOCATE = (True, False, "auto", "always", "never")


def _int(name: str, value: Any, low: int | None) -> None:
    if isinstance(value, bool) or not isinstance(value, Integral):  # numpy's integers too
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if low is not None and value < low:
        raise ValueError(f"{name} must be at least {low}, got {value}")


def _number(name: str, value: Any, *, positive: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if math.isnan(value) or value < 0 or (positive and value == 0):
        raise ValueError(f"{name} must be {'above' if positive else 'at least'} 0, got {value}")


def validate(*, n_inputs: Any = 3, capture_seed: Any = 0, warmup: Any = 2, rtol: Any = None, atol: Any = None,
             timeout_s: Any = 60.0, locate: Any = "auto", html: Any = None, repro: Any = None, **_: Any) -> None:
    """Raise ``TypeError``/``ValueError`` naming the first bad argument of :func:`graphsafe.check`."""
    _int("n_inputs", n_inputs, 1)
    _int("capture_seed", capture_seed, None)
    _int("warmup", warmup, 0)
    for name, tol in (("rtol", rtol), ("atol", atol)):
        if tol is not None:
            _number(name, tol, positive=False)
    _number("timeout_s", timeout_s, positive=True)
    if not any(locate is v or (isinstance(locate, str) and locate == v) for v in LOCATE):
        raise ValueError(f"locate must be 'auto', 'always' or 'never', got {locate!r}")
    for name, path in (("html", html), ("repro", repro)):
        if path is not None and not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"{name} must be a file path, got {type(path).__name__}")
    if locate in (False, "never") and (html or repro):
        raise ValueError("html and repro need the localization; do not pass locate='never' with them")
