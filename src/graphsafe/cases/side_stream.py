"""Work that escapes capture on each kind of stream, in plain PyTorch, and the fixed twin.

Under ``torch.cuda.graph`` only the capturing stream (and streams that join it through events) is
recorded. ``bad_legacy``, ``bad_per_thread`` and ``bad_other`` run part of the computation on the
legacy default stream, the per-thread default stream, and a stream the module owns: that work runs
once at capture and never on replay (GSD002 names the stream; the output is stale, GSD001).
``good`` forks the side stream from the capturing stream and joins it back, so both are captured.
"""
from __future__ import annotations

import functools

import torch

from ..doctor.target import Target, target_factory


def make_inputs(seed: int):
    g = torch.Generator(device="cuda").manual_seed(seed)
    return (torch.randn(1024, device="cuda", generator=g),)


class _OnStream(torch.nn.Module):
    """Writes ``2 * tanh(x)`` into a buffer it owns, on ``stream``. The buffer is made at the first
    (warm-up) call, so nothing is allocated on the side stream during capture: allocating there could
    need a ``cudaMalloc``, which the capture rejects instead (GSD003), depending on the allocator's cache."""

    def __init__(self, stream_factory, join: bool):
        super().__init__()
        self.stream = stream_factory()
        self.join = join
        self.buf: torch.Tensor | None = None

    def forward(self, x):
        if self.buf is None:
            self.buf = torch.empty_like(x)
        if self.join:
            self.stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self.stream):
            torch.tanh(x, out=self.buf)
            self.buf.mul_(2)
        if self.join:
            torch.cuda.current_stream().wait_stream(self.stream)
        return self.buf


def _target(name: str, stream_factory, join: bool = False) -> Target:
    return Target(_OnStream(stream_factory, join), make_inputs, name=f"side_stream.{name}")


@target_factory
def bad_legacy() -> Target:
    return _target("bad_legacy", torch.cuda.default_stream)  # PyTorch's default stream is the NULL stream


@target_factory
def bad_per_thread() -> Target:
    return _target("bad_per_thread", functools.partial(torch.cuda.ExternalStream, 2))  # cudaStreamPerThread


@target_factory
def bad_other() -> Target:
    return _target("bad_other", torch.cuda.Stream)  # a stream created at construction, never joined


@target_factory
def good() -> Target:
    return _target("good", torch.cuda.Stream, join=True)
