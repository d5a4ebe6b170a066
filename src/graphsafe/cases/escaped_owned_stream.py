"""Zoo 3 — escaped work on a stream the code owns.

A module creates its own stream at construction and runs part of its forward there, never joining it
to the capturing stream. Capture records only the capturing stream and the streams that wait on it,
so that work runs once, at capture. Expected: GSD002 (a stream that is not part of the capture),
GSD001. The fixed twin makes its stream wait on the current stream before the work and the current
stream wait on it after, so both are captured.
"""
from __future__ import annotations

import torch

from ..doctor.target import Target, target_factory
from ._common import OnStream, vector_inputs


@target_factory
def bad() -> Target:
    return Target(OnStream(torch.cuda.Stream, join=False), vector_inputs, name="escaped_owned_stream.bad")


@target_factory
def good() -> Target:
    return Target(OnStream(torch.cuda.Stream, join=True), vector_inputs, name="escaped_owned_stream.good")
