"""The command line's and the check API's answers to user mistakes: a clear message naming what is wrong and
exit status 2, never a traceback, never a user mistake reported as something the target did."""
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


def gs(*args, cwd=None, timeout=300):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
           "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "graphsafe", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=cwd)


def flat(text: str) -> str:
    return " ".join(text.split())


def test_messages_with_brackets_are_printed_as_typed():
    p = gs("run", "exp[v2]/train.py")
    assert p.returncode == 2 and "no such script: exp[v2]/train.py" in p.stderr
    p = gs("explain", "[/x]")
    assert p.returncode == 2 and "unknown code '[/x]'" in p.stderr and "Traceback" not in p.stderr


def test_explain_names_both_families_of_codes_and_trims_spaces():
    p = gs("explain", "GSZ1")
    assert p.returncode == 2
    assert "GSD001–GSD029" in p.stderr and "GSC001" in flat(p.stderr) and "GSP007" in flat(p.stderr)
    assert gs("explain", " gsd002 ").returncode == 0


@pytest.mark.parametrize("args, message", [
    (["--n-inputs", "0"], "argument --n-inputs: must be above 0, got 0"),
    (["--timeout", "-5"], "argument --timeout: must be above 0, got -5"),
    (["--call-timeout", "x"], "argument --call-timeout: expected a float, got 'x'"),
])
def test_bad_numbers_are_usage_errors(args, message):
    p = gs("check", "graphsafe.cases.seed:buggy", *args)
    assert p.returncode == 2 and message in p.stderr


@pytest.mark.parametrize("isolate", [[], ["--no-isolate"]])
def test_a_target_module_with_a_syntax_error_is_a_usage_error(tmp_path, isolate):
    (tmp_path / "badmod.py").write_text("def f(:\n    pass\n")
    p = gs("check", "badmod:f", *isolate, cwd=tmp_path)
    assert p.returncode == 2, p.stdout + p.stderr
    assert "cannot import module 'badmod': importing it raised SyntaxError" in flat(p.stderr)
    assert "Traceback" not in p.stderr and "GSD009" not in p.stdout


@no_gpu
@pytest.mark.parametrize("isolate", [[], ["--no-isolate"]])
def test_without_a_gpu_a_module_that_raises_as_it_loads_is_gsd006_with_the_error(tmp_path, isolate):
    """It may need the GPU to load (a CUDA tensor at module level): the report says there is none, and what
    the import raised, at the module's own line (not inside torch)."""
    (tmp_path / "cudamod.py").write_text("import torch\n\nW = torch.ones(4, device='cuda')\n")
    p = gs("check", "cudamod:f", "--json", *isolate, cwd=tmp_path)
    assert p.returncode == 2, p.stderr
    rep = json.loads(p.stdout)
    assert [f["code"] for f in rep["findings"]] == ["GSD006"]
    assert "cannot import module 'cudamod'" in rep["evidence"]["no_cuda"]
    assert f"(at {tmp_path / 'cudamod.py'}:3)" in rep["evidence"]["no_cuda"]


def test_with_a_gpu_a_module_that_raises_as_it_loads_is_a_usage_error(tmp_path, monkeypatch):
    from graphsafe.doctor import check, environment, worker  # noqa: F401 - check binds the unpatched name
    from graphsafe.doctor.target import TargetError

    (tmp_path / "raisemod.py").write_text("def helper():\n    raise RuntimeError('boom at import')\n\nhelper()\n")
    monkeypatch.setattr(environment, "no_cuda_reason", lambda: None)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(TargetError, match=r"importing it raised RuntimeError: boom at import \(at .*raisemod.py:2\)"):
        worker.check_spec("raisemod:f", None, {})


@pytest.mark.parametrize("isolate", [[], ["--no-isolate"]])
def test_inputs_that_are_not_callable_are_a_usage_error(isolate):
    p = gs("check", "helper_targets:plain", "--inputs", "helper_targets:not_callable", *isolate)
    assert p.returncode == 2 and "--inputs helper_targets:not_callable is not callable (it is a int)" in p.stderr


@no_gpu
@pytest.mark.parametrize("isolate", [[], ["--no-isolate"]])
def test_without_a_gpu_the_seed_target_is_gsd006_not_a_setup_failure(isolate):
    """Its factory needs CUDA: without a GPU the check says so (GSD006) instead of reporting the factory's
    AssertionError as the target's fault (GSD004), in the child and in-process alike."""
    p = gs("check", "graphsafe.cases.seed:buggy", "--json", *isolate)
    assert p.returncode == 2, p.stderr
    assert [f["code"] for f in json.loads(p.stdout)["findings"]] == ["GSD006"]


def test_check_spec_reports_a_raising_factory_and_refuses_a_wrong_one(monkeypatch):
    from graphsafe.doctor import check, environment, worker  # check first: it binds the unpatched name
    from graphsafe.doctor.target import TargetError

    assert check.no_cuda_reason is environment.no_cuda_reason

    monkeypatch.setattr(environment, "no_cuda_reason", lambda: None)  # as on a GPU machine: the factory is built
    sys.path.insert(0, str(HERE))
    try:
        report = worker.check_spec("helper_targets:raising_factory", None, {})
        assert report.verdict == "inconclusive" and report.codes == ["GSD004"]
        assert report.evidence.failure.phase == "setup" and "factory boom" in report.evidence.failure.message
        with pytest.raises(TargetError, match="returned int, not a Target"):
            worker.check_spec("helper_targets:wrong_factory", None, {})
        with pytest.raises(TargetError, match="n_inputs must be at least 1"):
            worker.check_spec("helper_targets:raising_factory", None, {"n_inputs": 0})
    finally:
        sys.path.remove(str(HERE))


@no_gpu
def test_check_api_names_bad_arguments_and_honours_name():
    import graphsafe
    import graphsafe.doctor.options
    from graphsafe.doctor.target import Target

    def f(x):
        return x

    def mk(seed):
        return (torch.ones(2) * seed,)

    for kwargs, err, match in [({"n_inputs": "3"}, TypeError, "n_inputs must be an int, got str"),
                               ({"n_inputs": 0}, ValueError, "n_inputs must be at least 1"),
                               ({"capture_seed": "a"}, TypeError, "capture_seed must be an int"),
                               ({"rtol": -1.0}, ValueError, "rtol must be at least 0"),
                               ({"timeout_s": 0}, ValueError, "timeout_s must be above 0"),
                               ({"locate": "sometimes"}, ValueError, "locate must be"),
                               ({"locate": "never", "html": "x.html"}, ValueError, "need the localization")]:
        with pytest.raises(err, match=match):
            graphsafe.check(f, mk, **kwargs)
    np = pytest.importorskip("numpy")
    graphsafe.doctor.options.validate(n_inputs=np.int64(3), capture_seed=np.int32(0))  # numpy integers are ints
    with pytest.raises(TypeError, match="a Target carries its own inputs"):
        graphsafe.check(Target(f, mk), lambda s: 1 / 0)
    assert graphsafe.check(Target(f, mk), name="myname").target == "myname"


def test_run_says_how_the_script_exited(tmp_path):
    (tmp_path / "exitmsg.py").write_text("import sys\nsys.exit('fatal: config missing')\n")
    (tmp_path / "exit3.py").write_text("import sys\nsys.exit(3)\n")
    p = gs("run", str(tmp_path / "exitmsg.py"))
    assert p.returncode == 2 and "fatal: config missing" in p.stderr
    assert "the script exited with status 1" in p.stdout
    p = gs("run", str(tmp_path / "exit3.py"))
    assert p.returncode == 2 and "the script exited with status 3" in p.stdout
    p = gs("run", str(tmp_path))
    assert p.returncode == 2 and "is a directory" in p.stderr
    (tmp_path / "exittrue.py").write_text("import sys\nsys.exit(True)\n")
    assert "the script exited with status 1" in gs("run", str(tmp_path / "exittrue.py")).stdout


@pytest.mark.parametrize("args, message", [
    (["--select", "GSZ"], "--select: unknown code or prefix 'GSZ'"),
    (["--select", "GSP001X"], "unknown code or prefix 'GSP001X'"),
    (["--select", ","], "--select names no code"),
    (["--ignore", "GSQ"], "--ignore: unknown code or prefix 'GSQ'"),
    (["--config", "nosuch.toml"], "cannot read nosuch.toml: no such file"),
])
def test_lint_refuses_unknown_codes_and_missing_config(tmp_path, args, message):
    (tmp_path / "m.py").write_text("import torch\n")
    p = gs("lint", "m.py", *args, cwd=tmp_path)
    assert p.returncode == 2 and message in flat(p.stderr)


@pytest.mark.parametrize("line, message", [
    ('select = "GSP002"', "select must be a list of strings, got 'GSP002'"),
    ('ignore = "GSP001"', "ignore must be a list of strings"),
    ("exclude = 5", "exclude must be a list of strings, got 5"),
    ("select = [1]", "select must be a list of strings"),
    ('max-file-size = "abc"', "max-file-size must be a positive whole number of bytes"),
    ('select = ["GSQ"]', "select: unknown code or prefix 'GSQ'"),
    ("select = []", "select names no code"),
])
def test_lint_config_values_of_the_wrong_type_are_errors(tmp_path, line, message):
    (tmp_path / "pyproject.toml").write_text(f"[tool.graphsafe]\n{line}\n")
    (tmp_path / "m.py").write_text("import torch\n")
    p = gs("lint", "m.py", cwd=tmp_path)
    assert p.returncode == 2 and message in flat(p.stderr), p.stderr
    assert "Traceback" not in p.stderr
