"""The command line on a machine without a GPU: clear messages, documented exit statuses."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour without a GPU")
HERE = Path(__file__).parent


def gs(*args, timeout=300):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
           "COLUMNS": "160"}
    return subprocess.run([sys.executable, "-m", "graphsafe", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


@no_gpu
@pytest.mark.parametrize("isolate", [[], ["--no-isolate"]])
def test_check_without_gpu_is_inconclusive(isolate):
    p = gs("check", "graphsafe.cases.graph_safe_torch:good", "--json", *isolate)
    assert p.returncode == 2, p.stderr
    rep = json.loads(p.stdout)
    assert rep["verdict"] == "inconclusive" and [f["code"] for f in rep["findings"]] == ["GSD006"]


@no_gpu
def test_check_text_output_is_rustc_style():
    p = gs("check", "graphsafe.cases.graph_safe_torch:good")
    assert p.returncode == 2
    assert "error[GSD006]: no CUDA GPU is available" in p.stdout
    assert "= help:" in p.stdout and "verdict: inconclusive" in p.stdout


@pytest.mark.parametrize("spec, extra, message", [
    ("graphsafe.cases.nope:x", [], "cannot import module 'graphsafe.cases.nope'"),
    ("graphsafe.cases.raises:nope", [], "has no attribute 'nope'"),
    ("helper_targets:not_callable", [], "is not callable"),
    ("helper_targets:plain", [], "--inputs MODULE:FUNC"),
    ("no_colon", [], "expected MODULE:NAME"),
])
def test_bad_targets_get_a_clear_error(spec, extra, message):
    p = gs("check", spec, *extra)
    assert p.returncode == 2
    assert message in " ".join(p.stderr.split()), p.stderr
    assert "Traceback" not in p.stderr


def test_a_crashing_target_is_reported_not_fatal():
    p = gs("check", "helper_crash:target", "--json")
    assert p.returncode == 2, p.stderr
    rep = json.loads(p.stdout)
    [f] = rep["findings"]
    assert f["code"] == "GSD009" and "SIGABRT" in f["evidence"][0]


@no_gpu
def test_demo_without_gpu_explains_and_points_at_the_launch():
    p = gs("demo")
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert "No CUDA GPU here" in out
    assert "error[GSC001]" in out and "seed_quant.cu:109:5" in out  # lint: the stream-less launch
    assert "scale_andquant_kernel<<<grid, block>>>" in out and "getCurrentCUDAStream" in out
    assert "warning[GSC006]" in out and "warning[GSP007]" in out
    assert "seed_quant_fixed.cu: 0 findings (its launch at line 103 runs on `at::cuda::getCurrentCUDAStream()`)" \
        in " ".join(out.split())
    assert "error[GSD002]" in out  # the diagnosis recorded on a GPU


@pytest.mark.parametrize("code", ["GSD001", "GSD002", "GSD003", "GSD004", "GSD005", "GSD006", "GSD007", "GSD008",
                                  "GSD009", "gsd002", "GSC001", "GSP007", "GSX001"])
def test_explain_every_code(code):
    p = gs("explain", code)
    assert p.returncode == 0, p.stderr
    assert code.upper() in p.stdout


def test_explain_shows_bad_and_good_examples():
    out = gs("explain", "GSD002").stdout
    assert "bad example: graphsafe check graphsafe.cases.seed:buggy" in out
    assert "scale_andquant_kernel<<<grid, block>>>" in out
    assert "good example: graphsafe check graphsafe.cases.seed:fixed" in out
    assert "C10_CUDA_KERNEL_LAUNCH_CHECK" in out


def test_explain_unknown_code():
    p = gs("explain", "GSD999")
    assert p.returncode == 2 and "unknown code" in p.stderr


@no_gpu
def test_run_without_gpu(tmp_path):
    script = tmp_path / "s.py"
    script.write_text("import sys\nprint('hello', sys.argv[1:])\n")
    p = gs("run", str(script), "a", "b")
    assert p.returncode == 2
    assert "hello ['a', 'b']" in p.stdout and "no CUDA GPU" in p.stdout and "0 captures" in p.stdout


def test_run_reports_a_raising_script(tmp_path):
    script = tmp_path / "boom.py"
    script.write_text("raise ValueError('boom')\n")
    p = gs("run", "--json", str(script))
    assert p.returncode == 2
    assert json.loads(p.stdout)["script_error"].startswith("ValueError: boom")


def test_run_missing_script():
    p = gs("run", "/nonexistent/script.py")
    assert p.returncode == 2 and "no such script" in p.stderr


def test_explain_lint_rule_lints_its_bad_example():
    out = " ".join(gs("explain", "GSP001").stdout.split())
    assert "bad example (example.py)" in out and "good example (example.py)" in out
    assert "error[GSP001]: `.item()` copies to the host and waits" in out  # the live diagnostic


@no_gpu
def test_w4a4_example_runs_the_layers_on_the_cpu_and_says_what_needs_a_gpu():
    p = subprocess.run([sys.executable, str(HERE.parent / "examples" / "w4a4_mlp.py"), "--buckets", "1,3"],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0] == "MLP 256 -> 512 -> 256 on cpu; relative error against the float32 model:"
    errors = [float(line.rsplit(" ", 1)[1]) for line in lines[1:3]]
    assert [line.split(":")[0].strip() for line in lines[1:3]] == ["batch 1", "batch 3"]
    assert all(0 < e < 0.6 for e in errors), errors  # INT4 noise, not garbage (garbage is about 1 or more)
    assert "GraphRunner (verify=True)" in lines[3] and "need one" in lines[3]


@no_gpu
def test_example_script_reports_without_a_gpu():
    p = subprocess.run([sys.executable, str(HERE.parent / "examples" / "check_my_op.py")], capture_output=True,
                       text=True, timeout=120, env={**os.environ, "COLUMNS": "160"})
    assert p.returncode == 2, p.stderr
    assert "error[GSD006]" in p.stdout and "verdict: inconclusive" in p.stdout
