"""Reports: JSON round trip and rustc-style rendering, from evidence recorded on an H100."""
from __future__ import annotations

import io
import json
from pathlib import Path

from rich.console import Console

from graphsafe.doctor.render import render_report
from graphsafe.doctor.report import EXIT_STATUS, Report

DATA = Path(__file__).parent / "data"


def recorded() -> Report:
    return Report.from_json((DATA / "seed_buggy_h100.json").read_text())


def test_json_round_trip_is_lossless():
    rep = recorded()
    again = Report.from_json(rep.to_json())
    assert again.to_dict() == rep.to_dict()
    d = json.loads(rep.to_json())
    assert d["schema"] == "graphsafe.check/1" and d["exit_status"] == 1
    assert d["outputs"][0]["mismatched_inputs"] == 3


def test_not_a_report_is_refused():
    try:
        Report.from_dict({"schema": "something/else"})
    except ValueError as exc:
        assert "not a graphsafe check report" in str(exc)
    else:
        raise AssertionError("accepted a foreign document")


def test_rendering_has_rustc_anatomy():
    buf = io.StringIO()
    render_report(recorded(), Console(file=buf, width=200, color_system=None))
    text = buf.getvalue()
    assert "error[GSD002]: kernel `scale_andquant_kernel` ran during capture on the legacy default stream" in text
    assert "--> " in text and " = evidence: " in text and " = help: " in text
    assert "error[GSD001]: output 0 (1×1 float16) is stale" in text
    assert "verdict: mismatch (2 errors, 0 warnings)" in text


def test_exit_statuses_are_documented_values():
    assert EXIT_STATUS == {"match": 0, "benign": 0, "mismatch": 1, "inconclusive": 2}
