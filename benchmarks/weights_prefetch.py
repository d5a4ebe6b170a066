"""``quant_linear`` for few rows with its quantizer sending the GEMM's weights on their way to L2, timed as
``benchmarks/quant.py`` times W4A4: calls in a row captured into one graph, weights rotating through HBM,
median µs per call over 10 replays (and after a torch op writing x, that op's own time taken off).

Why: in the fused kernel's runs (sixteenth session, ``benchmarks/README.md``) the planes K loop took
1.5 µs with its weights in L2, against 3.3 µs streaming them from HBM after the quantizer. Each call's
quantizer starts while the GEMM before it runs (PDL), about 5 µs before its own GEMM, more than the
2.75 µs that 8.26 MB take at 3 TB/s. The quantizer's own few programs cannot issue the prefetch (one
program reached about 0.28 TB/s: 34.5 µs a call at M = 1), so ``--programs`` extra programs in its grid
each issue a share and leave without waiting for the kernel before.

    python benchmarks/weights_prefetch.py [--shapes 3584x4608,...] [--ms 1,2,4,8,16] [--programs 0,33,66,132,264]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from quant import SHAPES, _after_torch_op, _copies, _timed_graph, _weights  # noqa: E402


def run(shapes, ms, programs, reps: int) -> list[dict]:
    import torch

    from graphsafe.quant import ops, reference

    rows = []
    for k, n in shapes:
        copies = _copies(n * k // 2)
        packed = _weights(k, n, copies)
        for m in ms:
            xs = [torch.randn(m, k, dtype=torch.float16, device="cuda") for _ in range(copies)]
            y = torch.empty(m, n, dtype=torch.float16, device="cuda")
            q, s = reference.sym_quant_reference(xs[0])
            want = reference.w4a4_linear_reference(q, s, packed[0][0], packed[0][1], None, torch.float16)
            line = []
            for p in programs:
                def fn(i, p=p):
                    ops._quant_linear_into(xs[i], 1.0, packed[i][0], packed[i][1], None, "auto", y, prefetch_programs=p)
                fn(0)
                torch.cuda.synchronize()
                if not torch.equal(y, want):
                    print(f"  WRONG K={k} N={n} M={m} programs={p}", file=sys.stderr)
                    continue
                row = {"K": k, "N": n, "M": m, "programs": p, "chain_us": _timed_graph(fn, copies, reps),
                       "after_torch_us": _after_torch_op(fn, xs, copies, reps)}
                rows.append(row)
                line.append(f"{p}: {row['chain_us']:.2f} ({row['after_torch_us']:.2f})")
            print(f"K={k:6d} N={n:6d} M={m:2d}, prefetch programs: chained (after torch) µs: " + "; ".join(line),
                  flush=True)
        packed.clear()
        torch.cuda.empty_cache()
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shapes", help="KxN,... (default: the three Qwen2-7B shapes)")
    ap.add_argument("--ms", default="1,2,4,8,16")
    ap.add_argument("--programs", default="0,33,66,132,264", help="prefetching programs added to the quantizer")
    ap.add_argument("--reps", type=int, default=50)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    import torch
    if not torch.cuda.is_available():
        print("needs a CUDA GPU (sm_90: PDL and bulk prefetches)", file=sys.stderr)
        return 2
    shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")] if args.shapes else SHAPES
    print(torch.cuda.get_device_name(), torch.__version__)
    rows = run(shapes, [int(v) for v in args.ms.split(",")], [int(v) for v in args.programs.split(",")], args.reps)
    if args.json:
        Path(args.json).write_text(json.dumps({"device": torch.cuda.get_device_name(), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
