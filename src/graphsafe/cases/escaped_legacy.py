"""Zoo 1 — escaped work on the legacy default stream.

PyTorch captures on a non-blocking stream, so work enqueued on the legacy default stream (stream 0,
``kernel<<<grid, block>>>`` in C++) is neither captured nor rejected: it runs once, at capture, and
the graph does not contain it. The seed (``graphsafe.cases.seed``) is the CUDA C++ form of this
class; this is the plain PyTorch form. Expected: GSD002 naming the legacy default stream, GSD001
(the output is stale). The fixed twin forks and joins its stream inside the capture.
"""
from __future__ import annotations

import torch

from ..doctor.target import Target, target_factory
from ._common import OnStream, vector_inputs


@target_factory
def bad() -> Target:
    return Target(OnStream(torch.cuda.default_stream, join=False), vector_inputs, name="escaped_legacy.bad")


@target_factory
def good() -> Target:
    return Target(OnStream(torch.cuda.Stream, join=True), vector_inputs, name="escaped_legacy.good")
