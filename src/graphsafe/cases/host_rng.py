"""Zoo 14 — randomness seeded from the host.

A Triton dropout kernel takes its seed as a kernel argument drawn from Python's ``random`` on each
call. At capture that seed is baked into the graph node, so every replay draws the same mask.
Expected: GSD019 (eager output moves with the RNG seed, replay output does not). The fixed twin draws
the seed on the device from PyTorch's generator (captured with its Philox offset, so every replay
draws a new one) and the kernel loads it.
"""
from __future__ import annotations

import functools
import random

import torch

from ..doctor.target import Target
from ._common import randn

P = 0.25


@functools.cache
def _kernels():
    import triton
    import triton.language as tl

    @triton.jit
    def dropout_host_seed(x_ptr, out_ptr, n, p, seed, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        x = tl.load(x_ptr + offs, mask=mask)
        keep = tl.rand(seed, offs) > p
        tl.store(out_ptr + offs, tl.where(keep, x / (1 - p), 0.0), mask=mask)

    @triton.jit
    def dropout_device_seed(x_ptr, out_ptr, n, p, seed_ptr, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        x = tl.load(x_ptr + offs, mask=mask)
        seed = tl.load(seed_ptr)
        keep = tl.rand(seed, offs) > p
        tl.store(out_ptr + offs, tl.where(keep, x / (1 - p), 0.0), mask=mask)

    return dropout_host_seed, dropout_device_seed


def dropout_bad(x: torch.Tensor) -> torch.Tensor:
    out = torch.empty_like(x)
    seed = random.randrange(2 ** 31)          # drawn on the host: frozen into the graph at capture
    n = x.numel()
    _kernels()[0][((n + 1023) // 1024,)](x, out, n, P, seed, BLOCK=1024)
    return out


def dropout_good(x: torch.Tensor) -> torch.Tensor:
    out = torch.empty_like(x)
    seed = torch.randint(0, 2 ** 31, (1,), device=x.device, dtype=torch.int64)  # drawn on the device
    n = x.numel()
    _kernels()[1][((n + 1023) // 1024,)](x, out, n, P, seed, BLOCK=1024)
    return out


def make_inputs(seed: int):
    return (randn(seed, 4096),)


bad = Target(dropout_bad, make_inputs, name="host_rng.dropout_bad")
good = Target(dropout_good, make_inputs, name="host_rng.dropout_good")
