"""The seed case on a GPU: the bug is kept, diagnosed end to end, and the fixed twin is clean."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.gpu

from graphsafe.cases import seed  # noqa: E402
from graphsafe.doctor.check import check  # noqa: E402
from graphsafe.quant.reference import sym_quant_reference  # noqa: E402


@pytest.mark.parametrize("variant", ["buggy", "fixed"])
@pytest.mark.parametrize("shape", [(1, 3584), (4, 3584), (3, 1000), (2, 7), (5, 4097)])
def test_seed_kernel_matches_reference(variant, shape):
    op = seed.sym_quant_fuse if variant == "buggy" else seed.sym_quant_fuse_fixed
    g = torch.Generator(device="cuda").manual_seed(shape[0] * 7919 + shape[1])
    x = torch.randn(shape, dtype=torch.half, device="cuda", generator=g) * 3
    x[0, 0] = 0.0  # exact zero in a row
    q, scale = op(x)
    torch.cuda.synchronize()
    q_ref, s_ref = sym_quant_reference(x.cpu())
    assert torch.equal(scale.cpu(), s_ref)
    assert torch.equal(q.cpu(), q_ref)


def test_seed_zero_row_gives_zero_codes():
    x = torch.zeros(2, 64, dtype=torch.half, device="cuda")
    x[1] = torch.linspace(-1, 1, 64, device="cuda").half()
    q, scale = seed.sym_quant_fuse_fixed(x)
    q_ref, s_ref = sym_quant_reference(x.cpu())
    assert torch.equal(q.cpu(), q_ref) and torch.equal(scale.cpu(), s_ref)
    assert int(q[0].abs().sum()) == 0


def test_seed_runner_keeps_the_users_bug():
    """As reported: the runner's replay returns the capture-time scale, not the input's."""
    torch.manual_seed(0)
    model = seed.model_w4a4(seed.M, seed.N, seed.K).eval()
    runner = seed.ModelRunner(model)
    runner.capture_model()
    x = torch.randn((1, seed.N), dtype=torch.half, device="cuda")
    captured = runner.graph_runners[1].graph_output.clone()
    out = runner.execute_model(x)
    torch.cuda.synchronize()
    expected = sym_quant_reference(x.cpu())[1]
    assert torch.equal(out.cpu(), captured.cpu())
    assert not torch.equal(out.cpu(), expected)


def test_fixed_runner_follows_its_input():
    model = seed.model_w4a4(seed.M, seed.N, seed.K, quant=seed.sym_quant_fuse_fixed).eval()
    runner = seed.ModelRunner(model)
    runner.capture_model()
    for s in range(3):
        x = seed.make_inputs(100 + s, batch=2)[0]
        out = runner.execute_model(x)
        torch.cuda.synchronize()
        assert torch.equal(out.cpu(), sym_quant_reference(x.cpu())[1])


def test_check_diagnoses_the_seed():
    seed.ext.load("fixed")  # both extensions loaded: only the launch that fits the stream is named
    report = check(seed.buggy())
    assert report.verdict == "mismatch"
    escaped = [f for f in report.findings if f.code == "GSD002"]
    assert len(escaped) == 1, report.findings
    f = escaped[0]
    assert f.data["short_name"] == "scale_andquant_kernel"
    assert f.data["stream"] == "legacy"
    assert f.data["kind"] == "kernel"
    assert f.location is not None and f.location.file.endswith("cases/seed/ops.py")
    assert any(loc.file.endswith("cases/seed/model.py") and loc.function == "forward" for loc in f.stack)
    assert [(r.file.rsplit("/", 1)[-1], r.line) for r in f.related] == [("seed_quant.cu", 109)]
    assert "getCurrentCUDAStream" in f.help
    stale = [f for f in report.findings if f.code == "GSD001"]
    assert len(stale) == 1 and stale[0].data["inputs"] == 3
    assert report.exit_status == 1


def test_check_fixed_twin_is_clean():
    report = check(seed.fixed())
    assert report.verdict == "match", report.findings
    assert report.findings == []
    assert report.evidence.stream_ids.keys() == {"legacy", "per_thread", "capture"}
    assert len(set(report.evidence.stream_ids.values())) == 3


def test_check_does_not_modify_the_users_inputs():
    x = torch.randn(32, 32, device="cuda")
    before = x.clone()

    def scale_in_place(t):
        return t.mul_(2).add_(1)

    report = check(scale_in_place, lambda seed: (x if seed == 0 else x + seed,))
    assert torch.equal(x, before)
    assert report.verdict in ("match", "inconclusive")


def test_graphsafe_run_on_the_seed_script():
    proc = subprocess.run([sys.executable, "-m", "graphsafe", "run", "--json", str(seed.SCRIPT)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1, proc.stderr[-3000:]
    payload = json.loads(proc.stdout[proc.stdout.index('{\n  "schema": "graphsafe.run/1"'):])
    assert len(payload["captures"]) == 4
    for cap in payload["captures"]:
        kernels = [f["data"]["short_name"] for f in cap["findings"] if f["code"] == "GSD002"]
        assert kernels == ["scale_andquant_kernel"]
        assert cap["findings"][0]["data"]["stream"] == "legacy"
        f = cap["findings"][0]
        frames = [f["location"], *f["stack"]]
        assert f["location"]["file"].endswith("cases/seed/ops.py")  # the call into the extension
        assert any(fr["file"].endswith("seed/script.py") and fr["function"] == "forward" for fr in frames)
        assert any(r["file"].endswith("seed_quant.cu") and r["line"] == 109 for r in f["related"])
        assert cap["site"]["file"].endswith("script.py")


def test_cli_check_seed_isolated_json():
    proc = subprocess.run([sys.executable, "-m", "graphsafe", "check", "graphsafe.cases.seed:buggy", "--json"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1, proc.stderr[-3000:]
    rep = json.loads(proc.stdout)
    assert rep["verdict"] == "mismatch"
    assert {f["code"] for f in rep["findings"] if f["severity"] == "error"} == {"GSD001", "GSD002"}
    located = {f["code"]: f for f in rep["findings"] if f["severity"] != "error"}
    assert set(located) == {"GSD023", "GSD026"}  # the localization: where, and what the graph lacks
    assert located["GSD023"]["data"]["op"] == "sym_quant_fuse"


def test_cli_check_seed_text_names_kernel_stream_and_fix():
    proc = subprocess.run([sys.executable, "-m", "graphsafe", "check", "graphsafe.cases.seed:buggy"],
                          capture_output=True, text=True, timeout=600, env={**__import__("os").environ,
                                                                             "COLUMNS": "200"})
    out = proc.stdout
    for needle in ("error[GSD002]", "scale_andquant_kernel", "legacy default stream", "ops.py",
                   "seed_quant.cu:109", "getCurrentCUDAStream", "verdict: mismatch"):
        assert needle in out, (needle, out)


def test_demo_on_gpu():
    proc = subprocess.run([sys.executable, "-m", "graphsafe", "demo"], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "demo ok" in proc.stdout
