"""Zoo 2 — escaped work on the per-thread default stream.

A CUDA C++ op launches on ``cudaStreamPerThread`` (what ``nvcc --default-stream per-thread`` makes of
``<<<grid, block>>>``). That stream does not take part in PyTorch's capture either: the kernel runs
once, at capture, and the output the graph hands back is never written again. Expected: GSD002
naming the per-thread default stream and the C++ launch line, GSD001. The fixed twin launches on
``at::cuda::getCurrentCUDAStream()``. ``bad_torch`` is the same mistake from Python.
"""
from __future__ import annotations

import functools

import torch

from ..doctor.target import Target, target_factory
from ._common import OnStream, vector_inputs


def scale_bad(x: torch.Tensor) -> torch.Tensor:
    from ._zoo_ext import load

    return load().scale_per_thread(x).add(1.0)


def scale_good(x: torch.Tensor) -> torch.Tensor:
    from ._zoo_ext import load

    return load().scale_current(x).add(1.0)


@target_factory
def bad() -> Target:
    return Target(scale_bad, vector_inputs, name="escaped_per_thread.bad")


@target_factory
def good() -> Target:
    return Target(scale_good, vector_inputs, name="escaped_per_thread.good")


@target_factory
def bad_torch() -> Target:
    return Target(OnStream(functools.partial(torch.cuda.ExternalStream, 2), join=False), vector_inputs,
                  name="escaped_per_thread.bad_torch")
