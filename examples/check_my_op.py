"""Check your own op or model with graphsafe's Python API.

    python examples/check_my_op.py            # prints the report; exit status 0 match, 1 mismatch, 2 inconclusive

Replace `my_block` and `make_inputs` with your code. `make_inputs(seed)` must return different values for
different seeds (same shapes); graphsafe captures with one seed and verifies replays on others.
"""
from __future__ import annotations

import sys

import torch
from rich.console import Console

import graphsafe
from graphsafe.doctor.render import render_report


class MyBlock(torch.nn.Module):
    def __init__(self, dim: int = 512):
        super().__init__()
        self.proj = torch.nn.Linear(dim, dim)

    def forward(self, x):
        return torch.nn.functional.silu(self.proj(x)) + x


def make_inputs(seed: int):
    g = torch.Generator(device="cuda").manual_seed(seed)
    return (torch.randn(8, 512, device="cuda", generator=g),)


def main() -> int:
    model = MyBlock().cuda().eval() if torch.cuda.is_available() else MyBlock()
    report = graphsafe.check(model, make_inputs, n_inputs=3)
    render_report(report, Console())
    return report.exit_status


if __name__ == "__main__":
    sys.exit(main())
