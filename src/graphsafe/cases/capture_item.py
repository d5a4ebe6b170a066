"""A capture-breaking call: ``.item()`` inside the captured function (GSD003).

``.item()`` copies a value to the host and waits for it; a capturing stream cannot wait, so CUDA
rejects the capture with error 900. The fixed twin keeps the value on the GPU.
"""
from __future__ import annotations

import torch

from ..doctor.target import Target


def normalize_bad(x: torch.Tensor) -> torch.Tensor:
    peak = x.abs().max().item()  # host sync: not allowed while capturing
    return x / peak


def normalize_good(x: torch.Tensor) -> torch.Tensor:
    return x / x.abs().amax()  # the peak stays a device tensor


def make_inputs(seed: int):
    g = torch.Generator(device="cuda").manual_seed(seed)
    return (torch.randn(64, 64, device="cuda", generator=g),)


bad = Target(normalize_bad, make_inputs, name="capture_item.normalize_bad")
good = Target(normalize_good, make_inputs, name="capture_item.normalize_good")
