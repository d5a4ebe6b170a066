"""Zoo 13 — control flow or shape decided at capture.

``bad``: a smoothing layer mixes in a second projection from step 1 on (``if step > 0``). The branch is
a Python decision, taken once at capture (step 0): every replay skips the mix. Expected: GSD018 with the
kernels eager ran that the graph lacks. The fixed twin decides on the device with a gate tensor.

``bad_batch``: an MLP switches to the tanh GELU for batches of 8 or more. A runner captured at batch 8
runs a batch of 3 padded, so it takes the large-batch path. Expected: GSD018 (depends on the batch
size): replay equals eager on the padded batch and differs beyond rounding from eager on the real one.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..doctor.target import Target, target_factory
from ._common import randn


class Smoother(torch.nn.Module):
    def __init__(self, d: int = 256):
        super().__init__()
        self.proj = torch.nn.Linear(d, d)
        self.prev_proj = torch.nn.Linear(d, d)

    def forward(self, x: torch.Tensor, step: int) -> torch.Tensor:
        y = self.proj(x)
        if step > 0:                           # a Python branch: decided once, at capture
            y = y + 0.5 * self.prev_proj(x)
        return y


class GatedSmoother(Smoother):
    def forward(self, x: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
        gate = (step > 0).to(x.dtype)          # decided on the device, every replay
        return self.proj(x) + 0.5 * gate * self.prev_proj(x)


class BatchSwitchMLP(torch.nn.Module):
    def __init__(self, d: int = 256, switch: bool = True):
        super().__init__()
        self.switch = switch
        self.up = torch.nn.Linear(d, 4 * d)
        self.down = torch.nn.Linear(4 * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.up(x)
        fast = self.switch and x.shape[0] >= 8  # a Python branch on the batch size
        return self.down(F.gelu(h, approximate="tanh") if fast else F.gelu(h))


def make_inputs(seed: int):
    return (randn(seed, 16, 256), seed)


def make_inputs_fixed(seed: int):
    return (randn(seed, 16, 256), torch.tensor(seed, device="cuda"))


def make_batch(seed: int):
    return (randn(seed, 8 if seed == 0 else 2 + seed, 256),)


@target_factory
def bad() -> Target:
    return Target(Smoother().cuda(), make_inputs, name="control_flow.bad")


@target_factory
def good() -> Target:
    return Target(GatedSmoother().cuda(), make_inputs_fixed, name="control_flow.good")


@target_factory
def bad_batch() -> Target:
    return Target(BatchSwitchMLP().cuda(), make_batch, name="control_flow.bad_batch")


@target_factory
def good_batch() -> Target:
    return Target(BatchSwitchMLP(switch=False).cuda(), make_batch, name="control_flow.good_batch")
