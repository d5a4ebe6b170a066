"""The doctor on small targets: clean code is clean, failures are reported, never raised."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.gpu

from graphsafe.doctor import capture_errors  # noqa: E402
from graphsafe.doctor.check import check  # noqa: E402
from graphsafe import cases  # noqa: E402
from graphsafe.doctor.codes import CODES  # noqa: E402
from graphsafe.doctor.target import resolve  # noqa: E402


def test_plain_torch_function_matches():
    report = check(resolve("graphsafe.cases.graph_safe_torch:good"))
    assert report.verdict == "match", report.findings
    assert report.findings == []
    assert report.evidence.launches_in_window > 0  # the capture was traced and saw its launches


def test_capture_error_is_explained():
    report = check(resolve("graphsafe.cases.capture_breaking:item"))
    assert report.verdict == "inconclusive"
    [f] = [f for f in report.findings if f.code == "GSD003"]
    assert f.data["cuda_error"] == 900
    assert f.location.file.endswith("cases/capture_breaking.py")
    assert "item()" in open(f.location.file).read().splitlines()[f.location.line - 1]
    assert report.evidence.failure.cuda_usable_after is True
    assert f.data["last_entered"]  # the op that was running when CUDA said no
    # and CUDA is still usable in this process, RNG included (PyTorch leaves its generator in capture
    # mode after a failed capture_end; the doctor puts it back)
    assert float(torch.ones(2, device="cuda").sum()) == 2.0
    assert torch.randn(4, device="cuda").isfinite().all()


def test_eager_exception_becomes_a_finding():
    report = check(resolve("graphsafe.cases.raises:bad"))
    assert report.verdict == "inconclusive"
    [f] = report.findings
    assert f.code == "GSD004" and f.data["phase"] == "eager"
    assert f.location.file.endswith("cases/raises.py")


@pytest.mark.parametrize("code", [c for c in CODES.values() if c.bad and c.good and c.bad not in
                                  {z.bad for z in cases.ZOO}], ids=lambda c: c.code)
def test_explain_examples_hold(code):
    """Examples that are not zoo cases (the zoo's are run by test_gpu_zoo)."""
    bad = check(resolve(code.bad))
    assert code.code in [f.code for f in bad.findings], bad.findings
    good = check(resolve(code.good))
    assert good.verdict == "match" and good.findings == [], good.findings


def test_capture_error_table_matches_cuda():
    cudart = pytest.importorskip("cuda.bindings.runtime")
    for e in capture_errors.CAPTURE_ERRORS + capture_errors.FAULTS:
        err, text = cudart.cudaGetErrorString(cudart.cudaError_t(e.code))
        assert text.decode() == e.description, (e.code, text)
        err, name = cudart.cudaGetErrorName(cudart.cudaError_t(e.code))
        assert name.decode() == e.name


def test_identical_inputs_are_flagged():
    x = torch.randn(16, device="cuda")
    report = check(lambda t: t * 2, lambda seed: (x,))
    assert "GSD007" in report.codes
    assert report.verdict == "inconclusive"


def test_stateful_eager_is_flagged():
    state = {"n": 0}

    def counter(t):
        state["n"] += 1
        return t * state["n"]

    report = check(counter, lambda seed: (torch.full((4,), float(seed + 1), device="cuda"),))
    assert "GSD008" in report.codes


@pytest.mark.parametrize("spec, stream", [("escaped_legacy:bad", "legacy"), ("escaped_per_thread:bad_torch", "per_thread"),
                                          ("escaped_owned_stream:bad", "other")])
def test_escaped_work_names_its_stream(spec, stream):
    report = check(resolve(f"graphsafe.cases.{spec}"))
    assert report.verdict == "mismatch"
    escaped = [f for f in report.findings if f.code == "GSD002"]
    assert escaped and {f.data["stream"] for f in escaped} == {stream}, report.findings
    assert any("tanh" in f.data["kernel"] for f in escaped)
    where = [(f.data["kernel"], f.location.short() if f.location else None) for f in escaped]
    assert all(f.location and f.location.file.endswith("cases/_common.py") for f in escaped), where
    assert "GSD001" in report.codes  # the output is the capture-time value


def test_forked_and_joined_side_stream_is_clean():
    report = check(resolve("graphsafe.cases.escaped_owned_stream:good"))
    assert report.verdict == "match" and report.findings == [], report.findings
