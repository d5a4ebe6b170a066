"""Zoo 6 — a stale pointer: a captured tensor rebound after capture.

Between steps the program loads new weights (as RL loops and LoRA swaps do). The buggy loader assigns
a new ``Parameter`` (``model.weight = nn.Parameter(new)``); the graph recorded the old weight's address
and keeps reading it. Expected: GSD012 naming ``model.weight`` and the assignment in the loader. The
fixed loader copies into the captured weight: ``model.weight.copy_(new)``.
"""
from __future__ import annotations

import torch

from ..doctor.target import Target, target_factory
from ._common import randn


class Checkpoints:
    """Weights per step, already on the GPU (a weight server's cache)."""

    def __init__(self, d: int):
        self.d = d
        self.cache: dict[int, torch.Tensor] = {}

    def __getitem__(self, step: int) -> torch.Tensor:
        if step not in self.cache:
            self.cache[step] = randn(1000 + step, self.d, self.d, scale=self.d ** -0.5)
        return self.cache[step]


def _build(copy: bool) -> Target:
    model = torch.nn.Linear(256, 256, bias=False).cuda()
    ckpt = Checkpoints(256)

    def reload_rebinding(step: int) -> None:
        model.weight = torch.nn.Parameter(ckpt[step])  # a new tensor: the graph still reads the old one

    def reload_in_place(step: int) -> None:
        with torch.no_grad():
            model.weight.copy_(ckpt[step])

    return Target(model, lambda seed: (randn(seed, 8, 256),), prepare=reload_in_place if copy else reload_rebinding,
                  name=f"stale_pointer.{'good' if copy else 'bad'}")


@target_factory
def bad() -> Target:
    return _build(copy=False)


@target_factory
def good() -> Target:
    return _build(copy=True)
