"""Zoo 8 — an uninitialized read.

A Triton row-sum kernel adds into its output (``out[row] += sum(x[row])``) and the wrapper allocates
that output with ``torch.empty``. Eagerly the block often holds something harmless; in a graph it is
a fixed block of the graph's pool that holds what the previous replay left, so results drift.
Expected: GSD014 — filling uninitialized memory with NaN moves the output. The fixed twin allocates
with ``torch.zeros``.
"""
from __future__ import annotations

import functools

import torch

from ..doctor.target import Target
from ._common import randn


@functools.cache
def _kernel():
    import triton
    import triton.language as tl

    @triton.jit
    def row_sum_into(x_ptr, out_ptr, n_cols, BLOCK: tl.constexpr):
        row = tl.program_id(0)
        acc = tl.load(out_ptr + row)  # reads the output before writing it
        for start in range(0, n_cols, BLOCK):
            offs = start + tl.arange(0, BLOCK)
            acc += tl.sum(tl.load(x_ptr + row * n_cols + offs, mask=offs < n_cols, other=0.0), 0)
        tl.store(out_ptr + row, acc)

    return row_sum_into


def _row_sums(x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    _kernel()[(x.shape[0],)](x, out, x.shape[1], BLOCK=256)
    return out


def row_sums_bad(x: torch.Tensor) -> torch.Tensor:
    return _row_sums(x, torch.empty(x.shape[0], device=x.device, dtype=torch.float32))


def row_sums_good(x: torch.Tensor) -> torch.Tensor:
    return _row_sums(x, torch.zeros(x.shape[0], device=x.device, dtype=torch.float32))


def make_inputs(seed: int):
    return (randn(seed, 64, 1000),)


bad = Target(row_sums_bad, make_inputs, name="uninitialized.row_sums_bad")
good = Target(row_sums_good, make_inputs, name="uninitialized.row_sums_good")
