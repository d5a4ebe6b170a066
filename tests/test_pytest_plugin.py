"""graphsafe's pytest plugin, run through pytest's own ``pytester`` (CPU half; the GPU half is in
test_gpu_runner.py)."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="the no-GPU behaviour (GPU runs: test_gpu_runner)")

USER_TESTS = """
import pytest
import torch
import graphsafe

def double(x):
    return x * 2

def inputs(seed):
    g = torch.Generator(device="cuda").manual_seed(seed)
    return (torch.randn(4, 8, device="cuda", generator=g),)

def test_fixture(graph_safe):
    graph_safe(double, inputs)

def test_function():
    graphsafe.assert_graph_safe(double, inputs)

@pytest.mark.graph_safe(inputs=inputs, n_inputs=2)
def test_marked(x):
    return x * 2
"""


def test_without_a_gpu_checks_skip_with_a_graphsafe_reason(pytester):
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest("-rs")
    result.assert_outcomes(skipped=3)
    result.stdout.fnmatch_lines(["*graphsafe: needs a CUDA GPU*"])


def test_fail_on_skip_turns_those_skips_into_failures(pytester):
    pytester.makepyfile(test_user=USER_TESTS + "\ndef test_other():\n    pytest.skip('not ours')\n")
    result = pytester.runpytest("--graphsafe-fail-on-skip")
    result.assert_outcomes(failed=3, skipped=1)
    result.stdout.fnmatch_lines(["*skipped under --graphsafe-fail-on-skip: graphsafe: needs a CUDA GPU*"])


def test_fail_on_skip_from_the_ini_file(pytester):
    pytester.makepyfile(test_user=USER_TESTS)
    pytester.makeini("[pytest]\ngraphsafe_fail_on_skip = true\n")
    pytester.runpytest().assert_outcomes(failed=3)


def test_the_marker_works_with_parametrize(pytester):
    pytester.makepyfile(test_user="""
import pytest, torch

def inputs(seed):
    return (torch.zeros(2),)

@pytest.mark.parametrize("scale", [2.0, 3.0])
@pytest.mark.graph_safe(inputs=inputs)
def test_scaled(x, scale):
    return x * scale
""")
    result = pytester.runpytest("-rs")
    result.assert_outcomes(skipped=2)
    result.stdout.fnmatch_lines(["*graphsafe: needs a CUDA GPU*"])


def test_a_marker_without_inputs_is_a_usage_error(pytester):
    pytester.makepyfile(test_user="import pytest\n@pytest.mark.graph_safe\ndef test_x():\n    pass\n")
    result = pytester.runpytest()
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*graph_safe needs inputs=callable(seed)*"])


def test_the_plugin_loads_from_its_entry_point(pytester):
    result = pytester.runpytest_subprocess("--help")
    result.stdout.fnmatch_lines(["*graphsafe: CUDA-graph safety checks*", "*--graphsafe-fail-on-skip*",
                                 "*--graphsafe-sentinel*"])


def test_assert_graph_safe_outside_pytest_raises(monkeypatch):
    import graphsafe

    monkeypatch.delenv("PYTEST_CURRENT_TEST")
    with pytest.raises(RuntimeError, match="graphsafe: needs a CUDA GPU"):
        graphsafe.assert_graph_safe(lambda x: x, lambda seed: (torch.zeros(1),))
