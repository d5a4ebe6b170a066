"""Bad input for the doctor: targets that fault on the GPU.

``device_assert``: an embedding lookup with an index past the table trips ATen's device-side assert
(CUDA error 710). ``illegal_address``: a Triton kernel stores far outside its output (CUDA error 700).
Both leave the CUDA context unusable; ``graphsafe check`` runs them in a child process and reports
GSD022 with what it gathered. Not part of the zoo: there is no graph-vs-eager question to answer.
"""
from __future__ import annotations

import functools

import torch

from ..doctor.target import Target
from ._common import randn, seeded

_TABLE = {}


def lookup(ids: torch.Tensor) -> torch.Tensor:
    if ids.device not in _TABLE:
        _TABLE[ids.device] = torch.randn(100, 32, device=ids.device)
    return torch.nn.functional.embedding(ids, _TABLE[ids.device])


def make_ids(seed: int):
    ids = torch.randint(0, 100, (64,), device="cuda", generator=seeded(seed))
    ids[7] = 100 + seed  # one past the table
    return (ids,)


@functools.cache
def _kernel():
    import triton
    import triton.language as tl

    @triton.jit
    def scatter_far(x_ptr, out_ptr, n, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        x = tl.load(x_ptr + offs, mask=offs < n)
        far = offs.to(tl.int64) * (1 << 40)  # a terabyte apart: far past the allocation
        tl.store(out_ptr + far, x, mask=offs < n)

    return scatter_far


def scatter(x: torch.Tensor) -> torch.Tensor:
    out = torch.empty_like(x)
    _kernel()[(1,)](x, out, x.numel(), BLOCK=128)
    return out


device_assert = Target(lookup, make_ids, name="faults.device_assert")
illegal_address = Target(scatter, lambda seed: (randn(seed, 128),), name="faults.illegal_address")
