"""A plain graph-safe function of a few torch ops: the check must give `match` with no findings."""
from __future__ import annotations

import torch

from ..doctor.target import Target


def mlp_block(x: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor) -> torch.Tensor:
    h = torch.nn.functional.gelu(x @ w1)
    return torch.nn.functional.layer_norm(h @ w2 + x, x.shape[-1:])


def make_inputs(seed: int):
    g = torch.Generator(device="cuda").manual_seed(seed)
    x = torch.randn(16, 256, device="cuda", generator=g)
    w1 = torch.randn(256, 512, device="cuda", generator=g) / 16
    w2 = torch.randn(512, 256, device="cuda", generator=g) / 22
    return (x, w1, w2)


good = Target(mlp_block, make_inputs, name="graph_safe_torch.mlp_block")
