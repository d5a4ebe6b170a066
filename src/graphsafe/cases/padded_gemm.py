"""Zoo 15 — benign numeric noise from a padded batch.

A projection takes a GEMV path for tiny batches (up to 4 rows, one reduction per output, as decode
kernels do) and cuBLAS GEMM otherwise. A bucketed runner captured it at batch 64 and runs small
batches padded to 64, so the graph runs the GEMM while eager runs the GEMV: the sums are rounded in
another order and the replay differs from eager in the last bits. Expected: GSD020 (a note) and the
verdict ``benign``, with the evidence — replay equals eager on the padded batch, the error is within
a few units in the last place, and the kernels differ. The twin validates at the captured batch:
``match``.
"""
from __future__ import annotations

import torch

from ..doctor.target import Target, target_factory
from ._common import randn

D_IN, D_OUT, GEMV_MAX_ROWS = 4096, 1024, 4


class Projection(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(D_OUT, D_IN) / D_IN ** 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] <= GEMV_MAX_ROWS:   # GEMV: one fp32 reduction per output
            return (x.float().unsqueeze(1) * self.weight.float()).sum(-1).to(x.dtype)
        return x @ self.weight.t()         # cuBLAS GEMM, fp32 accumulation


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return Projection().cuda().to(torch.bfloat16).eval()


def make_padded(seed: int):
    batch = 64 if seed == 0 else (1, 3, 2, 4)[(seed - 1) % 4]
    return (randn(seed, batch, D_IN, dtype=torch.bfloat16),)


def make_full(seed: int):
    return (randn(seed, 64, D_IN, dtype=torch.bfloat16),)


@target_factory
def bad() -> Target:
    return Target(_model(), make_padded, name="padded_gemm.padded")


@target_factory
def good() -> Target:
    return Target(_model(), make_full, name="padded_gemm.full_batch")
