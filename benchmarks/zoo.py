"""The zoo benchmark: every case's buggy target and fixed twin, and real models, through the doctor.

Prints one row per target: class, expected code and verdict, what the doctor said, the location it
named, and seconds. Buggy targets must get their class's code; twins and real models `match` with no
findings. Bad-input targets (faults, hangs) run through the CLI's child process.

    python benchmarks/zoo.py [--json out.json] [--only SUBSTRING] [--no-models] [--no-bad-input]
"""
from __future__ import annotations

import argparse
import json
import sys
import time

from rich.console import Console
from rich.table import Table


def _row(kind, case, spec, expect_code, expect_verdict, report, seconds):
    codes = [f.code for f in report.findings]
    loc = next((f.location.short() for f in report.findings if f.location and f.code == expect_code), "")
    if expect_code:
        ok = expect_code in codes and report.verdict == expect_verdict
    else:
        ok = report.verdict == expect_verdict and (not codes or expect_verdict == "benign")
    return {"kind": kind, "class": case.number if case else "", "title": case.title if case else spec,
            "target": spec, "expected": f"{expect_code or 'clean'} / {expect_verdict}",
            "diagnosed": ",".join(dict.fromkeys(codes)) or "-", "verdict": report.verdict, "location": loc,
            "seconds": round(seconds, 2), "ok": ok,
            "evidence": [e for f in report.findings for e in f.evidence[:2]][:6]}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--json")
    p.add_argument("--only")
    p.add_argument("--no-models", action="store_true")
    p.add_argument("--no-bad-input", action="store_true")
    p.add_argument("--reports", help="write each buggy target's report (JSON) into this directory")
    a = p.parse_args()
    from graphsafe import cases
    from graphsafe.cases import real_models
    from graphsafe.doctor.check import check
    from graphsafe.doctor.isolate import check_in_subprocess
    from graphsafe.doctor.target import resolve

    rows = []

    def run(kind, case, spec, code, verdict, isolate=False, timeout_s=60.0):
        if a.only and a.only not in spec:
            return
        t = time.perf_counter()
        try:
            if isolate:
                report, _ = check_in_subprocess(spec, timeout=300, options={"timeout_s": timeout_s})
            else:
                report = check(resolve(spec), timeout_s=timeout_s)
        except Exception as exc:  # noqa: BLE001 - a row that says so
            print(f"{spec}: {type(exc).__name__}: {exc}", file=sys.stderr)
            return
        rows.append(_row(kind, case, spec, code, verdict, report, time.perf_counter() - t))
        if a.reports and kind in ("bug", "bad input"):
            import pathlib

            out = pathlib.Path(a.reports) / (spec.split("cases.")[-1].replace(":", "__") + ".json")
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(report.to_json())
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)

    for case in cases.ZOO + cases.VARIANTS:
        run("bug", case, case.bad, case.code, case.verdict)
        if case.good:
            run("twin", case, case.good, None, case.good_verdict)
    if not a.no_models:
        for name in real_models.ALL:
            run("model", None, f"graphsafe.cases.real_models:{name}", None, "match")
    if not a.no_bad_input:
        for case in cases.BAD_INPUT:
            run("bad input", case, case.bad, case.code, case.verdict, isolate=True, timeout_s=10.0)

    table = Table(title="graphsafe zoo: expected vs diagnosed")
    for col in ("kind", "class", "title", "expected", "diagnosed", "verdict", "location", "s", "ok"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["kind"], str(r["class"]), r["title"], r["expected"], r["diagnosed"], r["verdict"],
                      r["location"], f"{r['seconds']:.1f}", "yes" if r["ok"] else "[red]NO[/]")
    Console(width=220).print(table)
    bugs = [r for r in rows if r["kind"] == "bug" and r["class"] and r["target"] in {c.bad for c in cases.ZOO}]
    print(f"zoo classes diagnosed right: {sum(r['ok'] for r in bugs)}/{len(bugs)}; "
          f"all rows right: {sum(r['ok'] for r in rows)}/{len(rows)}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
