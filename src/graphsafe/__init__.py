"""graphsafe: when CUDA-graph replay and eager execution disagree, say why, where, and how to fix it.

Parts: ``graphsafe.doctor`` (differential checks), ``graphsafe.lint`` (static rules),
``graphsafe.quant`` (graph-safe INT4 kernels), ``graphsafe.runner`` (graph runners), and
``graphsafe.cases`` (the seed and the bug zoo).
"""
from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["CaptureViolationError", "GraphCaptureWarning", "GraphMismatchError", "GraphRunner", "Report", "Target",
           "__version__", "assert_graph_safe", "check", "sentinel", "target_factory"]

_LAZY = {
    "check": ("doctor.check", "check"),
    "Report": ("doctor.report", "Report"),
    "Target": ("doctor.target", "Target"),
    "target_factory": ("doctor.target", "target_factory"),
    "GraphRunner": ("runner.graph_runner", "GraphRunner"),
    "GraphMismatchError": ("runner.graph_runner", "GraphMismatchError"),
    "sentinel": ("runner.sentinel", "sentinel"),
    "GraphCaptureWarning": ("runner.sentinel", "GraphCaptureWarning"),
    "CaptureViolationError": ("runner.sentinel", "CaptureViolationError"),
    "assert_graph_safe": ("pytest_plugin", "assert_graph_safe"),
}


def __getattr__(name: str):
    # imported lazily so that `graphsafe lint` and `graphsafe --help` start without importing torch
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(f".{module}", __name__), attr)
    raise AttributeError(f"module 'graphsafe' has no attribute {name!r}")


def _sentinel_from_environment() -> None:
    """``GRAPHSAFE_SENTINEL=warn|strict``: a process that imports graphsafe watches all its captures."""
    import os

    if os.environ.get("GRAPHSAFE_SENTINEL", "").strip():  # the sentinel module reads the value
        from .runner.sentinel import from_environment

        from_environment()


_sentinel_from_environment()
