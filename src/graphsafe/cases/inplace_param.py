"""Zoo 10 — in-place mutation of a parameter or a static input inside the graph.

``bad``: a layer folds its scale into its weight in place on every call (meant to happen once). Each
call — and each replay — multiplies the weight again, so results compound. Expected: GSD016 naming
the parameter and the ``mul_`` line. The fixed twin computes ``weight * scale`` into a new tensor.

``bad_input``: a fused residual add writes into its input and reads it back; a runner that keeps the
static input across replays (as it keeps a cache) compounds it on every replay. Expected: GSD016 as
a warning (runners that copy every input in before each replay are safe).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..doctor.target import Target, target_factory
from ._common import randn


class FoldedScaleLinear(torch.nn.Module):
    def __init__(self, d: int = 128, fold_in_place: bool = True):
        super().__init__()
        self.fold_in_place = fold_in_place
        self.weight = torch.nn.Parameter(torch.randn(d, d) / d ** 0.5)
        self.scale = torch.nn.Parameter(torch.full((d, 1), 1.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fold_in_place:
            self.weight.mul_(self.scale)      # every call folds the scale in again
            return F.linear(x, self.weight)
        return F.linear(x, self.weight * self.scale)


def residual_rms_bad(x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
    residual.add_(x)                          # writes into the caller's (static) input
    return residual * torch.rsqrt(residual.pow(2).mean(-1, keepdim=True) + 1e-6)


def residual_rms_good(x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
    h = residual + x
    return h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + 1e-6)


def make_inputs(seed: int):
    return (randn(seed, 16, 128),)


def make_pair(seed: int):
    return (randn(seed, 16, 128), randn(seed + 100, 16, 128))


@target_factory
def bad() -> Target:
    return Target(FoldedScaleLinear().cuda(), make_inputs, name="inplace_param.bad")


@target_factory
def good() -> Target:
    return Target(FoldedScaleLinear(fold_in_place=False).cuda(), make_inputs, name="inplace_param.good")


bad_input = Target(residual_rms_bad, make_pair, name="inplace_param.bad_input")
good_input = Target(residual_rms_good, make_pair, name="inplace_param.good_input")
