"""The fail-on-skip switch of the GPU suite really fails runs in which a GPU test cannot run."""
from __future__ import annotations

import pytest

GPU_TEST = """
import pytest

@pytest.mark.gpu
def test_needs_gpu():
    import torch
    if not torch.cuda.is_available():
        pytest.skip("no gpu")
"""


@pytest.fixture
def no_cuda(monkeypatch):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this test runs the switch on a machine without a GPU")


def test_gpu_tests_skip_without_the_switch(pytester, no_cuda):
    pytester.makepyfile(GPU_TEST)
    pytester.runpytest("-p", "gpu_switch").assert_outcomes(skipped=1)


def test_switch_turns_a_skip_into_a_failure(pytester, no_cuda):
    pytester.makepyfile(GPU_TEST)
    result = pytester.runpytest("-p", "gpu_switch", "--require-gpu")
    result.assert_outcomes(errors=1)  # the skip happens at setup, so it is reported as an error
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*gpu test skipped under --require-gpu*"])


def test_switch_fails_a_run_without_gpu_tests(pytester):
    pytester.makepyfile("def test_cpu():\n    assert True\n")
    result = pytester.runpytest("-p", "gpu_switch", "--require-gpu", "-m", "gpu")
    assert result.ret != 0


def test_switch_fails_at_the_start_when_a_package_the_suite_needs_is_missing(pytester, monkeypatch):
    import gpu_switch
    pytester.makepyfile(GPU_TEST)
    monkeypatch.setitem(__import__("sys").modules, "tree_sitter_cuda", None)  # its import now fails
    assert "tree-sitter-cuda" in gpu_switch.missing_modules()
    result = pytester.runpytest("-p", "gpu_switch", "--require-gpu")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--require-gpu: the GPU suite needs *tree-sitter-cuda*"])
    assert "test_needs_gpu" not in result.stdout.str()  # nothing ran
