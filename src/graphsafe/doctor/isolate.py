"""Runs a check in a child process, so a target that faults, aborts or hangs cannot take the doctor
with it. The child writes the report as JSON; if it dies first, the parent reports GSD009 with the
exit status and the last lines the child printed."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from .classify import classify
from .evidence import Evidence, Failure
from .report import Report
from .target import TargetError

_TAIL_LINES = 15


def check_in_subprocess(spec: str, *, inputs: str | None = None, timeout: float = 600.0,
                        options: dict | None = None) -> tuple[Report, str]:
    """Check ``spec`` in a fresh interpreter; returns (report, what the child printed)."""
    with tempfile.TemporaryDirectory(prefix="graphsafe-") as tmp:
        out = Path(tmp) / "report.json"
        cmd = [sys.executable, "-m", "graphsafe.doctor.worker", spec, "--out", str(out),
               "--options", json.dumps(options or {})]
        if inputs:
            cmd += ["--inputs", inputs]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=os.environ.copy())
            printed = proc.stdout + proc.stderr
            status = proc.returncode
        except subprocess.TimeoutExpired as exc:
            printed = _text(exc.stdout) + _text(exc.stderr)
            return _crashed(spec, f"the check did not finish within {timeout:g} s and was stopped", printed), printed
        if out.is_file():
            payload = json.loads(out.read_text())
            if "usage_error" in payload:
                raise TargetError(payload["usage_error"])
            return Report.from_dict(payload), printed
        return _crashed(spec, _describe_status(status), printed), printed


def _text(b) -> str:
    return b.decode(errors="replace") if isinstance(b, bytes) else (b or "")


def _describe_status(status: int) -> str:
    if status < 0:
        try:
            name = signal.Signals(-status).name
        except ValueError:
            name = f"signal {-status}"
        return f"the checking process was killed by {name}"
    return f"the checking process exited with status {status} before writing its report"


def _crashed(spec: str, why: str, printed: str) -> Report:
    tail = [ln for ln in printed.strip().splitlines() if ln.strip()][-_TAIL_LINES:]
    msg = why + ("; its last output:\n" + "\n".join(tail) if tail else "")
    ev = Evidence(target=spec, failure=Failure(phase="process", exc_type="ProcessDied", message=msg))
    verdict, findings = classify(ev)
    return Report(target=spec, verdict=verdict, findings=findings, evidence=ev)
