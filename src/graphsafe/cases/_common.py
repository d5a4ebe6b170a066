"""Helpers shared by the zoo's cases: seeded inputs and lazily compiled Triton kernels."""
from __future__ import annotations

import torch


def randn(seed: int, *shape: int, dtype: torch.dtype = torch.float32, scale: float = 1.0) -> torch.Tensor:
    g = torch.Generator(device="cuda").manual_seed(seed)
    return torch.randn(*shape, device="cuda", generator=g).mul_(scale).to(dtype)


def seeded(seed: int) -> torch.Generator:
    return torch.Generator(device="cuda").manual_seed(seed)


class OnStream(torch.nn.Module):
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
        return self.buf.clone()  # the buffer is rewritten by the next call: hand out a copy


def vector_inputs(seed: int):
    return (randn(seed, 1024),)
