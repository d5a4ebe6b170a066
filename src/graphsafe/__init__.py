"""graphsafe: when CUDA-graph replay and eager execution disagree, say why, where, and how to fix it.

Parts: ``graphsafe.doctor`` (differential checks), ``graphsafe.lint`` (static rules),
``graphsafe.quant`` (graph-safe INT4 kernels), ``graphsafe.runner`` (graph runners), and
``graphsafe.cases`` (the seed and the bug zoo).
"""
from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["Report", "Target", "__version__", "check", "target_factory"]


def __getattr__(name: str):
    # imported lazily so that `graphsafe lint` and `graphsafe --help` start without importing torch
    if name == "check":
        from .doctor.check import check
        return check
    if name == "Report":
        from .doctor.report import Report
        return Report
    if name in ("Target", "target_factory"):
        from .doctor import target
        return getattr(target, name)
    raise AttributeError(f"module 'graphsafe' has no attribute {name!r}")
