"""Child-process entry of an isolated check: ``python -m graphsafe.doctor.worker SPEC --out FILE``; and
:func:`check_spec`, what both it and ``graphsafe check --no-isolate`` run."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from .report import Report


def check_spec(spec: str, inputs: str | None, options: dict[str, Any]) -> Report:
    """Check ``MODULE:NAME``. A usage error (bad options, a spec that names nothing checkable, a factory that
    builds no Target) raises ``TargetError``; anything else goes in the report: no GPU is
    GSD006 before the target is built, a factory or target that raises is a setup failure (GSD004)."""
    from . import options as check_options
    from .check import _failure, check
    from .classify import classify
    from .environment import environment, no_cuda_reason
    from .evidence import Evidence
    from .target import ImportFailed, TargetError, resolve, validate_spec

    try:
        check_options.validate(**options)
    except (TypeError, ValueError) as exc:
        raise TargetError(str(exc)) from None
    no_cuda = no_cuda_reason()
    try:
        validate_spec(spec, inputs)
    except ImportFailed as exc:  # without a GPU a module that uses CUDA as it loads cannot load: say so
        if no_cuda is None or isinstance(exc.__cause__, SyntaxError):
            raise
        no_cuda += f"; {exc} (perhaps for want of a GPU)"
    if no_cuda is not None:  # building the target may itself need a GPU: say what is missing first
        ev = Evidence(target=spec, no_cuda=no_cuda)
    else:
        try:
            target = resolve(spec, inputs)
        except TargetError:
            raise
        except Exception as exc:  # building the target failed: report it like any other failure
            ev = Evidence(target=spec, failure=_failure("setup", exc))
        else:
            return check(target, **options)
    verdict, findings = classify(ev)
    return Report(target=spec, verdict=verdict, findings=findings, evidence=ev, environment=environment())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="graphsafe.doctor.worker")
    p.add_argument("spec")
    p.add_argument("--inputs")
    p.add_argument("--out", required=True)
    p.add_argument("--options", default="{}")
    a = p.parse_args(argv)
    from .target import TargetError

    try:
        report = check_spec(a.spec, a.inputs, json.loads(a.options))
    except TargetError as exc:  # a usage error: the parent prints it and exits 2
        Path(a.out).write_text(json.dumps({"usage_error": str(exc)}))
        return 0
    Path(a.out).write_text(report.to_json())
    return 0


if __name__ == "__main__":
    status = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # skip interpreter and CUDA teardown: after a hang or a fault it can block, and the report is written
    os._exit(status)
