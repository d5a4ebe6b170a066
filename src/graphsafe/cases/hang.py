"""Bad input for the doctor: a replay that hangs.

A consumer kernel spins until a flag is raised, then lowers it (a zero-then-signal semaphore, as in
split-K combines). The producer raises the flag on a side stream that is never joined to the capture,
so it runs once, at capture: the first replay finds the flag raised, every later replay waits forever.
The doctor bounds every replay and reports GSD021 with the escaped producer (GSD002) it found first.
"""
from __future__ import annotations

import functools

import torch

from ..doctor.target import Target, target_factory
from ._common import randn


@functools.cache
def _kernel():
    import triton
    import triton.language as tl

    @triton.jit
    def wait_then_scale(flag_ptr, x_ptr, out_ptr, n, BLOCK: tl.constexpr):
        while tl.atomic_add(flag_ptr, 0) == 0:
            pass
        for start in range(0, n, BLOCK):
            offs = start + tl.arange(0, BLOCK)
            tl.store(out_ptr + offs, 2 * tl.load(x_ptr + offs, mask=offs < n), mask=offs < n)
        tl.atomic_xchg(flag_ptr, 0)

    return wait_then_scale


class Semaphore(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.side = torch.cuda.Stream()
        self.register_buffer("flag", torch.zeros(1, dtype=torch.int32, device="cuda"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.cuda.stream(self.side):
            self.flag.fill_(1)                # the producer: never joined to the capture
        out = torch.empty_like(x)
        _kernel()[(1,)](self.flag, x, out, x.numel(), BLOCK=1024)
        return out


@target_factory
def replay_hangs() -> Target:
    return Target(Semaphore(), lambda seed: (randn(seed, 4096),), name="hang.replay_hangs")
