"""The bug zoo on a GPU: every buggy target gets its class's code and verdict, every fixed twin and every
real model comes out clean, and targets that fault or hang are reported from a child process."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from graphsafe import cases  # noqa: E402
from graphsafe.cases import real_models  # noqa: E402
from graphsafe.doctor.check import check  # noqa: E402
from graphsafe.doctor.isolate import check_in_subprocess  # noqa: E402
from graphsafe.doctor.target import resolve  # noqa: E402

pytestmark = pytest.mark.gpu
ALL = cases.ZOO + cases.VARIANTS
# findings that must point at the line that does it, not only at the target
LOCATED = {"host_side_effect:bad": "host_side_effect.py", "stale_pointer:bad": "stale_pointer.py",
           "accumulation:bad": "accumulation.py", "inplace_param:bad": "inplace_param.py",
           "stream_race:bad": "stream_race.py", "seed:buggy": "ops.py", "escaped_per_thread:bad": "escaped_per_thread.py",
           "capture_breaking:item": "capture_breaking.py"}


def _id(c):
    return c.bad.split("cases.")[1]


@pytest.mark.parametrize("case", ALL, ids=_id)
def test_bug_is_diagnosed(case):
    report = check(resolve(case.bad))
    # with the evidence: a probe that could not run says why there (GSD005)
    assert case.code in report.codes, [(f.code, f.message, f.evidence) for f in report.findings]
    assert report.verdict == case.verdict, (report.verdict, [(f.code, f.message) for f in report.findings])
    main = next(f for f in report.findings if f.code == case.code)
    assert main.message and main.help and main.evidence
    if _id(case) in LOCATED:
        assert main.location and main.location.file.endswith(LOCATED[_id(case)]) and main.location.line, main.location


@pytest.mark.parametrize("case", [c for c in ALL if c.good], ids=_id)
def test_fixed_twin_is_clean(case):
    report = check(resolve(case.good))
    assert report.verdict == case.good_verdict, [(f.code, f.message) for f in report.findings]
    assert report.findings == [] or case.good_verdict == "benign", [(f.code, f.message) for f in report.findings]


@pytest.mark.parametrize("name", real_models.ALL)
def test_real_model_is_clean(name):
    report = check(resolve(f"graphsafe.cases.real_models:{name}"))
    assert report.verdict == "match", [(f.code, f.message, f.evidence) for f in report.findings]
    assert report.findings == [], [(f.code, f.message, f.evidence) for f in report.findings]


@pytest.mark.parametrize("case", cases.BAD_INPUT, ids=_id)
def test_bad_input_is_reported_from_a_child_process(case):
    report, _ = check_in_subprocess(case.bad, timeout=300, options={"timeout_s": 10.0})
    assert case.code in report.codes, [(f.code, f.message, f.evidence) for f in report.findings]
    assert report.verdict == "inconclusive"


def test_hang_keeps_what_was_found_before_it():
    report, _ = check_in_subprocess("graphsafe.cases.hang:replay_hangs", timeout=300, options={"timeout_s": 5.0})
    assert "GSD002" in report.codes  # the producer escaped the capture: the reason the replay waits
    hang = next(f for f in report.findings if f.code == "GSD021")
    assert hang.data["phase"] == "replay" and hang.data["timeout_s"] == 5.0
    # the first replay finds the flag the capture raised; the second waits forever
    assert hang.data["last_step"] == "replay on input 1"
    assert "the last step that finished: the replay on input 1" in hang.evidence
