"""Zoo 11 — a side-stream race.

A module prefetches a projection on a side stream while the main stream works, but reads the result
before waiting for the side stream; it joins the side stream only at the end, so the capture succeeds.
In the graph the write and the read become unordered nodes. Expected: GSD017 naming both operations
and lines. The fixed twin waits for the side stream before the read.
"""
from __future__ import annotations

import torch

from ..doctor.target import Target, target_factory
from ._common import randn


class Prefetch(torch.nn.Module):
    def __init__(self, d: int = 512, wait_before_read: bool = False):
        super().__init__()
        self.wait_before_read = wait_before_read
        self.w_side = torch.nn.Parameter(torch.randn(d, d) / d ** 0.5)
        self.w_main = torch.nn.Parameter(torch.randn(d, d) / d ** 0.5)
        self.side = torch.cuda.Stream()
        self.buf: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.buf is None:
            self.buf = torch.empty(x.shape[0], self.w_side.shape[1], device=x.device)
        main = torch.cuda.current_stream()
        self.side.wait_stream(main)
        with torch.cuda.stream(self.side):
            torch.matmul(x, self.w_side, out=self.buf)           # written on the side stream
        h = torch.matmul(x, self.w_main)
        if self.wait_before_read:
            main.wait_stream(self.side)
        y = h + self.buf                                         # read on the main stream
        main.wait_stream(self.side)                              # joined only at the end
        return y


def make_inputs(seed: int):
    return (randn(seed, 256, 512),)


@target_factory
def bad() -> Target:
    return Target(Prefetch().cuda(), make_inputs, name="stream_race.bad")


@target_factory
def good() -> Target:
    return Target(Prefetch(wait_before_read=True).cuda(), make_inputs, name="stream_race.good")
