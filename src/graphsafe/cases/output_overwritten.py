"""Zoo 7 — outputs overwritten by the next replay, and by another graph sharing the pool.

A batch-bucketed runner (the seed's ``ModelRunner`` pattern) captures one graph per bucket, largest
first, all in one memory pool, and returns a view of the graph's static output. The caller keeps it;
the next call replays a graph and writes over it — the same graph rewrites its own output, and
another bucket's graph may write there too, because its capture-time temporaries occupied memory the
smaller graph's output was later placed in. Expected: GSD013 (both kinds). The fixed runner returns
a clone. Both runners are checked against the eager model (``Target.reference``).
"""
from __future__ import annotations

import torch

from ..doctor.target import Target, target_factory
from ._common import randn

BUCKETS = (8, 4)
BATCH = {0: 8, 1: 6, 2: 3, 3: 7}  # seed -> batch size: the capture input is the largest


class BucketRunner:
    def __init__(self, model: torch.nn.Module, d: int, clone: bool):
        self.model, self.clone = model, clone
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self.static_in: dict[int, torch.Tensor] = {}
        self.static_out: dict[int, torch.Tensor] = {}
        pool = None
        stream = torch.cuda.Stream()
        for b in sorted(BUCKETS, reverse=True):
            x = torch.zeros(b, d, device="cuda")
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream), torch.no_grad():
                model(x)
            torch.cuda.current_stream().wait_stream(stream)
            g = torch.cuda.CUDAGraph()
            with torch.no_grad(), torch.cuda.graph(g, pool=pool, stream=stream):
                y = model(x)
            pool = g.pool()
            self.graphs[b], self.static_in[b], self.static_out[b] = g, x, y

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        b = min(bb for bb in BUCKETS if bb >= n)
        self.static_in[b][:n].copy_(x)
        self.static_in[b][n:].zero_()
        self.graphs[b].replay()
        out = self.static_out[b][:n]
        return out.clone() if self.clone else out  # the bug: a view of memory the next replay rewrites


def _model(d: int) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(d, 4 * d), torch.nn.GELU(), torch.nn.Linear(4 * d, d)).cuda().eval()


def make_inputs(seed: int):
    return (randn(seed, BATCH.get(seed, 5), 128),)


def _target(clone: bool) -> Target:
    model = _model(128)
    return Target(BucketRunner(model, 128, clone), make_inputs, reference=model,
                  name=f"output_overwritten.{'good' if clone else 'bad'}")


@target_factory
def bad() -> Target:
    return _target(clone=False)


@target_factory
def good() -> Target:
    return _target(clone=True)
