"""The floor under any few-row W4A4 GEMM: a kernel that only reads the packed weights, timed like them.

A few-row GEMM streams its weights once; no kernel that reads the same bytes can take less time than one
that does nothing else. This times a plain streaming read (Triton: each program loads a contiguous block
of int32 words and writes one sum) of the packed weight bytes of each shape, with the harness of
``benchmarks/quant.py`` (50 calls in a row in one CUDA graph, buffers rotating past the L2 cache), over a
few block sizes and warp counts, and an empty kernel (what one launch in a graph costs):

    python benchmarks/read_floor.py [--json FILE]
"""
from __future__ import annotations

import argparse
import sys

import quant as bench  # benchmarks/quant.py: the timing harness and the shapes


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="write the numbers to this file")
    ap.add_argument("--reps", type=int, default=50)
    args = ap.parse_args(argv)
    import torch
    if not torch.cuda.is_available():
        print("benchmarks/read_floor.py needs a CUDA GPU", file=sys.stderr)
        return 2
    import triton
    import triton.language as tl

    @triton.jit
    def read(p, out, n, BLOCK: tl.constexpr):
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        v = tl.load(p + offs, mask=offs < n, other=0, cache_modifier=".cg")
        tl.store(out + tl.program_id(0), tl.sum(v ^ (v >> 3), axis=0))

    out = torch.empty(1 << 20, dtype=torch.int32, device="cuda")
    rows = []
    for nbytes in sorted({k * n // 2 for k, n in bench.SHAPES}):
        n = nbytes // 4
        copies = bench._copies(nbytes)
        bufs = [torch.randint(0, 1 << 30, (n,), dtype=torch.int32, device="cuda") for _ in range(copies)]
        for block in (1024, 2048, 4096, 8192):
            for warps in (4, 8, 16):
                us = bench._timed_graph(lambda i: read[(triton.cdiv(n, block),)](bufs[i], out, n, BLOCK=block,
                                                                                 num_warps=warps), copies, args.reps)
                rows.append({"bytes": nbytes, "block": block, "warps": warps, "us": us})
        best = min((r for r in rows if r["bytes"] == nbytes), key=lambda r: r["us"])
        print(f"read {nbytes / 1e6:6.2f} MB: {best['us']:.2f} us ({nbytes / best['us'] / 1e6:.2f} TB/s), "
              f"{best['block']} words x {best['warps']} warps per program", flush=True)
        bufs.clear()
    empty = bench._timed_graph(lambda i: read[(1,)](out, out, 0, BLOCK=1024, num_warps=4), 2, args.reps)
    print(f"empty kernel: {empty:.2f} us per launch")
    bench._save({"device": torch.cuda.get_device_name(), "floor": rows, "empty_us": empty}, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
