"""When the programs of the quantizer and of the few-row GEMV start, leave their PDL wait and finish, as
``quant_linear`` chains them: the tensor-core GEMV on MMA planes (with the quantizer's row sums and
without), the dp4a GEMV, and the planes GEMV alone; with ``--crossed`` also each GEMV after the other's
quantizer, and with ``--launch`` the planes GEMV launched late or requesting no weights before its wait. Each
kind also gets its time per call (CUDA events around the replay).

Why: at 3-4 rows the planes GEMV alone is the fastest few-row GEMM, yet after the quantizer it loses about
1 µs where the dp4a GEMV loses 0.5 (``benchmarks/README.md``). Compiled with a timeline, each kernel keeps,
per program of its latest launch, %globaltimer at its start, after its PDL wait and at its end, and its SM
(``mma_planes.timeline``; ``timeline=`` of ``sym_quant_into`` and ``dp4a_into``). ``calls`` pairs are
captured into one graph and replayed; the last pair's programs are read back, in µs from the quantizer's
first start: when the GEMV's programs became resident, how long after the quantizer's end their wait
released them, and how long they took after it.

    python benchmarks/chain_timeline.py [--k 3584] [--n 4608] [--m 4] [--config 8,1,2,0] [--crossed] [--launch] [--balance] [--json FILE]

The dp4a GEMV runs with ``dp4a_config``'s choice, so ``--m`` is at most 4. H100 results (fifteenth
session) are in ``benchmarks/README.md`` and ``results/chain_timeline_h100.json``.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import replace


def _pct(values: list[float]) -> str:
    v = sorted(values)
    pick = [v[0], v[len(v) // 4], v[len(v) // 2], v[3 * len(v) // 4], v[-1]]
    return " / ".join(f"{x:6.2f}" for x in pick)


def _stamps(t, t0: int) -> dict:
    """µs from ``t0`` of each program's start, wait release and end, and its SM."""
    return {"start": [(r[0] - t0) / 1e3 for r in t], "released": [(r[1] - t0) / 1e3 for r in t],
            "end": [(r[2] - t0) / 1e3 for r in t], "sm": [r[3] for r in t]}


def _report(name: str, r: dict) -> None:
    print(f"  {name}: {len(r['start'])} programs on {len(set(r['sm']))} SMs; µs, min / 25% / median / 75% / max")
    print(f"    start            {_pct(r['start'])}")
    print(f"    wait released    {_pct(r['released'])}")
    print(f"    end              {_pct(r['end'])}")
    print(f"    release -> end   {_pct([b - a for a, b in zip(r['released'], r['end'])])}")


CROSSED = ("planes GEMV after the packing quantizer", "dp4a GEMV after the planes quantizer")
# why a GEMV already resident is released later after the quantizer's end than one launched at it: the
# GEMV launched only when the quantizer's programs exit (no early trigger), or requesting no weights before
# its wait (PlanesConfig.early False: the same ring, its first weights requested after the wait; the weight
# scales and bias still before it)
LAUNCH = ("planes without sums, launched at the quantizer's end", "planes without sums, no weights before the wait")
BALANCED = "planes without sums, rows shared out evenly, chained"  # PlanesConfig.balance: as many blocks as fit


def run(k: int, n: int, m: int, cfg, calls: int, crossed: bool = False, launch: bool = False,
        balance: bool = False) -> dict:
    """Per kind (the planes GEMV chained after its quantizer, with sums and without, the dp4a GEMV chained
    after the packing quantizer, the planes GEMV alone), the last call's timestamps of the quantizer's and the GEMV's programs,
    relative to the quantizer's first start (chained) or the GEMV's (alone). ``crossed`` adds each GEMV
    after the other's quantizer (its operands stale, its time real), to tell which kernel costs the chain;
    ``launch`` the LAUNCH kinds, ``balance`` the BALANCED kind."""
    import torch

    from graphsafe.quant import mma_planes, pack_int4_weights
    from graphsafe.quant.triton_gemv import dp4a_config, dp4a_into, pdl_available
    from graphsafe.quant.triton_kernels import mma_planes_width, sym_quant_into

    dev = torch.device("cuda")
    x = torch.randn(m, k, dtype=torch.float16, device=dev)
    copies = 8  # the weights rotate, as in benchmarks/quant.py, so they come from HBM
    packed = [pack_int4_weights(torch.randn(n, k, dtype=torch.float16, device=dev) * 0.05) for _ in range(copies)]
    planes = torch.empty(m, mma_planes_width(k), dtype=torch.int8, device=dev)
    xsum = torch.empty(m, dtype=torch.int32, device=dev)
    q = torch.empty(m, k // 2, dtype=torch.uint8, device=dev)
    scale = torch.empty(m, 1, dtype=torch.float16, device=dev)
    y = torch.empty(m, n, dtype=torch.float16, device=dev)
    pdl = pdl_available(dev)
    blocks = mma_planes.tile_blocks(n, cfg)
    cfg = mma_planes.PlanesConfig(cfg.warps, cfg.tiles, cfg.ring, cfg.prefetch, blocks)
    bare_cfg = mma_planes.PlanesConfig(cfg.warps, cfg.tiles, cfg.ring, cfg.prefetch, blocks, xsum=False)
    bare = torch.empty_like(planes)  # planes without sums (sym_quant_into(..., mma_planes=True), no xsum)
    late_cfg = mma_planes.PlanesConfig(cfg.warps, cfg.tiles, cfg.ring, cfg.prefetch, blocks, xsum=False, early=False)

    types = (torch.float16, torch.float16, None, torch.float16)
    bal_cfg = replace(bare_cfg, balance=2)
    if balance:  # as many blocks as fit at once: the timeline keeps every one of them
        bal_cfg = replace(bal_cfg, timeline=mma_planes.plan(m, n, bal_cfg, types, pdl, dev)[1])

    def planes_cfg(kind):
        if kind == BALANCED:
            return bal_cfg
        return late_cfg if "no weights before" in kind else bare_cfg if "without sums" in kind else cfg

    dcfg = dp4a_config(m, n, k // 2)
    q_t = torch.zeros(m, 4, dtype=torch.int64, device=dev)  # the quantizer: one program a row, in a PDL chain
    d_t = torch.zeros(-(-n // dcfg.bn), 4, dtype=torch.int64, device=dev)
    out = {"K": k, "N": n, "M": m, "config": cfg.__dict__, "dp4a_config": dcfg.__dict__, "pdl": pdl}

    def call(kind, i):
        w = packed[i % copies]
        if kind == "planes chained":
            sym_quant_into(x, 1.0, planes, scale, trigger=pdl, wait=pdl, xsum=xsum, timeline=q_t)
            mma_planes.planes_into(planes, xsum, scale, *w, None, y, cfg, after_quantizer=pdl)
        elif kind == "planes without sums chained":
            sym_quant_into(x, 1.0, bare, scale, trigger=pdl, wait=pdl, timeline=q_t, mma_planes=True)
            mma_planes.planes_into(bare, None, scale, *w, None, y, bare_cfg, after_quantizer=pdl)
        elif kind == BALANCED:
            sym_quant_into(x, 1.0, bare, scale, trigger=pdl, wait=pdl, timeline=q_t, mma_planes=True)
            mma_planes.planes_into(bare, None, scale, *w, None, y, bal_cfg, after_quantizer=pdl)
        elif kind in LAUNCH:
            sym_quant_into(x, 1.0, bare, scale, trigger=pdl and "end" not in kind, wait=pdl, timeline=q_t,
                           mma_planes=True)
            mma_planes.planes_into(bare, None, scale, *w, None, y, planes_cfg(kind), after_quantizer=pdl)
        elif kind == "dp4a chained":
            sym_quant_into(x, 1.0, q, scale, trigger=pdl, wait=pdl, timeline=q_t)
            dp4a_into(q, scale, *w, None, y, dcfg, after_quantizer=pdl, timeline=d_t)
        elif kind == "planes GEMV after the packing quantizer":  # crossed: which kernel costs the chain
            sym_quant_into(x, 1.0, q, scale, trigger=pdl, wait=pdl, timeline=q_t)
            mma_planes.planes_into(planes, xsum, scale, *w, None, y, cfg, after_quantizer=pdl)
        elif kind == "dp4a GEMV after the planes quantizer":
            sym_quant_into(x, 1.0, planes, scale, trigger=pdl, wait=pdl, xsum=xsum, timeline=q_t)
            dp4a_into(q, scale, *w, None, y, dcfg, after_quantizer=pdl, timeline=d_t)
        else:
            mma_planes.planes_into(planes, xsum, scale, *w, None, y, cfg)

    sym_quant_into(x, 1.0, planes, scale, xsum=xsum)
    kinds = ("planes chained", "planes without sums chained", "dp4a chained", "planes alone")
    kinds += (CROSSED if crossed else ()) + (LAUNCH if launch else ()) + ((BALANCED,) if balance else ())
    sym_quant_into(x, 1.0, q, scale)
    for kind in kinds:
        stream = torch.cuda.Stream()
        with torch.cuda.stream(stream):
            call(kind, 0)
        torch.cuda.synchronize()
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g, stream=stream):
            for i in range(calls):
                call(kind, i)
        runs, per_call = [], []
        for _ in range(5):
            ev = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            ev[0].record()
            g.replay()
            ev[1].record()
            torch.cuda.synchronize()
            per_call.append(ev[0].elapsed_time(ev[1]) * 1e3 / calls)
            if kind.startswith("dp4a"):
                gemv = d_t.cpu().tolist()
            else:
                gemv = mma_planes.timeline(planes_cfg(kind), m, types, pdl and kind != "planes alone",
                                           dev, n).cpu().tolist()
            quant = q_t.cpu().tolist() if kind != "planes alone" else []
            t0 = min(r[0] for r in quant or gemv)
            runs.append({"quantizer": _stamps(quant, t0), "gemv": _stamps(gemv, t0),
                         "span_us": (max(r[2] for r in gemv) - t0) / 1e3})
        stamps = sorted({v for r in gemv + quant for v in r[:3]})
        tick = min((b - a for a, b in zip(stamps, stamps[1:]) if b > a), default=0)
        out[kind] = {"runs": runs, "timer_tick_ns": tick, "per_call_us": per_call}
        last = runs[-1]
        print(f"{kind}, {k}->{n} M={m}: from the {'quantizer' if quant else 'GEMV'}'s first start to the GEMV's last "
              f"end {statistics.median(r['span_us'] for r in runs):.2f} µs (median of 5 replays of {calls} calls; "
              f"timer tick {tick} ns); {statistics.median(per_call):.2f} µs a call (CUDA events, median)")
        if quant:
            _report("quantizer", last["quantizer"])
        _report("GEMV", last["gemv"])
        if quant:
            late = sum(v > max(last["quantizer"]["end"]) for v in last["gemv"]["start"])
            print(f"    GEMV programs that started after the quantizer's end: {late} of {len(gemv)}")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", type=int, default=3584)
    ap.add_argument("--n", type=int, default=4608)
    ap.add_argument("--m", type=int, default=4)
    ap.add_argument("--config", help="warps,tiles,ring,prefetch (default: planes_config's choice)")
    ap.add_argument("--calls", type=int, default=20, help="pairs captured into the graph")
    ap.add_argument("--json", help="write the timestamps to this file")
    ap.add_argument("--crossed", action="store_true", help="also each GEMV after the other GEMV's quantizer")
    ap.add_argument("--launch", action="store_true",
                    help="also the planes GEMV launched at the quantizer's end, and with no weights requested before its wait")
    ap.add_argument("--balance", action="store_true",
                    help="also the planes GEMV without sums with its rows shared out over as many blocks as fit")
    args = ap.parse_args(argv)
    import torch
    if not torch.cuda.is_available():
        print("benchmarks/chain_timeline.py needs a CUDA GPU", file=sys.stderr)
        return 2
    from graphsafe.quant.mma_planes import PlanesConfig, planes_config
    from graphsafe.quant.triton_gemv import MAX_ROWS, pdl_available
    if not 1 <= args.m <= MAX_ROWS or not pdl_available(torch.device("cuda")):
        print(f"benchmarks/chain_timeline.py times PDL chains (Hopper or newer) of 1-{MAX_ROWS} rows", file=sys.stderr)
        return 2
    if args.config:
        w, t, r, p = (int(v) for v in args.config.split(","))
        cfg = PlanesConfig(w, t, r, bool(p))
    else:
        cfg = planes_config(args.m, args.n, args.k // 8)
    data = run(args.k, args.n, args.m, cfg, args.calls, args.crossed, args.launch, args.balance)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(data, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
