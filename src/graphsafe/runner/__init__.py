"""Graph runners and the capture sentinel.

``GraphRunner`` (batch-bucketed CUDA-graph runner, the seed's ``ModelRunner`` done right) and ``sentinel`` (reports
escaped work and capture-breaking calls the moment a capture records them). Imported lazily: they need torch.
"""
from __future__ import annotations

__all__ = ["CaptureViolationError", "GraphCaptureWarning", "GraphMismatchError", "GraphRunner", "Sentinel", "sentinel"]


def __getattr__(name: str):
    if name in ("GraphRunner", "GraphMismatchError"):
        from . import graph_runner
        return getattr(graph_runner, name)
    if name in ("Sentinel", "sentinel", "GraphCaptureWarning", "CaptureViolationError"):
        from . import sentinel as _sentinel
        return getattr(_sentinel, name)
    raise AttributeError(f"module 'graphsafe.runner' has no attribute {name!r}")
