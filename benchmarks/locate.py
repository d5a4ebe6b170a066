"""The localization benchmark: a 28-layer decoder (hidden 1024, random weights) with one planted bug at a
known layer. The check must name that layer and operation, and finish within 60 s. Prints the time of
every step: the verdict run's phases, then each localization step.

    python benchmarks/locate.py [--layers 28] [--hidden 1024] [--at 17] [--bug frozen|escaped|all]
                                [--html DIR] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import sys
import time

from rich.console import Console
from rich.table import Table

BUDGET_S = 60.0
EXPECT = {"frozen": "aten::mul", "escaped": "aten::mm"}


def run_one(bug: str, layers: int, hidden: int, at: int, html: str | None) -> dict:
    from graphsafe.cases.decoder import make
    from graphsafe.doctor.check import check

    tick = time.perf_counter()
    target = make(layers=layers, bug=bug, at=at, d=hidden)
    build_s = time.perf_counter() - tick
    tick = time.perf_counter()
    report = check(target, html=html)
    wall_s = time.perf_counter() - tick
    loc = report.evidence.locate
    d = loc.divergence if loc else None
    named_module = d.step.module if d else ""
    named_op = d.step.op if d else ""
    ok = (named_module.startswith(f"model.layers.{at}.") and named_op.startswith(EXPECT[bug]) and wall_s < BUDGET_S
          and report.verdict == "mismatch")
    return {
        "bug": bug, "layers": layers, "hidden": hidden, "planted": f"model.layers.{at}.mlp / {EXPECT[bug]}",
        "named": f"{named_module} / {named_op}", "line": d.step.location.short() if d and d.step.location else "",
        "verdict": report.verdict, "codes": sorted(set(report.codes)), "ok": ok, "build_s": round(build_s, 2),
        "check_s": round(wall_s, 2), "steps": loc.steps if loc else 0, "nodes": loc.nodes if loc else 0,
        "timings": {**{k: v for k, v in report.timings.items()}, **{f"locate.{k}": v for k, v in
                                                                     (loc.timings if loc else {}).items()}},
        "errors": loc.errors if loc else ["no localization"],
    }


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--layers", type=int, default=28)
    p.add_argument("--hidden", type=int, default=1024)
    p.add_argument("--at", type=int, default=17)
    p.add_argument("--bug", choices=["frozen", "escaped", "all"], default="all")
    p.add_argument("--html", help="directory for one picture per bug")
    p.add_argument("--json")
    a = p.parse_args()
    import torch

    console = Console(highlight=False)
    if not torch.cuda.is_available():
        console.print("no CUDA GPU: the localization benchmark needs one")
        return 2
    env = f"{torch.cuda.get_device_name()}, torch {torch.__version__}"
    rows = []
    for bug in (["frozen", "escaped"] if a.bug == "all" else [a.bug]):
        html = f"{a.html}/decoder_{bug}.html" if a.html else None
        rows.append(run_one(bug, a.layers, a.hidden, a.at, html))
    t = Table(title=f"localization, {a.layers}-layer decoder, hidden {a.hidden} ({env})", title_justify="left")
    for col in ("bug", "planted", "named", "line", "steps", "nodes", "check s", "ok"):
        t.add_column(col)
    for r in rows:
        t.add_row(r["bug"], r["planted"], r["named"], r["line"], str(r["steps"]), str(r["nodes"]),
                  f"{r['check_s']:.1f}", "yes" if r["ok"] else "NO")
    console.print(t)
    t = Table(title="seconds per step", title_justify="left")
    keys = list(dict.fromkeys(k for r in rows for k in r["timings"]))
    t.add_column("step")
    for r in rows:
        t.add_column(r["bug"], justify="right")
    for k in keys:
        t.add_row(k, *[f"{r['timings'].get(k, float('nan')):.2f}" for r in rows])
    console.print(t)
    for r in rows:
        for e in r["errors"]:
            console.print(f"[red]{r['bug']}: {e}[/]")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"device": env, "budget_s": BUDGET_S, "rows": rows}, f, indent=2)
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
