"""GraphRunner, the capture sentinel and the pytest plugin on a GPU."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import traceback
import warnings
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.gpu

from graphsafe.cases import seed  # noqa: E402
from graphsafe.doctor.check import _recover_from_failed_capture  # noqa: E402
from graphsafe.doctor.target import call, resolve  # noqa: E402
from graphsafe.runner import cupti  # noqa: E402
from graphsafe.runner.graph_runner import GraphMismatchError, GraphRunner  # noqa: E402
from graphsafe.runner.sentinel import CaptureViolationError, GraphCaptureWarning, Sentinel  # noqa: E402

_C = "graphsafe.cases."


def _capture_under(spec: str, mode: str = "warn"):
    """Warm up and capture a zoo target under a sentinel; returns (sentinel, warnings, exception)."""
    t = resolve(spec)
    x = t.make_inputs(0)
    err = None
    with warnings.catch_warnings(record=True) as w, torch.no_grad():
        warnings.simplefilter("always")
        with Sentinel(mode) as s:
            try:
                for _ in range(2):
                    call(t.fn, x)
                torch.cuda.synchronize()
                g = torch.cuda.CUDAGraph()
                with torch.cuda.graph(g):
                    call(t.fn, x)
            except Exception as exc:  # noqa: BLE001 - returned to the test
                err = exc
    if err is not None:
        _recover_from_failed_capture(torch.device("cuda"))
    torch.cuda.synchronize()
    return s, [m for m in w if issubclass(m.category, GraphCaptureWarning)], err


# -- sentinel ---------------------------------------------------------------------------------------------
ESCAPED = [("seed:buggy", "ops.py", "legacy"), ("escaped_per_thread:bad", "escaped_per_thread.py", "per_thread"),
           ("escaped_legacy:bad", "_common.py", "legacy"), ("escaped_owned_stream:bad", "_common.py", "other")]
BREAKING = [("capture_breaking:" + v, "capture_breaking.py") for v in
            ("item", "synchronize", "mask_index", "cuda_malloc", "pageable_copy")]
CLEAN = ["seed:fixed", "escaped_per_thread:good", "escaped_legacy:good", "escaped_owned_stream:good",
         "capture_breaking:item_fixed", "frozen_scalar:good", "stream_race:good"]


@pytest.mark.parametrize("spec, file, stream", ESCAPED, ids=[e[0] for e in ESCAPED])
def test_sentinel_reports_escaped_work_at_the_call(spec, file, stream):
    s, w, err = _capture_under(_C + spec)
    assert err is None and s.unavailable is None and s.native
    found = [f for f in s.findings if f.code == "GSD002"]
    assert found, [(f.code, f.message) for f in s.findings]
    assert all(f.data["stream"] == stream for f in found)
    assert Path(found[0].location.file).name == file
    assert w and "error[GSD002]" in str(w[0].message) and Path(w[0].filename).name == file


@pytest.mark.parametrize("spec, file", BREAKING, ids=[b[0] for b in BREAKING])
def test_sentinel_reports_capture_breaking_calls(spec, file):
    s, w, err = _capture_under(_C + spec)
    assert err is not None  # the capture itself still fails, as it would without the sentinel
    (f,) = [f for f in s.findings if f.code == "GSD003"]
    assert Path(f.location.file).name == file, f.location
    assert w and "error[GSD003]" in str(w[0].message)


@pytest.mark.parametrize("spec", CLEAN)
def test_sentinel_is_quiet_on_graph_safe_code(spec):
    s, w, err = _capture_under(_C + spec)
    assert err is None and s.findings == [] and w == []


@pytest.mark.parametrize("spec, file", [("seed:buggy", "model.py"), ("escaped_per_thread:bad", "target.py")])
def test_strict_sentinel_raises_in_the_capturing_code(spec, file):
    s, _, err = _capture_under(_C + spec, mode="strict")
    assert isinstance(err, CaptureViolationError), "".join(traceback.format_exception(err)) if err else s.findings
    assert err.finding.code == "GSD002" and "error[GSD002]" in str(err)
    frames = [Path(fs.filename).name for fs in traceback.extract_tb(err.__traceback__)]
    assert file in frames, frames


def test_sentinel_sees_triton_launches_on_the_driver_api():
    from graphsafe.quant import sym_quant

    x = torch.randn(4, 256, device="cuda", dtype=torch.float16)
    side = torch.cuda.Stream()
    q, scale = sym_quant(x)
    torch.cuda.synchronize()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with Sentinel() as s:
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g):
                with torch.cuda.stream(side):  # not joined to the capture: escapes (out=: no allocation)
                    sym_quant(x, out=q, scale_out=scale)
    torch.cuda.synchronize()
    found = [f for f in s.findings if f.code == "GSD002"]
    assert found and found[0].data["api"].startswith("cu"), [(f.data.get("api"), f.message) for f in s.findings]
    assert Path(found[0].location.file).name == "test_gpu_runner.py"


def test_python_callback_fallback_finds_the_same(monkeypatch):
    monkeypatch.setattr(Sentinel, "_native_callback", lambda self: __import__("ctypes").cast(
        self._callback, __import__("ctypes").c_void_p).value)
    s, _, err = _capture_under(_C + "seed:buggy")
    assert err is None and [f.code for f in s.findings] == ["GSD002"]


def test_sentinel_says_when_cupti_is_taken():
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]):
        torch.ones(4, device="cuda").sum()
        s, w, _ = _capture_under(_C + "seed:fixed")
    if s.unavailable is not None:  # this CUPTI allows one subscriber: the sentinel says it is not watching
        assert "cuptiSubscribe failed" in s.unavailable
        assert any("not watching captures" in str(m.message) for m in w)


def test_param_struct_layouts_match_the_cuda_headers(tmp_path):
    inc = Path(os.environ.get("CUDA_HOME", "/usr/local/cuda")) / "include"
    if not (inc / "generated_cuda_runtime_api_meta.h").is_file():
        pytest.fail(f"CUPTI's generated headers are not under {inc}")
    checks = {
        "runtime": ("#include <cuda_runtime_api.h>\n#include <generated_cuda_runtime_api_meta.h>",
                    [("cudaLaunchKernel_v7000_params", "stream", cupti.RtLaunchKernel, "stream"),
                     ("cudaLaunchKernelExC_v11060_params", "config", cupti.RtLaunchKernelExC, "config"),
                     ("cudaLaunchConfig_t", "stream", cupti.RtLaunchConfig, "stream"),
                     ("cudaMemcpyAsync_v3020_params", "stream", cupti.RtMemcpyAsync, "stream"),
                     ("cudaMemcpyAsync_v3020_params", "count", cupti.RtMemcpyAsync, "count"),
                     ("cudaMemsetAsync_v3020_params", "stream", cupti.RtMemsetAsync, "stream")]),
        "cupti": ("#include <cupti.h>",
                  [("CUpti_CallbackData", "functionParams", cupti.CallbackData, "functionParams"),
                   ("CUpti_CallbackData", "functionReturnValue", cupti.CallbackData, "functionReturnValue"),
                   ("CUpti_CallbackData", "symbolName", cupti.CallbackData, "symbolName")]),
    }
    # the driver structs are not compiled here: CUDA 13.0's generated_cuda_meta.h does not compile on its own
    # (it repeats definitions and names internal _v1 types); the Triton test above exercises cuLaunchKernelEx
    for name, (head, rows) in checks.items():
        body = "\n".join(f'printf("%zu\\n", offsetof({t}, {f}));' for t, f, _, _ in rows)
        src = tmp_path / f"{name}.c"
        src.write_text(f"#include <stdio.h>\n#include <stddef.h>\n{head}\nint main(void) {{ {body} return 0; }}\n")
        exe = tmp_path / name
        proc = subprocess.run(["cc", f"-I{inc}", str(src), "-o", str(exe)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-2000:]
        got = [int(v) for v in subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout.split()]
        assert got == [getattr(s, f).offset for _, _, s, f in rows], (name, rows)


def test_environment_variable_and_run_sentinel(tmp_path):
    env = {**os.environ, "GRAPHSAFE_SENTINEL": "strict", "PYTHONPATH": os.pathsep.join(sys.path)}
    code = textwrap.dedent("""
        import graphsafe, torch
        from graphsafe.cases import seed
        t = seed.buggy(); x = t.make_inputs(0); t.fn(*x); torch.cuda.synchronize()
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            t.fn(*x)
    """)
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "CaptureViolationError" in proc.stderr and "GSD002" in proc.stderr, proc.stderr
    script = seed.SCRIPT
    proc = subprocess.run([sys.executable, "-m", "graphsafe", "run", "--sentinel", "--json", str(script)],
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert '"GSD002"' in proc.stdout and "scale_andquant_kernel" in proc.stdout


# -- GraphRunner ------------------------------------------------------------------------------------------
def _w4a4_model():
    from graphsafe.quant import W4A4Linear

    torch.manual_seed(0)
    lin = torch.nn.Linear(512, 384, bias=True).cuda().half()
    return W4A4Linear.from_float(lin).eval()


@torch.inference_mode()
def test_runner_replays_the_w4a4_model_for_every_batch(caplog):
    model = _w4a4_model()
    runner = GraphRunner(model, (1, 2, 4, 8), verify=True)
    caplog.set_level(logging.WARNING, logger="graphsafe.runner")
    for b in (3, 1, 2, 4, 5, 8, 7, 11, 12):
        x = torch.randn(b, 512, device="cuda", dtype=torch.float16)
        out = runner(x)
        assert out.shape == (b, 384)
        torch.testing.assert_close(out, model(x), rtol=2e-2, atol=2e-2)  # padded rows may pick other kernels
    assert sorted(runner.buckets) == [1, 2, 4, 8] and all(bk.verified for bk in runner.buckets.values())
    assert runner.stats == {"replays": 7, "eager": 2}
    eager_logs = [r for r in caplog.records if "running eagerly" in r.getMessage()]
    assert len(eager_logs) == 1 and "11 is above the largest captured batch size 8" in eager_logs[0].getMessage()


@torch.inference_mode()
def test_runner_runs_the_seeds_model_with_graphsafe_quant():
    from graphsafe.quant import sym_quant
    from graphsafe.quant.reference import sym_quant_reference

    model = seed.model_w4a4(1, seed.N, seed.K, quant=sym_quant)
    runner = GraphRunner(model, seed.BATCH_SIZES, verify=True)
    for b in (1, 2, 3, 4):
        x = torch.randn(b, seed.N, device="cuda", dtype=torch.float16)
        torch.testing.assert_close(runner(x).cpu(), sym_quant_reference(x.cpu())[1], rtol=0, atol=0)


@torch.inference_mode()
def test_runner_verify_raises_the_doctors_diagnosis():
    model = seed.model_w4a4(1, seed.N, seed.K)  # the user's buggy kernel
    runner = GraphRunner(model, (1, 2), verify=True)
    with pytest.raises(GraphMismatchError) as info:
        runner(torch.randn(2, seed.N, device="cuda", dtype=torch.float16))
    assert info.value.report is not None and "GSD002" in info.value.report.codes
    assert "scale_andquant_kernel" in str(info.value)


@torch.inference_mode()
def test_runner_outputs_copied_or_zero_copy():
    model = _w4a4_model()
    x1, x2 = (torch.randn(2, 512, device="cuda", dtype=torch.float16) for _ in range(2))
    copied = GraphRunner(model, (2,))
    a = copied(x1)
    copied(x2)
    torch.testing.assert_close(a, model(x1), rtol=2e-2, atol=2e-2)  # untouched by the second call
    views = GraphRunner(model, (2,), copy_outputs=False)
    a = views(x1)
    b = views(x2)
    assert a.data_ptr() == b.data_ptr() and torch.equal(a, b)  # documented: the next call overwrites


@torch.inference_mode()
def test_runner_bad_input():
    model = _w4a4_model()
    runner = GraphRunner(model, (1, 2))
    runner(torch.randn(1, 512, device="cuda", dtype=torch.float16))
    with pytest.raises(ValueError, match="batch size 0"):
        runner(torch.randn(0, 512, device="cuda", dtype=torch.float16))
    with pytest.raises(TypeError, match="dtype torch.float32; captured with torch.float16"):
        runner(torch.randn(1, 512, device="cuda"))
    with pytest.raises(ValueError, match="shape"):
        runner(torch.randn(1, 2, 512, device="cuda", dtype=torch.float16))
    with pytest.raises(ValueError, match="is on cpu"):
        runner(torch.randn(1, 512, dtype=torch.float16))

    scaled = GraphRunner(lambda x, s: x * s, (2,))
    scaled(torch.ones(2, 4, device="cuda"), 2.0)
    with pytest.raises(ValueError, match="frozen into the graphs"):
        scaled(torch.ones(2, 4, device="cuda"), 3.0)


def test_runner_failed_bucket_runs_eagerly_with_a_diagnosis(caplog):
    def step(x):
        if x.shape[0] == 4:
            return x * float(x.sum().item())  # a capture-breaking sync, only in the largest bucket
        return x * 2

    caplog.set_level(logging.WARNING, logger="graphsafe.runner")
    runner = GraphRunner(step, (2, 4), name="step")
    x = torch.randn(3, 8, device="cuda")
    out = runner(x)
    torch.testing.assert_close(out, step(x))
    assert runner.buckets[4].graph is None and runner.buckets[4].failure.code == "GSD003"
    assert runner.buckets[2].graph is not None
    torch.testing.assert_close(runner(x[:2]), x[:2] * 2)
    text = caplog.text
    assert "the capture of step at batch 4 failed" in text and "GSD003" in text and "running eagerly" in text


@torch.no_grad()
def test_runner_runs_a_transformers_static_cache_decode_step():
    """A server's pattern: capture at start-up, reset the cache and prefill, then replay decode steps."""
    from graphsafe.cases import real_models

    t = real_models.llama_decode()
    ids, pos = t.make_inputs(1)
    runner = GraphRunner(lambda input_ids, cache_position: t.fn(input_ids, cache_position), (real_models.BATCH,),
                         static=("cache_position",))
    runner.capture(input_ids=ids, cache_position=pos)
    for s in (1, 2):
        ids, _ = t.make_inputs(s)
        t.prepare(0)
        expected = t.fn(ids, pos).clone()
        t.prepare(0)
        torch.testing.assert_close(runner(input_ids=ids, cache_position=pos), expected, rtol=1e-4, atol=1e-4)
    assert runner.stats == {"replays": 2, "eager": 0}


# -- pytest plugin ----------------------------------------------------------------------------------------
def test_plugin_fails_an_unsafe_function_with_the_diagnosis(pytester):
    pytester.makepyfile(test_user="""
        import pytest, torch, graphsafe
        from graphsafe.cases import seed

        def test_buggy(graph_safe):
            graph_safe(seed.buggy())

        def test_fixed():
            graphsafe.assert_graph_safe(seed.fixed())

        def inputs(seed):
            g = torch.Generator(device="cuda").manual_seed(seed)
            return (torch.randn(4, 8, device="cuda", generator=g),)

        @pytest.mark.graph_safe(inputs=inputs)
        def test_marked_escapes(x):
            out = torch.empty_like(x)
            with torch.cuda.stream(torch.cuda.default_stream()):
                torch.mul(x, 2, out=out)
            return out

        @pytest.mark.graph_safe(inputs=inputs, n_inputs=2)
        def test_marked_clean(x):
            return x * 2
    """)
    from importlib.metadata import entry_points

    installed = any(e.name == "graphsafe" for e in entry_points(group="pytest11"))
    result = pytester.runpytest("--graphsafe-fail-on-skip", *(() if installed else ("-p", "graphsafe.pytest_plugin")))
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines(["*is not graph-safe (verdict mismatch*", "*error?GSD002?*scale_andquant_kernel*"])
    assert "test_marked_escapes" in result.stdout.str() and "GSD002" in result.stdout.str()
