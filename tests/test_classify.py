"""Classification from evidence: no GPU needed."""
from __future__ import annotations

from pathlib import Path

import pytest

from graphsafe.diagnostics import Location
from graphsafe.doctor.classify import classify
from graphsafe.doctor.evidence import Comparison, Evidence, Failure, OutputEvidence
from graphsafe.doctor.trace import EscapedOp

DATA = Path(__file__).parent / "data"


def cmp(seed, close, *, stale=False, moved=True, max_abs=0.0):
    return Comparison(seed=seed, max_abs=max_abs, max_rel=max_abs, mismatched=0 if close else 1, numel=1,
                      close=close, bitwise_equal=close, replay_equals_capture_time=stale, eager_moved=moved)


def out(*comparisons):
    return OutputEvidence(index=0, shape=[1, 1], dtype="float16", comparisons=list(comparisons))


def escaped(role="legacy", sid=7):
    return EscapedOp(kind="kernel", name="scale_andquant_kernel(__half const*, __half*, float)", stream_role=role,
                     stream_id=sid, api="cudaLaunchKernel", entry="sym_quant_fuse",
                     callsite=Location("ops.py", 9, function="sym_quant_fuse"),
                     stack=[Location("ops.py", 9), Location("model.py", 98, function="forward")])


def test_stale_replay_with_escaped_kernel():
    ev = Evidence(target="t", seeds=[1, 2, 3], stream_ids={"legacy": 7, "per_thread": 13, "capture": 21},
                  outputs=[out(*(cmp(s, False, stale=True, max_abs=0.5) for s in (1, 2, 3)))],
                  escaped=[escaped()], capture_warnings=["The CUDA Graph is empty."])
    verdict, fs = classify(ev)
    assert verdict == "mismatch"
    assert [f.code for f in fs] == ["GSD002", "GSD001"]
    esc, stale = fs
    assert "scale_andquant_kernel" in esc.message and "legacy default stream" in esc.message
    assert esc.location.file == "ops.py" and esc.stack[0].function == "forward"
    assert "getCurrentCUDAStream" in esc.help
    assert any("capture stream is CUPTI stream 21" in e for e in esc.evidence)
    assert "stale" in stale.message and stale.data["inputs"] == 3
    assert any("The CUDA Graph is empty" in e for e in stale.evidence)


@pytest.mark.parametrize("role, words, fix", [("per_thread", "per-thread default stream", "per-thread"),
                                              ("other", "not part of the capture", "wait_stream")])
def test_stream_role_decides_message_and_help(role, words, fix):
    ev = Evidence(target="t", seeds=[1], outputs=[out(cmp(1, True))], escaped=[escaped(role, 99)])
    verdict, [f] = classify(ev)
    assert verdict == "mismatch"  # escaped work is a graph/eager disagreement even if outputs agree
    assert words in f.message and fix in f.help


def test_clean_evidence_matches_with_no_findings():
    ev = Evidence(target="t", seeds=[1, 2], outputs=[out(cmp(1, True), cmp(2, True))])
    assert classify(ev) == ("match", [])


def test_divergence_without_a_known_cause():
    ev = Evidence(target="t", seeds=[1, 2], outputs=[out(cmp(1, False, max_abs=3.0), cmp(2, True))])
    verdict, [f] = classify(ev, Location("m.py", 3, function="f"))
    assert verdict == "mismatch" and f.code == "GSD005"
    assert "1 of 2" in f.evidence[0] and f.location.file == "m.py"


def test_replay_that_moves_is_not_stale():
    ev = Evidence(target="t", seeds=[1], outputs=[out(cmp(1, False, stale=False, max_abs=1.0))])
    assert [f.code for f in classify(ev)[1]] == ["GSD005"]


def test_capture_error_is_named_in_plain_words():
    f = Failure(phase="capture", exc_type="RuntimeError",
                message="CUDA error: operation not permitted when stream is capturing",
                location=Location("case.py", 12, function="normalize"), cuda_error=900,
                last_entered="aten::_local_scalar_dense", cuda_usable_after=True)
    verdict, [fd] = classify(Evidence(target="t", failure=f))
    assert verdict == "inconclusive" and fd.code == "GSD003"
    assert "900" in fd.message and "cudaErrorStreamCaptureUnsupported" in fd.message
    assert any("aten::_local_scalar_dense" in e for e in fd.evidence)
    assert any("stayed usable" in e for e in fd.evidence)


def test_eager_exception_is_a_finding():
    f = Failure(phase="eager", exc_type="RuntimeError", message="mat1 and mat2 shapes cannot be multiplied\nmore",
                location=Location("raises.py", 10))
    verdict, [fd] = classify(Evidence(target="t", failure=f))
    assert verdict == "inconclusive" and fd.code == "GSD004"
    assert fd.evidence == ["RuntimeError: mat1 and mat2 shapes cannot be multiplied"]


def test_no_cuda_and_crash_and_indistinct_inputs():
    assert classify(Evidence(target="t", no_cuda="no"))[1][0].code == "GSD006"
    crash = Evidence(target="t", failure=Failure(phase="process", exc_type="ProcessDied", message="SIGABRT"))
    assert classify(crash)[1][0].code == "GSD009"
    same = Evidence(target="t", seeds=[1], indistinct_seeds=[1], outputs=[out(cmp(1, True))])
    verdict, [f] = classify(same)
    assert verdict == "inconclusive" and f.code == "GSD007" and f.severity == "warning"


def test_unstable_eager_makes_a_mismatch_inconclusive():
    ev = Evidence(target="t", seeds=[1], eager_unstable=True, outputs=[out(cmp(1, False, max_abs=1.0))])
    verdict, fs = classify(ev)
    assert verdict == "inconclusive" and "GSD008" in [f.code for f in fs]


def test_untraceable_capture_is_said_not_hidden():
    ev = Evidence(target="t", seeds=[1], outputs=[out(cmp(1, True))], trace_error="profiler busy")
    verdict, [f] = classify(ev)
    assert verdict == "match" and f.severity == "note" and "profiler busy" in f.evidence[0]


def test_recorded_seed_evidence_from_an_h100():
    """Evidence recorded by `graphsafe check graphsafe.cases.seed:buggy` on an H100, re-classified here."""
    from graphsafe.doctor.report import Report

    report = Report.from_json((DATA / "seed_buggy_h100.json").read_text())
    verdict, fs = classify(report.evidence)
    assert verdict == "mismatch"
    assert [f.code for f in fs] == ["GSD002", "GSD001"]
    assert fs[0].data["short_name"] == "scale_andquant_kernel" and fs[0].data["stream"] == "legacy"
    assert fs[0].to_dict() == report.findings[0].to_dict()  # the same diagnosis, re-derived on a CPU
    assert (fs[1].message, fs[1].evidence) == (report.findings[1].message, report.findings[1].evidence)
