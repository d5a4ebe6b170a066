"""The seed's system done right: a W4A4 MLP replayed from CUDA graphs by graphsafe's GraphRunner.

    python examples/w4a4_mlp.py                        # Qwen2-7B's MLP shapes (3584 -> 18944 -> 3584)
    python examples/w4a4_mlp.py --hidden 1024 --inter 4096 --steps 20

A SwiGLU MLP (gate, up, down) in float16 is converted to ``W4A4Linear`` layers (INT4 weights per output
channel, INT4 activations per row, exact int32 sums). The script prints how far the W4A4 outputs are from
the float16 model's, then captures one CUDA graph per batch bucket with ``verify=True`` (the doctor compares
each bucket's first replay with eager and raises with its diagnosis if they disagree), and times a step:
float16 eager, W4A4 eager, W4A4 replayed. Without a GPU it runs the W4A4 math on the CPU (the reference
backend, at small shapes) and says what needs one.

The quantization is the seed's: plain per-row INT4 with no rotation and no outlier handling. On these
random weights the MLP's W4A4 output is some 30 % (relative L2) from the float32 model's; W4A4 methods for
real models (QuaRot, SpinQuant) rotate activations and weights first so that INT4 loses less.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys

import torch

import graphsafe
from graphsafe.quant import W4A4Linear


class MLP(torch.nn.Module):
    def __init__(self, hidden: int, inter: int):
        super().__init__()
        self.gate = torch.nn.Linear(hidden, inter, bias=False)
        self.up = torch.nn.Linear(hidden, inter, bias=False)
        self.down = torch.nn.Linear(inter, hidden, bias=False)

    def forward(self, x):
        return self.down(torch.nn.functional.silu(self.gate(x)) * self.up(x))


def to_w4a4(mlp: MLP) -> MLP:
    """The same module with every ``nn.Linear`` replaced by its W4A4 twin."""
    for name in ("gate", "up", "down"):
        setattr(mlp, name, W4A4Linear.from_float(getattr(mlp, name)))
    return mlp


def relative_error(y: torch.Tensor, ref: torch.Tensor) -> float:
    return float((y.float() - ref.float()).norm() / ref.float().norm())


def step_ms(fn, x: torch.Tensor, steps: int) -> float:
    """Median milliseconds of ``fn(x)`` over ``steps`` calls, each between two CUDA events."""
    times = []
    for _ in range(steps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn(x)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hidden", type=int, help="model width (default 3584 on a GPU, 256 without)")
    ap.add_argument("--inter", type=int, help="MLP width (default 18944 on a GPU, 512 without)")
    ap.add_argument("--buckets", default="1,2,4,8", help="batch sizes to capture, comma-separated")
    ap.add_argument("--steps", type=int, default=50, help="timed calls per variant")
    args = ap.parse_args(argv)
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    hidden, inter = args.hidden or (3584 if cuda else 256), args.inter or (18944 if cuda else 512)
    buckets = [int(b) for b in args.buckets.split(",")]
    torch.manual_seed(0)
    fp32 = MLP(hidden, inter).to(device).eval()
    fp16 = copy.deepcopy(fp32).half()
    w4 = to_w4a4(copy.deepcopy(fp16))
    print(f"MLP {hidden} -> {inter} -> {hidden} on {device}; relative error against the float32 model:")
    with torch.inference_mode():
        for b in buckets:
            x = torch.randn(b, hidden, device=device, dtype=torch.float16)
            ref = fp32(x.float())
            fp16_err = f"float16 {relative_error(fp16(x), ref):.4f}, " if cuda else ""
            print(f"  batch {b}: {fp16_err}W4A4 {relative_error(w4(x), ref):.4f}")
        if not cuda:
            print("No CUDA GPU: the W4A4 layers ran on the reference backend. Capturing the buckets with "
                  "GraphRunner (verify=True) and timing float16 against W4A4 need one.")
            return 0
        runner = graphsafe.GraphRunner(w4, batch_sizes=buckets, verify=True)
        print("| batch | float16 eager ms | W4A4 eager ms | W4A4 replayed ms |")
        print("|---|---|---|---|")
        for b in buckets:
            x = torch.randn(b, hidden, device=device, dtype=torch.float16)
            runner(x)  # the first call captures every bucket; each bucket's first replay is checked against eager
            print(f"| {b} | {step_ms(fp16, x, args.steps):.3f} | {step_ms(w4, x, args.steps):.3f} "
                  f"| {step_ms(runner, x, args.steps):.3f} |")
    verified = all(bk.verified for bk in runner.buckets.values())
    print(f"buckets {sorted(runner.buckets)} captured; first replays verified against eager: {verified}")
    return 0 if verified else 1


if __name__ == "__main__":
    sys.exit(main())
