"""Speed of graphsafe.quant on the Qwen2-7B linear shapes, timed inside CUDA graphs.

Each timed op is captured R times back to back into one graph between two external CUDA events (as a
model's layers follow each other in a captured decode step); the table reports the median over 10
replays of the time per call. Inputs and weights rotate over enough
copies to exceed the L2 cache, so weights come from HBM as in a real model. Roofline: the fewest bytes
(inputs read once, outputs written once) over the copy bandwidth measured on the same GPU.

    python benchmarks/quant.py                  # the table (and --json FILE for the raw numbers)
    python benchmarks/quant.py --sweep          # time quantizer and GEMM launch configurations
    python benchmarks/quant.py --sweep-quant    # time quantizer launch configurations only (--ms: row counts)
    python benchmarks/quant.py --sweep-few      # time few-row GEMM configurations (--kinds picks which)
    python benchmarks/quant.py --plot-from FILE --plot out.png   # plot saved numbers (needs matplotlib)

--ms and --shapes (KxN, comma-separated) narrow any of them, e.g. --shapes 3584x4608 --ms 2048.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from dataclasses import replace

SHAPES = [(3584, 4608), (3584, 18944), (18944, 3584)]  # (K in, N out)
MS = [1, 2, 4, 8, 16, 512, 2048, 8192]
L2_ROTATE_BYTES = 160 << 20


def _capture(fn_for, copies: int, reps: int):
    """``reps`` calls of ``fn_for(i)`` (the op on input set i % copies) captured back to back into one graph
    between two external CUDA events, after a warm-up; returns ``replay()``, which replays the graph once
    and gives µs per call."""
    import torch
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        for i in range(min(copies, 3)):  # warm-up: compilation, module loads, workspaces
            fn_for(i)
    torch.cuda.synchronize()
    start, end = (torch.cuda.Event(enable_timing=True, external=True) for _ in range(2))
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g, stream=stream):
        start.record()
        for i in range(reps):
            fn_for(i % copies)
        end.record()
    g.replay()  # the first replay uploads the graph
    torch.cuda.synchronize()

    def replay() -> float:
        g.replay()
        torch.cuda.synchronize()
        return start.elapsed_time(end) * 1e3 / reps
    return replay


def _timed_graph(fn_for, copies: int, reps: int) -> float:
    """Median µs per call of ``fn_for(i)`` (the op on input set i % copies): ``reps`` calls captured
    back to back into one graph between two external CUDA events, the graph replayed 10 times."""
    replay = _capture(fn_for, copies, reps)
    return statistics.median(replay() for _ in range(10))


def _after_torch_op(op, x, copies: int, reps: int) -> float:
    """µs of ``op(i)`` right after a torch kernel writing its input ``x`` (``x.mul_(1.0)``), as a layer
    after a norm runs it: time (x.mul_; op) minus time (x.mul_). ``x``: a tensor, or a list indexed by i."""
    def touch(i):
        (x[i] if isinstance(x, list) else x).mul_(1.0)
    return _timed_graph(lambda i: (touch(i), op(i)), copies, reps) - _timed_graph(touch, copies, reps)


def copy_bandwidth() -> float:
    """Bytes/s of a large device-to-device copy (read + write)."""
    import torch

    a = torch.empty(1 << 30, dtype=torch.uint8, device="cuda")
    b = torch.empty_like(a)
    us = _timed_graph(lambda i: b.copy_(a), 1, 20)
    return 2 * a.numel() / (us * 1e-6)


def _copies(bytes_per_set: int) -> int:
    return max(2, min(16, -(-L2_ROTATE_BYTES // max(bytes_per_set, 1))))


def _weights(k: int, n: int, copies: int) -> list:
    """``copies`` sets of packed (n, k) weights and their scales, rotated through so that they come from HBM."""
    import torch

    from graphsafe.quant import pack_int4_weights
    return [pack_int4_weights(torch.randn(n, k, dtype=torch.float16, device="cuda") * 0.05) for _ in range(copies)]


def bench_shape(k: int, n: int, m: int, bw: float, reps: int) -> dict:
    import torch

    from graphsafe.quant import quant_linear, sym_quant, w4a4_linear
    from graphsafe.quant.mma_planes import planes_config, planes_into
    from graphsafe.quant.ops import SMALL_MAX_M, _planes
    from graphsafe.quant.triton_kernels import mma_planes_width, sym_quant_into
    from graphsafe.quant.triton_persist import many_rows_into

    w_bytes = n * k * 2
    copies = _copies(w_bytes // 4 + m * k * 2)
    xs = [torch.randn(m, k, dtype=torch.float16, device="cuda") for _ in range(copies)]
    packed = _weights(k, n, copies)
    y_buf = torch.empty(m, n, dtype=torch.float16, device="cuda")
    qs = [sym_quant(x) for x in xs]

    def w4a4(i):  # what W4A4Linear runs: the quantizer, then the GEMM (PDL-linked; beyond SMALL_MAX_M rows on sm_90)
        quant_linear(xs[i], packed[i][0], packed[i][1], out=y_buf)

    mma_planes = m <= SMALL_MAX_M and _planes(m, packed[0][0], "auto")  # the quantizer writes the MMA's layout
    if m > SMALL_MAX_M:  # quant_linear's GEMM there reads INT8 planes written by the quantizer
        planes = [torch.empty(2, m, (k + 1) // 2, dtype=torch.int8, device="cuda") for _ in range(copies)]
        for x, p, (_, s) in zip(xs, planes, qs):
            sym_quant_into(x, 1.0, p, s)
    elif mma_planes:  # with the row sums or without, as planes_config (and so quant_linear) has them
        cfg = planes_config(m, n, k // 8)
        planes = [(torch.empty(m, mma_planes_width(k), dtype=torch.int8, device="cuda"),
                   torch.empty(m, dtype=torch.int32, device="cuda") if cfg.xsum else None) for _ in range(copies)]
        for x, (p, xsum), (_, s) in zip(xs, planes, qs):
            sym_quant_into(x, 1.0, p, s, xsum=xsum, mma_planes=True)

    def gemm_only(i):  # the GEMM quant_linear runs, alone
        if m > SMALL_MAX_M:
            many_rows_into(planes[i], qs[i][1], packed[i][0], packed[i][1], None, y_buf)
        elif mma_planes:
            planes_into(*planes[i], qs[i][1], packed[i][0], packed[i][1], None, y_buf, cfg)
        else:
            w4a4_linear(qs[i][0], qs[i][1], packed[i][0], packed[i][1], out=y_buf)

    row = {"K": k, "N": n, "M": m, "w4a4_us": _timed_graph(w4a4, copies, reps),
           "gemm_us": _timed_graph(gemm_only, copies, reps)}
    if m <= SMALL_MAX_M:  # consecutive quant_linear calls overlap (PDL); after a torch kernel writing x they cannot
        row["w4a4_after_torch_us"] = _after_torch_op(w4a4, xs, copies, reps)
    packed.clear()
    planes = None
    f_copies = _copies(w_bytes + m * k * 2)
    ws = [torch.randn(n, k, dtype=torch.float16, device="cuda") * 0.05 for _ in range(f_copies)]
    xs16 = xs[:f_copies] if len(xs) >= f_copies else [xs[i % len(xs)] for i in range(f_copies)]
    row["fp16_us"] = _timed_graph(lambda i: torch.matmul(xs16[i], ws[i].t(), out=y_buf), f_copies, reps)
    ws.clear()
    min_bytes = m * k * 2 + n * ((k + 1) // 2) + 2 * n + m * n * 2
    row["roofline_us"] = min_bytes / bw * 1e6
    row["speedup"] = row["fp16_us"] / row["w4a4_us"]
    row["tflops_w4a4"] = 2 * m * n * k / (row["w4a4_us"] * 1e-6) / 1e12
    torch.cuda.empty_cache()
    return row


def bench_quant(n: int, m: int, backend: str, reps: int) -> dict:
    import torch

    from graphsafe.quant import sym_quant

    copies = _copies(m * n * 2)
    xs = [torch.randn(m, n, dtype=torch.float16, device="cuda") for _ in range(copies)]
    q = torch.empty(m, (n + 1) // 2, dtype=torch.uint8, device="cuda")
    s = torch.empty(m, 1, dtype=torch.float16, device="cuda")
    us = _timed_graph(lambda i: sym_quant(xs[i], out=q, scale_out=s, backend=backend), copies, reps)
    moved = m * n * 2 + q.numel() + 2 * m
    return {"N": n, "M": m, "backend": backend, "us": us, "TB_s": moved / (us * 1e-6) / 1e12}


def sweep_quant(reps: int, ms=(1, 16, 8192)) -> list[dict]:
    """Time quantizer launch configurations (triton_kernels.QuantConfig) for quant_config: the tilings of
    the row, warps, and for up to 64 rows the row split over programs of ``part`` columns."""
    import torch

    from graphsafe.quant.triton_kernels import QuantConfig, quant_config, sym_quant_into

    out = []
    for n in (3584, 18944):
        for m in ms:
            xs = [torch.randn(m, n, dtype=torch.float16, device="cuda") for _ in range(_copies(m * n * 2))]
            q = torch.empty(m, (n + 1) // 2, dtype=torch.uint8, device="cuda")
            s = torch.empty(m, 1, dtype=torch.float16, device="cuda")
            tiles = quant_config(n, m)
            configs = [QuantConfig(tiles.block, tiles.block_b, False, w) for w in (4, 8, 16, 32)]
            configs += [QuantConfig(b, 0, True, w) for b in (2048, 4096) for w in (4, 8)]
            if m <= 64:
                configs += [QuantConfig(tiles.block, tiles.block_b, False, w, p) for p in (1024, 2048, 4096, 8192)
                            for w in (4, 8, 16) if p < n]
            for cfg in configs:
                us = _timed_graph(lambda i: sym_quant_into(xs[i], 1.0, q, s, cfg), len(xs), reps)
                out.append({"N": n, "M": m, "config": cfg.__dict__, "us": us,
                            "TB_s": (m * n * 2 + q.numel() + 2 * m) / (us * 1e-6) / 1e12})
            best = min((r for r in out if (r["N"], r["M"]) == (n, m)), key=lambda r: r["us"])
            print(f"quant N={n:6d} M={m:5d} best {best['us']:8.2f} us {best['TB_s']:.2f} TB/s {best['config']}",
                  flush=True)
            xs.clear()
    return out


# many-row GEMM configurations (bn, bm, bkb, group_n, num_warps, num_stages): small tiles first (three or
# more programs per SM), then the larger ones
BIG_GRID = ([(bn, bm, bkb, g, 4, s) for bn, bm in ((64, 128), (128, 64), (64, 64)) for bkb in (64, 128)
             for g in (4, 8) for s in (3, 4, 5)]
            + [(bn, bm, bkb, 8, w, s) for bn, bm in ((128, 128), (128, 256), (256, 128), (64, 256))
               for bkb in (64, 128) for w in (4, 8) for s in (3, 4)])


# the persistent GEMM's (triton_persist.PersistConfig) pieces for its last round, and pipeline depths
PERSIST_GRID = [dict(split_n=sn, split_m=sm) for sn, sm in ((1, 1), (2, 1), (1, 2), (2, 2), (1, 4), (2, 4))] + [
    dict(num_stages=3), dict(num_stages=5), dict(per_sm=1, num_stages=6), dict(group_n=16)]


def sweep(reps: int, ms=(3, 4, 16, 512, 2048, 8192)) -> list[dict]:
    """Time the swapped-operand GEMMs' launch configurations (triton_swap.SmallConfig for M <= 16 on
    packed codes, BigConfig beyond on INT8 planes) for small_config and big_config, and beyond 16 rows
    the persistent GEMM's (triton_persist.PersistConfig, "kind": "persist"), each checked against the
    per-tile kernel's output first."""
    import torch

    from graphsafe.quant import pack_int4_weights, sym_quant
    from graphsafe.quant.triton_kernels import sym_quant_into
    from graphsafe.quant.triton_persist import PersistConfig, persist_into
    from graphsafe.quant.triton_swap import BigConfig, SmallConfig, big_into, small_into

    small = [SmallConfig(bn, bkb, w, s) for bn in (32, 64, 128) for bkb in (128, 256, 512)
             for w in ((4,) if bn < 128 else (4, 8)) for s in (3, 4, 6)]
    big = [BigConfig(*c) for c in BIG_GRID] + [PersistConfig(**c) for c in PERSIST_GRID]
    out = []
    for k, n in SHAPES:
        for m in ms:
            configs = small if m <= 16 else big
            copies = _copies(n * k // 2)
            packed = [pack_int4_weights(torch.randn(n, k, dtype=torch.float16, device="cuda")) for _ in range(copies)]
            x = torch.randn(m, k, dtype=torch.float16, device="cuda")
            q, s = sym_quant(x)
            planes = torch.empty(2, m, (k + 1) // 2, dtype=torch.int8, device="cuda")
            sym_quant_into(x, 1.0, planes, s)
            y = torch.empty(m, n, dtype=torch.float16, device="cuda")

            def run(i, cfg):
                if m <= 16:
                    small_into(q, s, packed[i][0], packed[i][1], None, y, cfg)
                elif isinstance(cfg, PersistConfig):
                    persist_into(planes, s, packed[i][0], packed[i][1], None, y, cfg)
                else:
                    big_into(planes, s, packed[i][0], packed[i][1], None, y, cfg)
            if m > 16:
                expected = torch.empty_like(y)
                big_into(planes, s, packed[0][0], packed[0][1], None, expected)
            for cfg in configs:
                try:
                    if isinstance(cfg, PersistConfig):
                        y.fill_(float("nan"))
                        run(0, cfg)
                        if not torch.equal(y, expected):
                            print(f"  WRONG {cfg}", file=sys.stderr)
                            continue
                    us = _timed_graph(lambda i: run(i, cfg), copies, reps)
                except Exception as e:  # noqa: BLE001 - a config that does not compile (shared memory)
                    print(f"  skip {cfg}: {type(e).__name__}: {str(e)[:80]}", file=sys.stderr)
                    continue
                out.append({"K": k, "N": n, "M": m, "config": cfg.__dict__, "us": us,
                            "kind": "persist" if isinstance(cfg, PersistConfig) else "per-tile"})
                print(f"  K={k} N={n} M={m} {us:8.2f} us {tuple(cfg.__dict__.values())}", flush=True)
            best = min((r for r in out if (r["K"], r["N"], r["M"]) == (k, n, m)), key=lambda r: r["us"])
            print(f"K={k:6d} N={n:6d} M={m:5d} best {best['us']:8.1f} us {best['config']}", flush=True)
            packed.clear()
            torch.cuda.empty_cache()
    return out


FEW_KINDS = ("mma", "dp4a", "small", "planes")
# tensor-core GEMV configurations: the shared-memory ring (cp.async) at several depths, and the register ring
MMA_GRID = ([(w, t, u, st, 1, True) for w, t, u, st in
             [(8, 1, 1, 3), (8, 1, 2, 3), (8, 1, 1, 6), (8, 1, 2, 4), (4, 1, 1, 4), (4, 1, 1, 6), (4, 1, 2, 3),
              (4, 1, 2, 4), (2, 1, 1, 6), (2, 1, 2, 4), (2, 2, 1, 4), (2, 1, 4, 3), (1, 1, 2, 4), (1, 1, 4, 3),
              (1, 2, 2, 3), (1, 2, 1, 6)]]
            + [(4, 1, 1, 4, 2, True), (8, 1, 1, 3, 2, True), (2, 1, 2, 4, 2, True)]
            + [(8, 1, 2, 2, 1, False), (4, 1, 2, 3, 1, False), (8, 1, 4, 2, 1, False), (8, 1, 1, 5, 1, False),
               (8, 1, 2, 3, 1, False), (4, 1, 2, 4, 1, False)])

# the tensor-core GEMV on MMA planes: (warps, tiles, ring, L2 prefetch), with the quantizer's row sums and
# without (PlanesConfig.xsum)
PLANES_GRID = [(8, 1, 2, False), (8, 1, 2, True), (8, 1, 3, False), (8, 1, 3, True), (4, 1, 3, False),
               (4, 1, 3, True), (8, 2, 2, False), (8, 2, 2, True), (8, 2, 3, True), (4, 2, 3, True), (8, 1, 4, False)]
PLANES_BARE = [c + (0, False) for c in PLANES_GRID[:6] + [(12, 1, 2, False), (10, 1, 2, False)]]
# (12 and 10 warps: more of a block's K requested before the PDL wait, 3 blocks an SM without sums)


def sweep_few(reps: int, ms=(1, 2, 3, 4, 8, 16), kinds=FEW_KINDS) -> list[dict]:
    """Time few-row GEMM launch configurations, alone ("gemm_us") and after the quantizer as
    quant_linear chains them with PDL ("chain_us"; and "chain_nowait_us" with the quantizer launched
    without PDL): "mma", the tensor-core GEMV (mma_gemv.MmaConfig, for mma_config); "dp4a", the dp4a
    GEMV (triton_gemv.Dp4aConfig, up to 4 rows, for dp4a_config; "dp4a-default" times only
    dp4a_config's choice); "small", the swapped Triton GEMM (small_config) from 3 rows; "mma-default",
    only mma_config's choice from 3 rows; "planes", the tensor-core GEMV on MMA planes (mma_planes.PlanesConfig;
    "planes-default": planes_config's choice; "planes-sums": that choice with the row sums; "planes-head":
    without sums, 25 or 50 % of each weight row prefetched before the wait, the rest after it; "planes-bare": on
    planes without sums), chained after the quantizer writing them. With "foreign" also "foreign_us": after a torch kernel writing
    x, as a layer after a norm runs it. Each output is checked against the reference first."""
    import torch

    from graphsafe.quant import reference, sym_quant
    from graphsafe.quant.mma_gemv import MmaConfig, mma_config, mma_into
    from graphsafe.quant.mma_planes import PlanesConfig, chain_into, planes_config, planes_into
    from graphsafe.quant.triton_gemv import Dp4aConfig, dp4a_config, dp4a_into, pdl_available
    from graphsafe.quant.triton_kernels import mma_planes_width, sym_quant_into
    from graphsafe.quant.triton_swap import small_config, small_into

    mma_grid = [MmaConfig(*c) for c in MMA_GRID]

    shapes = [(bn, bw, w) for bn in (2, 4, 8) for bw in (128, 256, 512) for w in (1, 2, 4)
              if 16 <= bn * bw // (32 * w) <= 64]  # words per thread and step
    out = []
    for k, n in SHAPES:
        copies = _copies(n * k // 2)
        packed = _weights(k, n, copies)
        for m in ms:
            x = torch.randn(m, k, dtype=torch.float16, device="cuda")
            q, s = sym_quant(x)
            y = torch.empty(m, n, dtype=torch.float16, device="cuda")
            ref = reference.w4a4_linear_reference(q, s, packed[0][0], packed[0][1], None, torch.float16)
            pdl = pdl_available(x.device)
            cands = []
            if "dp4a" in kinds:
                cands += [("dp4a", Dp4aConfig(bn, bw, w, pf)) for bn, bw, w in shapes for pf in (0, 16)
                          if m <= 4 and m * bn * bw // (32 * w) <= 128]  # accumulator registers per thread
            elif "dp4a-default" in kinds and m <= 4:
                cands.append(("dp4a", dp4a_config(m, n, k // 2)))
            if "small" in kinds and m >= 3:
                cands.append(("small", small_config(m, n, k // 2)))
            if "mma" in kinds:
                cands += [("mma", c) for c in mma_grid if c.ring_bytes(m) <= 100 * 1024]
            if "mma-default" in kinds and m >= 3:
                cands.append(("mma", mma_config(m, n, k // 8)))
            if "planes" in kinds:
                cands += [("planes", PlanesConfig(*c)) for c in PLANES_GRID]
            elif "planes-default" in kinds:
                cands.append(("planes", planes_config(m, n, k // 8)))
            if "planes-sums" in kinds:  # planes_config's choice, with the row sums
                cands.append(("planes", replace(planes_config(m, n, k // 8), xsum=True)))
            if "planes-bare" in kinds:
                cands += [("planes", PlanesConfig(*c)) for c in PLANES_BARE]
            if "planes-head" in kinds:  # without sums, part of each weight row prefetched before the wait
                cands += [("planes", PlanesConfig(8, 1, r, True, xsum=False, head=h)) for r in (2, 3) for h in (25, 50)]
            planes = torch.empty(m, mma_planes_width(k), dtype=torch.int8, device="cuda")
            xsum = torch.empty(m, dtype=torch.int32, device="cuda")
            sym_quant_into(x, 1.0, planes, s, xsum=xsum)
            bare = torch.empty_like(planes)  # planes without sums
            sym_quant_into(x, 1.0, bare, s, mma_planes=True)
            for kind, cfg in cands:
                gemm = {"dp4a": dp4a_into, "small": small_into, "mma": mma_into, "planes": None}[kind]

                pl, xs = (planes, xsum) if kind != "planes" or cfg.xsum else (bare, None)

                def alone(i, cfg=cfg, gemm=gemm, pl=pl, xs=xs):
                    if gemm is None:
                        planes_into(pl, xs, s, packed[i][0], packed[i][1], None, y, cfg)
                    else:
                        gemm(q, s, packed[i][0], packed[i][1], None, y, cfg)

                def chain(i, cfg=cfg, gemm=gemm, wait=True, pl=pl, xs=xs):
                    if gemm is None:  # quant_linear's GEMV on MMA planes, after their quantizer
                        return chain_into(x, 1.0, pl, xs, s, packed[i][0], packed[i][1], None, y, cfg, pdl)
                    sym_quant_into(x, 1.0, q, s, trigger=pdl, wait=wait and pdl)
                    gemm(q, s, packed[i][0], packed[i][1], None, y, cfg, after_quantizer=pdl)
                try:
                    chain(0)
                    torch.cuda.synchronize()
                    if not torch.equal(y, ref):
                        print(f"  WRONG {kind} {cfg}", file=sys.stderr)
                        continue
                    row = {"K": k, "N": n, "M": m, "kind": kind, "config": cfg.__dict__,
                           "gemm_us": _timed_graph(alone, copies, reps), "chain_us": _timed_graph(chain, copies, reps)}
                    if kind not in ("mma", "planes"):
                        row["chain_nowait_us"] = _timed_graph(lambda i: chain(i, wait=False), copies, reps)
                    if "foreign" in kinds:
                        row["foreign_us"] = _after_torch_op(chain, x, copies, reps)
                except Exception as e:  # noqa: BLE001 - a config that does not compile (registers)
                    print(f"  skip {kind} {cfg}: {type(e).__name__}: {str(e)[:120]}", file=sys.stderr)
                    continue
                out.append(row)
            best = sorted((r for r in out if (r["K"], r["N"], r["M"]) == (k, n, m)), key=lambda r: r["chain_us"])[:5]
            print(f"few K={k:6d} N={n:6d} M={m}: "
                  + "; ".join(f"{r['chain_us']:.2f}/{r['gemm_us']:.2f}"
                              + (f"/after torch {r['foreign_us']:.2f}" if "foreign_us" in r else "")
                              + f" us {r['kind']} {tuple(r['config'].values())}" for r in best), flush=True)
        packed.clear()
        torch.cuda.empty_cache()
    return out


def _table(rows: list[dict], quant_rows: list[dict], bw: float) -> str:
    lines = [f"copy bandwidth: {bw / 1e12:.2f} TB/s", "",
             "| K→N | M | fp16 cuBLAS µs | W4A4 µs | W4A4 after a torch op µs | GEMM only µs | roofline µs "
             "| speed-up | W4A4 TFLOP/s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        after = f"{r['w4a4_after_torch_us']:.1f}" if "w4a4_after_torch_us" in r else "–"
        lines.append(f"| {r['K']}→{r['N']} | {r['M']} | {r['fp16_us']:.1f} | {r['w4a4_us']:.1f} | {after} "
                     f"| {r['gemm_us']:.1f} | {r['roofline_us']:.1f} | {r['speedup']:.2f}× | {r['tflops_w4a4']:.0f} |")
    lines += ["", "| sym_quant N | M | backend | µs | TB/s |", "|---|---|---|---|---|"]
    for r in quant_rows:
        lines.append(f"| {r['N']} | {r['M']} | {r['backend']} | {r['us']:.2f} | {r['TB_s']:.2f} |")
    return "\n".join(lines)


def plot(data: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(SHAPES), figsize=(5 * len(SHAPES), 4), sharey=False)
    for ax, (k, n) in zip(axes, SHAPES):
        rows = [r for r in data["rows"] if (r["K"], r["N"]) == (k, n)]
        ms = [r["M"] for r in rows]
        for key, label in (("fp16_us", "fp16 cuBLAS"), ("w4a4_us", "W4A4 (quantize+GEMM)"),
                           ("roofline_us", "HBM roofline (W4A4 bytes)")):
            ax.plot(ms, [r[key] for r in rows], marker="o", label=label)
        after = [r for r in rows if "w4a4_after_torch_us" in r]
        if after:
            ax.plot([r["M"] for r in after], [r["w4a4_after_torch_us"] for r in after], marker="x", linestyle="--",
                    label="W4A4 after a torch op")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_title(f"{k} → {n}")
        ax.set_xlabel("M (rows)")
        ax.set_ylabel("µs (median, in a CUDA graph)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend()
    fig.suptitle(data.get("device", ""))
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def _save(data, path: str | None) -> None:
    """Write ``data`` to ``path`` whole or not at all (a run killed mid-write keeps the last save)."""
    if path:
        with open(path + ".tmp", "w") as f:
            json.dump(data, f, indent=1)
        os.replace(path + ".tmp", path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="write the numbers to this file")
    ap.add_argument("--reps", type=int, default=50)
    ap.add_argument("--sweep", action="store_true",
                    help="time GEMM launch configurations instead (per-tile and persistent beyond 16 rows)")
    ap.add_argument("--sweep-quant", action="store_true", help="time quantizer launch configurations only")
    ap.add_argument("--sweep-few", action="store_true",
                    help="time the few-row GEMMs (dp4a GEMV, swapped GEMM) with L2 prefetch, alone and chained")
    ap.add_argument("--kinds", default=",".join(FEW_KINDS),
                    help="--sweep-few: which GEMMs (mma or mma-default, dp4a or dp4a-default, small, planes or "
                         "planes-default, planes-sums, planes-head, planes-bare), comma-"
                         "separated; add foreign to also time each after a torch kernel")
    ap.add_argument("--plot", help="save a plot (PNG) of the numbers (needs matplotlib)")
    ap.add_argument("--plot-from", help="plot numbers saved by --json instead of measuring")
    ap.add_argument("--ms", help="comma-separated M values (default: the table's; --sweep-few: its own)")
    ap.add_argument("--shapes", help="comma-separated KxN shapes (default: the three Qwen2-7B shapes)")
    args = ap.parse_args(argv)
    if args.shapes:
        global SHAPES
        SHAPES = [tuple(int(v) for v in kn.lower().split("x")) for kn in args.shapes.split(",")]
    if args.plot_from:
        with open(args.plot_from) as f:
            plot(json.load(f), args.plot or "quant.png")
        return 0
    import torch
    if not torch.cuda.is_available():
        print("benchmarks/quant.py needs a CUDA GPU", file=sys.stderr)
        return 2
    ms = [int(v) for v in args.ms.split(",")] if args.ms else None
    rows = None
    if args.sweep_few:
        rows = sweep_few(args.reps, *([ms] if ms else []), kinds=tuple(args.kinds.split(",")))
    elif args.sweep_quant:
        rows = sweep_quant(args.reps, *([ms] if ms else []))
    elif args.sweep:
        rows = sweep_quant(args.reps) + sweep(args.reps, ms or MS)
    if rows is not None:
        _save(rows, args.json)
        return 0
    bw = copy_bandwidth()
    ms = ms or MS
    rows, quant_rows = [], []
    data = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "copy_bw": bw,
            "rows": rows, "quant": quant_rows, "complete": False}  # saved after each row: a killed run keeps them
    for k, n in SHAPES:
        for m in ms:
            rows.append(bench_shape(k, n, m, bw, args.reps))
            r = rows[-1]
            print(f"{k}->{n} M={m}: fp16 {r['fp16_us']:.2f} us, w4a4 {r['w4a4_us']:.2f} us, {r['speedup']:.2f}x",
                  file=sys.stderr, flush=True)
            _save(data, args.json)
    for n in (3584, 18944):
        for m in ms:
            for backend in ("triton", "cuda"):
                quant_rows.append(bench_quant(n, m, backend, args.reps))
                _save(data, args.json)
    data["complete"] = True
    _save(data, args.json)
    if args.plot:
        plot(data, args.plot)
    print(_table(rows, quant_rows, bw))
    return 0


if __name__ == "__main__":
    sys.exit(main())
