"""The seed case: a user's fused INT4 quantization kernel that disagrees under CUDA-graph replay.

``sym_quant_fuse`` launches its kernel on the legacy default stream; ``sym_quant_fuse_fixed`` is the
twin that launches on PyTorch's current stream. ``buggy``/``fixed`` are targets for
``graphsafe check graphsafe.cases.seed:buggy``: the seed's ``model_w4a4`` (M=1, N=3584,
K=3584+1024) with either op, on fresh float16 inputs per seed.
"""
from __future__ import annotations

from pathlib import Path

from . import ext  # noqa: F401 (seed.ext.load builds the extension; graphsafe.demo uses it)

from ...doctor.target import Target, target_factory
from .model import BATCH_SIZES, K, M, N, CUDAGraphRunner, ModelRunner, model_w4a4
from .ops import sym_quant_fuse, sym_quant_fuse_fixed

HERE = Path(__file__).parent
KERNEL_SOURCE = HERE / "csrc" / "seed_quant.cu"
FIXED_KERNEL_SOURCE = HERE / "csrc" / "seed_quant_fixed.cu"
SCRIPT = HERE / "script.py"

__all__ = ["BATCH_SIZES", "CUDAGraphRunner", "K", "M", "ModelRunner", "N", "bad", "buggy", "fixed", "good",
           "make_inputs", "model_w4a4", "sym_quant_fuse", "sym_quant_fuse_fixed"]


def make_inputs(seed: int, batch: int = M):
    import torch

    g = torch.Generator(device="cuda").manual_seed(seed)
    return (torch.randn((batch, N), dtype=torch.half, device="cuda", generator=g),)


@target_factory
def buggy() -> Target:
    """The seed's model with the user's op (legacy-default-stream launch)."""
    return Target(model_w4a4(M, N, K, quant=sym_quant_fuse).eval(), make_inputs, name="seed model_w4a4 (as reported)")


@target_factory
def fixed() -> Target:
    """The fixed twin: the launch is on at::cuda::getCurrentCUDAStream() and checked."""
    return Target(model_w4a4(M, N, K, quant=sym_quant_fuse_fixed).eval(), make_inputs,
                  name="seed model_w4a4 (fixed twin)")


bad, good = buggy, fixed


def example_source(label: str) -> str:
    """For ``graphsafe explain``: the launch in the seed's host function (bad) or the fixed twin's (good)."""
    from ...lint.cuda import launches

    path = KERNEL_SOURCE if label == "bad" else FIXED_KERNEL_SOURCE
    lines = path.read_text().splitlines()
    ln = next(x for x in launches(path.read_bytes()) if x.kernel == "scale_andquant_kernel")
    lo, hi = max(0, ln.line - 4), min(len(lines), ln.line + 3)
    return f"// {path.name}:{lo + 1}\n" + "\n".join(lines[lo:hi])
