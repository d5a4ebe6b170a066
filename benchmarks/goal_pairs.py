"""The few-row W4A4 goal (issue 5) timed in pairs: W4A4 and fp16 cuBLAS replayed alternately.

`quant.py` times W4A4 and cuBLAS in separate graphs, one after the other, 10 replays each, so a clock
or memory state that changes between the two moves the ratio (cuBLAS has taken 13.7-14.3 µs at
3584→4608 from run to run). Here both graphs (built as `quant.py` builds them: `quant_linear` and
`torch.matmul(..., out=)` captured 50 times back to back, inputs and weights rotating through HBM) live
at once and are replayed in alternating order, so each ratio compares two replays made moments apart.
Each round builds everything again on fresh allocations.

    python benchmarks/goal_pairs.py                        # 3584x4608, M = 1, 2, 4, 3 rounds of 40 pairs
    python benchmarks/goal_pairs.py --shapes 3584x18944 --ms 2 --rounds 2 --json out.json

In the nineteenth session's run a W4A4 replay right after a cuBLAS replay took about 0.3 µs a call longer
than one after another W4A4 replay (`--blocks` replays each graph back to back, as `quant.py` does), so
the order is part of the measurement; `--gap-ms` pauses before every replay to see how long that lasts.

Prints per round and overall: the medians of W4A4 and of cuBLAS, the median of the per-pair ratios
with its 10th and 90th percentiles, and the share of pairs at or above the goal; with --after, also
W4A4 after a torch op writing x (its graph minus the torch op's own graph).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from quant import _capture, _copies, _weights  # noqa: E402

GOALS = {(3584, 4608): 2.5, (3584, 18944): 3.5, (18944, 3584): 3.5}


def quantile(values: list[float], q: float) -> float:
    """The q-quantile of ``values`` by linear interpolation between the sorted values."""
    v = sorted(values)
    if not v:
        raise ValueError("quantile of no values")
    pos = q * (len(v) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def summarize(w4a4: list[float], fp16: list[float], goal: float) -> dict:
    """Medians and the per-pair ratio's spread; pair i is (w4a4[i], fp16[i])."""
    if len(w4a4) != len(fp16) or not w4a4:
        raise ValueError("need the same, non-zero number of W4A4 and cuBLAS times")
    ratios = [f / w for w, f in zip(w4a4, fp16)]
    return {"w4a4_us": statistics.median(w4a4), "fp16_us": statistics.median(fp16),
            "ratio": statistics.median(ratios), "ratio_p10": quantile(ratios, 0.1),
            "ratio_p90": quantile(ratios, 0.9), "at_goal": sum(r >= goal for r in ratios) / len(ratios),
            "pairs": len(ratios)}


def one_round(k: int, n: int, m: int, pairs: int, reps: int, after: bool, blocks: bool = False,
              gap_ms: float = 0.0) -> dict:
    import torch

    from graphsafe.quant import quant_linear

    copies = _copies(n * k // 2 + m * k * 2)
    xs = [torch.randn(m, k, dtype=torch.float16, device="cuda") for _ in range(copies)]
    packed = _weights(k, n, copies)
    y = torch.empty(m, n, dtype=torch.float16, device="cuda")
    f_copies = _copies(n * k * 2 + m * k * 2)
    ws = [torch.randn(n, k, dtype=torch.float16, device="cuda") * 0.05 for _ in range(f_copies)]

    def w4a4(i):
        quant_linear(xs[i], packed[i][0], packed[i][1], out=y)

    graphs = {"w4a4": _capture(w4a4, copies, reps),
              "fp16": _capture(lambda i: torch.matmul(xs[i % copies], ws[i].t(), out=y), f_copies, reps)}
    if after:
        graphs["touch"] = _capture(lambda i: xs[i].mul_(1.0), copies, reps)
        graphs["touch_w4a4"] = _capture(lambda i: (xs[i].mul_(1.0), w4a4(i)), copies, reps)
    if gap_ms:  # an idle pause before every replay: does what ran before still matter after it?
        graphs = {name: (lambda g=g: (time.sleep(gap_ms / 1e3), g())[1]) for name, g in graphs.items()}
    names = list(graphs)
    times = {name: [] for name in names}
    if blocks:  # each graph's replays back to back (as quant.py times them), paired by index
        for name in names:
            times[name] = [graphs[name]() for _ in range(pairs)]
    else:
        for p in range(pairs):
            for name in names if p % 2 == 0 else names[::-1]:  # alternate which goes first
                times[name].append(graphs[name]())
    out = summarize(times["w4a4"], times["fp16"], GOALS.get((k, n), 2.5))
    if after:
        after_us = [a - t for a, t in zip(times["touch_w4a4"], times["touch"])]
        out |= {"after_us": statistics.median(after_us),
                "after_ratio": statistics.median(f / a for a, f in zip(after_us, times["fp16"]))}
    out["times"] = times
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", default="3584x4608", help="comma-separated KxN (default 3584x4608)")
    ap.add_argument("--ms", default="1,2,4", help="comma-separated row counts (default 1,2,4)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds, each on fresh allocations (default 3)")
    ap.add_argument("--pairs", type=int, default=40, help="alternating replays per round (default 40)")
    ap.add_argument("--reps", type=int, default=50, help="calls captured in each graph (default 50)")
    ap.add_argument("--after", action="store_true", help="also W4A4 after a torch op writing x")
    ap.add_argument("--blocks", action="store_true", help="replay each graph's pairs back to back instead of alternating")
    ap.add_argument("--gap-ms", type=float, default=0.0, help="sleep this long before every replay (default 0)")
    ap.add_argument("--json", help="write every replay's time and the summaries to this file")
    args = ap.parse_args(argv)
    import torch
    if not torch.cuda.is_available():
        print("benchmarks/goal_pairs.py needs a CUDA GPU", file=sys.stderr)
        return 2
    shapes = [tuple(int(v) for v in s.lower().split("x")) for s in args.shapes.split(",")]
    ms = [int(v) for v in args.ms.split(",")]
    results = []
    print("| K→N | M | round | W4A4 µs | cuBLAS µs | ratio (p10–p90) | pairs ≥ goal |" + (
        " after a torch op µs (ratio) |" if args.after else ""))
    print("|---|---|---|---|---|---|---|" + ("---|" if args.after else ""))
    for k, n in shapes:
        for m in ms:
            rounds = []
            for r in range(args.rounds):
                res = one_round(k, n, m, args.pairs, args.reps, args.after, args.blocks, args.gap_ms)
                rounds.append(res)
                torch.cuda.empty_cache()
                print(_line(k, n, m, str(r + 1), res, args.after), flush=True)
            w = [t for res in rounds for t in res["times"]["w4a4"]]
            f = [t for res in rounds for t in res["times"]["fp16"]]
            total = summarize(w, f, GOALS.get((k, n), 2.5))
            print(_line(k, n, m, "all", total, False), flush=True)
            results.append({"K": k, "N": n, "M": m, "rounds": rounds, "all": total})
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"device": torch.cuda.get_device_name(), "torch": torch.__version__, "results": results}, fh)
    return 0


def _line(k: int, n: int, m: int, label: str, s: dict, after: bool) -> str:
    line = (f"| {k}→{n} | {m} | {label} | {s['w4a4_us']:.2f} | {s['fp16_us']:.2f} | {s['ratio']:.3f}× "
            f"({s['ratio_p10']:.3f}–{s['ratio_p90']:.3f}) | {100 * s['at_goal']:.0f} % |")
    if after:
        line += f" {s['after_us']:.2f} ({s['after_ratio']:.2f}×) |"
    return line


if __name__ == "__main__":
    sys.exit(main())
