"""Zoo 4 — a host value frozen into the graph.

A Triton softmax-with-temperature kernel takes the temperature as a Python float. Kernel arguments
are copied into the graph node at capture, so every replay uses the capture-time temperature while
eager uses each call's. Expected: GSD010 naming the argument ``temperature``, with the evidence that
the replay equals eager run with the capture-time value. The fixed twin passes the temperature as a
one-element device tensor that the kernel loads (and the runner copies into, like any input).
"""
from __future__ import annotations

import functools

import torch

from ..doctor.target import Target
from ._common import randn


@functools.cache
def _kernels():
    import triton
    import triton.language as tl

    @triton.jit
    def softmax_t(x_ptr, out_ptr, n_cols, inv_t, BLOCK: tl.constexpr):
        row = tl.program_id(0)
        offs = tl.arange(0, BLOCK)
        mask = offs < n_cols
        x = tl.load(x_ptr + row * n_cols + offs, mask=mask, other=-float("inf")).to(tl.float32) * inv_t
        e = tl.exp(x - tl.max(x, 0))
        e = tl.where(mask, e, 0.0)
        tl.store(out_ptr + row * n_cols + offs, e / tl.sum(e, 0), mask=mask)

    @triton.jit
    def softmax_t_dev(x_ptr, out_ptr, n_cols, t_ptr, BLOCK: tl.constexpr):
        row = tl.program_id(0)
        offs = tl.arange(0, BLOCK)
        mask = offs < n_cols
        inv_t = 1.0 / tl.load(t_ptr)
        x = tl.load(x_ptr + row * n_cols + offs, mask=mask, other=-float("inf")).to(tl.float32) * inv_t
        e = tl.exp(x - tl.max(x, 0))
        e = tl.where(mask, e, 0.0)
        tl.store(out_ptr + row * n_cols + offs, e / tl.sum(e, 0), mask=mask)

    return softmax_t, softmax_t_dev


def sample_probs(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    import triton

    out = torch.empty_like(logits, dtype=torch.float32)
    n = logits.shape[1]
    _kernels()[0][(logits.shape[0],)](logits, out, n, 1.0 / temperature, BLOCK=triton.next_power_of_2(n))
    return out


def sample_probs_fixed(logits: torch.Tensor, temperature: torch.Tensor) -> torch.Tensor:
    import triton

    out = torch.empty_like(logits, dtype=torch.float32)
    n = logits.shape[1]
    _kernels()[1][(logits.shape[0],)](logits, out, n, temperature, BLOCK=triton.next_power_of_2(n))
    return out


def _temperature(seed: int) -> float:
    return 0.5 + 0.25 * seed


def make_inputs(seed: int):
    return (randn(seed, 8, 1000, scale=3.0), _temperature(seed))


def make_inputs_fixed(seed: int):
    return (randn(seed, 8, 1000, scale=3.0), torch.full((1,), _temperature(seed), device="cuda"))


bad = Target(sample_probs, make_inputs, name="frozen_scalar.sample_probs")
good = Target(sample_probs_fixed, make_inputs_fixed, name="frozen_scalar.sample_probs_fixed")
