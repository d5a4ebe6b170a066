"""A tensor-parallel MLP for checks under ``torchrun`` (issue 8): column-parallel gate/up projections, a
row-parallel down projection, and an all-reduce that sums the ranks' partial outputs.

Every rank builds the full weights from the same seed and keeps its shard, so the result equals the unsharded
MLP (``reference``). Targets, run with ``torchrun --nproc-per-node N -m graphsafe check graphsafe.cases.tp_mlp:X``
(``N`` GPUs, one per rank; NVLink multicast off: ``NCCL_NVLS_ENABLE=0``):

* ``good``: the all-reduce on the current stream; it is captured into the graph: ``match``, no findings.
* ``bad_side_stream``: every rank issues the all-reduce on a communication stream that is never joined to the
  capture, so the NCCL kernel runs once at capture and is in no graph: replays return the unreduced partial
  sums (``mismatch``; GSD002 on all ranks, with the collective's help).
* ``bad_some_ranks``: only the last rank uses that communication stream (a per-rank overlap setting). NCCL
  requires "captured or not" to be the same on every rank: the other ranks' graphs hold an all-reduce that the
  last rank's does not (GSD029). Their first replay pairs with the all-reduce the last rank ran at capture; the
  next one waits for a partner that never comes and hangs, bounded by the check's timeout (GSD021, with the last
  step each rank finished in the ranks table); the last rank reports GSD002.
* ``bad_order`` / ``good_two_collectives``: the MLP also all-reduces a float32 per-token sum of squares. Under
  capture, the bad form issues its two all-reduces in an order that depends on the rank (a reduction of orders
  taken from per-process state, such as iterating a ``set`` under hash randomization); eager calls keep one
  order. The ranks' graphs then hold the same collectives in different orders (GSD028): replays pair the
  float16 output on one rank with the float32 sums on another. The fixed twin uses one order everywhere.

The module itself runs on any backend (the CPU tests use gloo with two processes); the targets need one GPU per
rank and NCCL. Status: on one GPU (world size 1) the targets run; the multi-rank NCCL runs have not been made
(no machine with two GPUs has been lent).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..doctor.target import Target, target_factory


def full_weights(d: int, ff: int, seed: int = 0, dtype=torch.float32, device="cpu"):
    """(gate, up, down): the unsharded weights, the same on every rank."""
    g = torch.Generator().manual_seed(seed)
    gate = torch.randn(ff, d, generator=g) * d ** -0.5
    up = torch.randn(ff, d, generator=g) * d ** -0.5
    down = torch.randn(d, ff, generator=g) * ff ** -0.5
    return tuple(w.to(device=device, dtype=dtype) for w in (gate, up, down))


def reference(x, gate, up, down):
    return F.linear(F.silu(F.linear(x, gate)) * F.linear(x, up), down)


BUGS = ("none", "side_stream", "some_ranks", "two_collectives", "order")


class TPMLP(torch.nn.Module):
    """Rank ``rank`` of ``world`` holds rows ``[r*ff/world, (r+1)*ff/world)`` of gate and up (column-parallel)
    and the same columns of down (row-parallel); ``forward`` ends with an all-reduce over ``group``."""

    def __init__(self, d: int, ff: int, rank: int, world: int, *, group=None, seed: int = 0, dtype=torch.float32,
                 device="cpu", bug: str = "none"):
        super().__init__()
        if ff % world:
            raise ValueError(f"ff={ff} must be divisible by the world size {world}")
        if bug not in BUGS:
            raise ValueError(f"bug must be one of {BUGS}, got {bug!r}")
        gate, up, down = full_weights(d, ff, seed, dtype, device)
        lo, hi = rank * ff // world, (rank + 1) * ff // world
        self.gate = torch.nn.Parameter(gate[lo:hi].contiguous(), requires_grad=False)
        self.up = torch.nn.Parameter(up[lo:hi].contiguous(), requires_grad=False)
        self.down = torch.nn.Parameter(down[:, lo:hi].contiguous(), requires_grad=False)
        self.group, self.bug, self.rank, self.world = group, bug, rank, world
        self.side = None

    def forward(self, x):
        import torch.distributed as dist

        partial = F.linear(F.silu(F.linear(x, self.gate)) * F.linear(x, self.up), self.down)
        if self.bug in ("two_collectives", "order"):
            sumsq = partial.float().square().sum(-1, keepdim=True)  # partial: the ranks' squares add up only
            pair = [partial, sumsq]                                 # approximately; it is a statistic
            if self.bug == "order" and x.is_cuda and torch.cuda.is_current_stream_capturing() and self.rank % 2:
                pair.reverse()  # the bug: a per-rank order, only in the captured path
            for t in pair:
                dist.all_reduce(t, group=self.group)
            return partial, sumsq
        if self.bug == "side_stream" or (self.bug == "some_ranks" and self.rank == self.world - 1):
            # a communication stream synchronized with events only outside capture
            capturing = torch.cuda.is_current_stream_capturing()
            self.side = self.side or torch.cuda.Stream(x.device)
            if not capturing:
                self.side.wait_stream(torch.cuda.current_stream(x.device))
            with torch.cuda.stream(self.side):
                dist.all_reduce(partial, group=self.group)
            if not capturing:
                torch.cuda.current_stream(x.device).wait_stream(self.side)
            return partial
        dist.all_reduce(partial, group=self.group)
        return partial


def _target(bug: str, d: int = 512, ff: int = 1024, tokens: int = 4) -> Target:
    import os

    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl")
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)))
    torch.cuda.set_device(device)
    # with two collectives the output is float16 and the sums of squares float32: their NCCL kernels differ
    dtype = torch.float16 if bug in ("two_collectives", "order") else torch.float32
    model = TPMLP(d, ff, rank, world, device=device, bug=bug, dtype=dtype).eval()

    def make_inputs(seed: int):
        g = torch.Generator(device=device).manual_seed(seed)  # the same input on every rank
        return (torch.randn(tokens, d, device=device, generator=g).to(dtype),)

    return Target(model, make_inputs, name=f"tp_mlp({world} ranks, bug {bug})")


@target_factory
def good() -> Target:
    return _target("none")


@target_factory
def bad_side_stream() -> Target:
    return _target("side_stream")


@target_factory
def bad_some_ranks() -> Target:
    return _target("some_ranks")


@target_factory
def bad_order() -> Target:
    return _target("order")


@target_factory
def good_two_collectives() -> Target:
    return _target("two_collectives")
