"""Wall time of `graphsafe.check` on the seed case, after the extension is built (goal: < 10 s on an H100).

    python benchmarks/check_seed.py [--repeats 3]

Prints one table: phase timings of each in-process run (the first includes CUPTI's start-up) and the
median total, then the wall time of the whole CLI command (a fresh Python process, torch import and
the isolated child included).
"""
from __future__ import annotations

import argparse
import statistics
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    import torch

    from graphsafe.cases import seed
    from graphsafe.doctor.check import check

    t = time.perf_counter()
    seed.ext.load("buggy"), seed.ext.load("fixed")
    build = time.perf_counter() - t
    rows = []
    for variant in ("buggy", "fixed"):
        for i in range(args.repeats):
            target = seed.buggy() if variant == "buggy" else seed.fixed()
            t = time.perf_counter()
            rep = check(target)
            wall = time.perf_counter() - t
            rows.append((variant, i, rep.verdict, ",".join(rep.codes) or "-", rep.timings.get("eager_s", 0),
                         rep.timings.get("capture_s", 0), rep.timings.get("replay_s", 0), wall))
    import subprocess
    import sys
    cli = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "graphsafe", "check", "graphsafe.cases.seed:buggy", "--json"],
                              capture_output=True, text=True)
        cli.append(time.perf_counter() - t)
        assert proc.returncode == 1, proc.stderr[-2000:]
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}; extension load/build {build:.1f} s")
    print(f"{'variant':8} {'run':>3} {'verdict':9} {'codes':14} {'eager s':>8} {'capture s':>9} {'replay s':>8} "
          f"{'wall s':>7}")
    for r in rows:
        print(f"{r[0]:8} {r[1]:>3} {r[2]:9} {r[3]:14} {r[4]:8.3f} {r[5]:9.3f} {r[6]:8.3f} {r[7]:7.3f}")
    for variant in ("buggy", "fixed"):
        walls = [r[7] for r in rows if r[0] == variant]
        print(f"median wall time, {variant}: {statistics.median(walls):.3f} s (first run {walls[0]:.3f} s)")
    print(f"CLI `graphsafe check graphsafe.cases.seed:buggy` (fresh process, isolated): median "
          f"{statistics.median(cli):.2f} s over {len(cli)} runs ({', '.join(f'{c:.2f}' for c in cli)})")


if __name__ == "__main__":
    main()
