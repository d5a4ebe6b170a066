"""A target that raises when run eagerly (GSD004): the report carries the exception, not a traceback."""
from __future__ import annotations

import torch

from ..doctor.target import Target


def project_bad(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return x @ w  # (8, 16) @ (8, 16): the inner dimensions do not match


def project_good(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return x @ w.t()


def make_inputs(seed: int):
    g = torch.Generator(device="cuda").manual_seed(seed)
    return (torch.randn(8, 16, device="cuda", generator=g), torch.randn(8, 16, device="cuda", generator=g))


bad = Target(project_bad, make_inputs, name="raises.project_bad")
good = Target(project_good, make_inputs, name="raises.project_good")
