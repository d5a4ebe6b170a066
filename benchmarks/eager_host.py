"""Host time of graphsafe.quant's calls outside a graph, where it can exceed the GPU time.

For each (K, N, M): the mean host time of one call (Python, dispatch, checks, launch preparation; N calls
queued without a sync between them, timed with time.perf_counter) and the mean wall time per call once
the GPU has finished them all. Host time above the GPU time means the GPU waits for Python. Timed:
quant_linear, and on sm_90 the many-row GEMMs alone on the same INT8 planes (the CUDA wgmma GEMM as
quant_linear runs it, and the Gluon GEMM where Triton 3.6 has it).

    PYTHONPATH=src python benchmarks/eager_host.py [--calls 2000] [--json OUT]
"""
from __future__ import annotations

import argparse
import sys
import time

import torch

sys.path.insert(0, "benchmarks")
from quant import _save

from graphsafe.quant import pack_int4_weights, quant_linear
from graphsafe.quant.ops import SMALL_MAX_M
from graphsafe.quant.triton_kernels import sym_quant_into

CASES = [(3584, 4608, 4), (3584, 4608, 2048), (18944, 3584, 2048)]


def _time(fn, calls: int) -> tuple[float, float]:
    """(host µs per call, wall µs per call) of ``calls`` calls after 20 warm-up calls."""
    for _ in range(20):
        fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    t1 = time.perf_counter()
    torch.cuda.synchronize()
    t2 = time.perf_counter()
    return (t1 - t0) / calls * 1e6, (t2 - t0) / calls * 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--json", help="write the numbers to this file")
    args = ap.parse_args()
    from graphsafe.quant import triton_persist, wgmma_gemm
    dev = torch.device("cuda", torch.cuda.current_device())
    rows = []
    for k, n, m in CASES:
        qw, ws = pack_int4_weights(torch.randn(n, k, dtype=torch.float16, device=dev) * 0.05)
        x = torch.randn(m, k, dtype=torch.float16, device=dev)
        y = torch.empty(m, n, dtype=torch.float16, device=dev)
        row = {"K": k, "N": n, "M": m}
        row["quant_linear"] = _time(lambda: quant_linear(x, qw, ws, out=y), args.calls)
        if m > SMALL_MAX_M:  # where quant_linear runs a many-row GEMM
            planes = torch.empty(2, m, k // 2, dtype=torch.int8, device=dev)
            scale = torch.empty(m, 1, dtype=torch.float16, device=dev)
            sym_quant_into(x, 1.0, planes, scale)
            if wgmma_gemm.available(dev):
                row["cuda_wgmma"] = _time(lambda: wgmma_gemm.wgmma_into(planes, scale, qw, ws, None, y,
                                                                        **wgmma_gemm.MANY_ROWS), args.calls)
            major, minor = torch.cuda.get_device_capability(dev)
            if triton_persist.gluon_wanted(k // 2, 10 * major + minor):
                from graphsafe.quant import gluon_ws
                row["gluon"] = _time(lambda: gluon_ws.ws_into(planes, scale, qw, ws, None, y), args.calls)
        rows.append(row)
        print(row, file=sys.stderr, flush=True)
    cols = sorted({c for r in rows for c in r if c not in ("K", "N", "M")})
    print(f"{torch.cuda.get_device_name()}, µs per call, host / wall ({args.calls} calls in a row, eager)\n")
    print("| K→N | M | " + " | ".join(cols) + " |")
    print("|---|---|" + "---|" * len(cols))
    for r in rows:
        print(f"| {r['K']}→{r['N']} | {r['M']} | "
              + " | ".join(f"{r[c][0]:.1f} / {r[c][1]:.1f}" if c in r else "–" for c in cols) + " |")
    _save({"device": torch.cuda.get_device_name(), "torch": torch.__version__, "rows": rows}, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
