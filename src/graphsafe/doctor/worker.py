"""Child-process entry of an isolated check: ``python -m graphsafe.doctor.worker SPEC --out FILE``."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="graphsafe.doctor.worker")
    p.add_argument("spec")
    p.add_argument("--inputs")
    p.add_argument("--out", required=True)
    p.add_argument("--options", default="{}")
    a = p.parse_args(argv)
    from .check import check
    from .target import TargetError, resolve, validate_spec

    try:
        validate_spec(a.spec, a.inputs)
    except TargetError as exc:  # a usage error: the parent prints it and exits 2
        Path(a.out).write_text(json.dumps({"usage_error": str(exc)}))
        return 0
    try:
        target = resolve(a.spec, a.inputs)
    except Exception as exc:  # building the target failed: report it like any other failure
        from .check import _failure, environment
        from .classify import classify
        from .evidence import Evidence
        from .report import Report

        ev = Evidence(target=a.spec, failure=_failure("setup", exc))
        verdict, findings = classify(ev)
        report = Report(target=a.spec, verdict=verdict, findings=findings, evidence=ev, environment=environment())
    else:
        report = check(target, **json.loads(a.options))
    Path(a.out).write_text(report.to_json())
    return 0


if __name__ == "__main__":
    status = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # skip interpreter and CUDA teardown: after a hang or a fault it can block, and the report is written
    os._exit(status)
