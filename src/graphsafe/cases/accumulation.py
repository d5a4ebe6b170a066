"""Zoo 9 — accumulation into a buffer zeroed only outside the graph.

A scatter-sum module adds token features into per-bin sums with ``index_add_`` into a buffer it owns.
The buffer is zeroed at construction only, so every call — and every replay — adds on top of the last.
Expected: GSD015 naming the buffer and the ``index_add_`` line (the target is stateful eagerly too, and
reported as such). The fixed twin zeroes the buffer at the start of the forward, inside the graph.
"""
from __future__ import annotations

import torch

from ..doctor.target import Target, target_factory
from ._common import randn, seeded


class BinSums(torch.nn.Module):
    def __init__(self, bins: int = 16, d: int = 64, zero_each_call: bool = False):
        super().__init__()
        self.zero_each_call = zero_each_call
        self.register_buffer("acc", torch.zeros(bins, d))

    def forward(self, x: torch.Tensor, bin_of: torch.Tensor) -> torch.Tensor:
        if self.zero_each_call:
            self.acc.zero_()                  # captured: every replay starts from zero
        self.acc.index_add_(0, bin_of, x)
        return self.acc * 1.0


def make_inputs(seed: int):
    return (randn(seed, 256, 64), torch.randint(0, 16, (256,), device="cuda", generator=seeded(seed)))


@target_factory
def bad() -> Target:
    return Target(BinSums().cuda(), make_inputs, name="accumulation.bad")


@target_factory
def good() -> Target:
    return Target(BinSums(zero_each_call=True).cuda(), make_inputs, name="accumulation.good")
