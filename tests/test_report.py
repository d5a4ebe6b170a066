"""Reports: JSON round trip and rustc-style rendering, from evidence recorded on an H100."""
from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
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


def test_json_is_strict_and_carries_nonfinite_errors_as_strings():
    """A diverging output's error may be NaN or infinite: the JSON stays parseable by strict parsers and reads
    back as the same numbers."""
    import math

    d = json.loads(recorded().to_json())
    c = d["evidence"]["outputs"][0]["comparisons"][0]
    c["max_abs"], c["max_rel"] = float("inf"), float("nan")
    text = Report.from_dict(d).to_json()
    strict = json.loads(text, parse_constant=lambda name: (_ for _ in ()).throw(ValueError(name)))
    summary = strict["outputs"][0]
    assert summary["max_abs"] == "inf" and summary["max_rel"] == "nan"
    again = Report.from_json(text).evidence.outputs[0].comparisons[0]
    assert again.max_abs == math.inf and math.isnan(again.max_rel)


def _mutated(change):
    d = json.loads((DATA / "seed_buggy_h100.json").read_text())
    change(d)
    return d


def _comparison(d):
    return d["evidence"]["outputs"][0]["comparisons"][0]


@pytest.mark.parametrize("doc, message", [
    ([1], "expected a JSON object, got list"),
    (None, "expected a JSON object, got NoneType"),
    (_mutated(lambda d: d.pop("target")), "missing 'target'"),
    (_mutated(lambda d: d.update(verdict="bogus")), "verdict: expected one of match, benign, mismatch"),
    (_mutated(lambda d: _comparison(d).pop("close")), "evidence.outputs[0].comparisons[0]: missing 'close'"),
    (_mutated(lambda d: d["evidence"].update(escaped={"a": 1})), "evidence.escaped: expected a list, got an object"),
    (_mutated(lambda d: d["evidence"].update(probes=None)), "evidence.probes: null where Probes is expected"),
    (_mutated(lambda d: _comparison(d).update(max_abs="big")),
     "evidence.outputs[0].comparisons[0].max_abs: expected float, got a string 'big'"),
    (_mutated(lambda d: _comparison(d).update(close="yes")), "comparisons[0].close: expected bool"),
    (_mutated(lambda d: d["findings"][0].update(severity="fatal")), "severity must be one of"),
])
def test_malformed_recorded_reports_are_refused_with_where(doc, message):
    with pytest.raises(ValueError) as info:
        Report.from_dict(doc)
    assert message in str(info.value)


def test_classify_refuses_what_is_not_evidence():
    from graphsafe.doctor.classify import classify

    with pytest.raises(TypeError, match="classify takes an Evidence"):
        classify(json.loads((DATA / "seed_buggy_h100.json").read_text())["evidence"])
