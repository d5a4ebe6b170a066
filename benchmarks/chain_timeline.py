"""When the blocks of the tensor-core GEMV on MMA planes start, leave their PDL wait and finish, chained
after the quantizer as ``quant_linear`` runs them, and alone.

Why: at 3-4 rows the GEMV alone is the fastest few-row GEMM, yet after the quantizer it loses about 1 µs
where the dp4a GEMV loses 0.5 (``benchmarks/README.md``). The kernel compiled with TIMELINE keeps, per
block of its latest launch, %globaltimer at its start, after its PDL wait and at its end, and its SM
(``mma_planes.timeline``). ``calls`` pairs (quantizer, GEMV) are captured into one graph and replayed;
the last GEMV's blocks are read back. Times are printed relative to the first block's start: whether
blocks start late (not resident while the quantizer runs), how long the wait holds them, and how long
they take after it; then the same GEMV launched alone (no PDL, no quantizer before it).

    python benchmarks/chain_timeline.py [--k 3584] [--n 4608] [--m 4] [--config 8,1,2,0] [--json FILE]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys


def _pct(values: list[float]) -> str:
    v = sorted(values)
    pick = [v[0], v[len(v) // 4], v[len(v) // 2], v[3 * len(v) // 4], v[-1]]
    return " / ".join(f"{x:6.2f}" for x in pick)


def run(k: int, n: int, m: int, cfg, calls: int) -> dict:
    import torch

    from graphsafe.quant import mma_planes, pack_int4_weights
    from graphsafe.quant.triton_gemv import pdl_available
    from graphsafe.quant.triton_kernels import mma_planes_width, sym_quant_into

    dev = torch.device("cuda")
    x = torch.randn(m, k, dtype=torch.float16, device=dev)
    copies = 8  # the weights rotate, as in benchmarks/quant.py, so they come from HBM
    packed = [pack_int4_weights(torch.randn(n, k, dtype=torch.float16, device=dev) * 0.05) for _ in range(copies)]
    planes = torch.empty(m, mma_planes_width(k), dtype=torch.int8, device=dev)
    xsum = torch.empty(m, dtype=torch.int32, device=dev)
    scale = torch.empty(m, 1, dtype=torch.float16, device=dev)
    y = torch.empty(m, n, dtype=torch.float16, device=dev)
    pdl = pdl_available(dev)
    blocks = -(-n // (16 * cfg.tiles))
    cfg = mma_planes.PlanesConfig(cfg.warps, cfg.tiles, cfg.ring, cfg.prefetch, blocks)
    types = (torch.float16, torch.float16, None, torch.float16)
    out = {"K": k, "N": n, "M": m, "config": cfg.__dict__, "pdl": pdl}

    def pair(i):
        sym_quant_into(x, 1.0, planes, scale, trigger=pdl, wait=pdl, xsum=xsum)
        mma_planes.planes_into(planes, xsum, scale, *packed[i % copies], None, y, cfg, after_quantizer=pdl)

    for mode in ("chained", "alone"):
        stream = torch.cuda.Stream()
        with torch.cuda.stream(stream):
            pair(0)
        torch.cuda.synchronize()
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g, stream=stream):
            for i in range(calls):
                if mode == "chained":
                    pair(i)
                else:
                    mma_planes.planes_into(planes, xsum, scale, *packed[i % copies], None, y, cfg)
        runs = []
        for _ in range(5):
            g.replay()
            t = mma_planes.timeline(cfg, m, types, pdl and mode == "chained", dev).cpu().tolist()
            t0 = min(r[0] for r in t)
            runs.append({"start": [(r[0] - t0) / 1e3 for r in t], "released": [(r[1] - t0) / 1e3 for r in t],
                         "end": [(r[2] - t0) / 1e3 for r in t], "sm": [r[3] for r in t]})
        stamps = sorted({v for r in t for v in r[:3]})
        tick = min((b - a for a, b in zip(stamps, stamps[1:]) if b > a), default=0)
        r = runs[-1]
        wait = [b - a for a, b in zip(r["start"], r["released"])]
        after = [b - a for a, b in zip(r["released"], r["end"])]
        per_sm = {}
        for sm in r["sm"]:
            per_sm[sm] = per_sm.get(sm, 0) + 1
        out[mode] = {"runs": runs, "timer_tick_ns": tick,
                     "span_us": [max(q["end"]) for q in runs]}
        print(f"{mode}, {k}->{n} M={m} {tuple(cfg.__dict__.values())[:4]}: {blocks} blocks on {len(per_sm)} SMs "
              f"(at most {max(per_sm.values())} on one), timer tick {tick} ns; first start to last end "
              f"{statistics.median(out[mode]['span_us']):.2f} µs (median of 5 replays)")
        print("  µs from the first block's start, min / 25% / median / 75% / max over blocks:")
        print(f"    start            {_pct(r['start'])}")
        print(f"    wait released    {_pct(r['released'])}")
        print(f"    end              {_pct(r['end'])}")
        print(f"    start -> release {_pct(wait)}")
        print(f"    release -> end   {_pct(after)}")
        late = sum(s > min(r["released"]) for s in r["start"])
        print(f"    blocks that started after the first release: {late} of {blocks}")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", type=int, default=3584)
    ap.add_argument("--n", type=int, default=4608)
    ap.add_argument("--m", type=int, default=4)
    ap.add_argument("--config", help="warps,tiles,ring,prefetch (default: planes_config's choice)")
    ap.add_argument("--calls", type=int, default=20, help="pairs captured into the graph")
    ap.add_argument("--json", help="write the timestamps to this file")
    args = ap.parse_args(argv)
    import torch
    if not torch.cuda.is_available():
        print("benchmarks/chain_timeline.py needs a CUDA GPU", file=sys.stderr)
        return 2
    from graphsafe.quant.mma_planes import PlanesConfig, planes_config
    if args.config:
        w, t, r, p = (int(v) for v in args.config.split(","))
        cfg = PlanesConfig(w, t, r, bool(p))
    else:
        cfg = planes_config(args.m, args.n, args.k // 8)
    data = run(args.k, args.n, args.m, cfg, args.calls)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(data, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
