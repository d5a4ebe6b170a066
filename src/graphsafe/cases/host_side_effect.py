"""Zoo 5 — a CPU side effect that happens only at capture.

The forward keeps Python statistics: it counts calls and tokens and remembers the last batch size in
plain attributes. A replay runs only the GPU work, so after any number of replays the attributes still
say what the capture left there. Expected: GSD011 naming each attribute and the line that assigns it.
The fixed twin keeps the token count in a device buffer updated in place (the graph repeats that) and
leaves call counting to the caller.
"""
from __future__ import annotations

import torch

from ..doctor.target import Target, target_factory
from ._common import randn


class CountingProjection(torch.nn.Module):
    def __init__(self, d: int = 256):
        super().__init__()
        self.proj = torch.nn.Linear(d, d)
        self.calls = 0
        self.tokens_seen = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1                      # runs once, at capture
        self.tokens_seen += x.shape[0]
        return self.proj(x)


class DeviceCountingProjection(torch.nn.Module):
    def __init__(self, d: int = 256):
        super().__init__()
        self.proj = torch.nn.Linear(d, d)
        self.register_buffer("tokens_seen", torch.zeros((), dtype=torch.int64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.tokens_seen.add_(x.shape[0])    # a captured kernel: every replay counts
        return self.proj(x)


def make_inputs(seed: int):
    return (randn(seed, 16, 256),)


@target_factory
def bad() -> Target:
    return Target(CountingProjection().cuda(), make_inputs, name="host_side_effect.bad")


@target_factory
def good() -> Target:
    return Target(DeviceCountingProjection().cuda(), make_inputs, name="host_side_effect.good")
