"""pytest plugin for the `gpu` marker. Without a GPU, gpu tests are skipped; with `--require-gpu` (the
GPU suite's switch) a skipped gpu test fails, and so does a run that collected no gpu test or that lacks
a package the suite needs."""
from __future__ import annotations

import importlib.util

import pytest

# what the GPU suite imports beyond torch: graphsafe's dependencies, its `cuda` extra (graph census,
# tensor-core GEMV) and Triton. Missing ones fail a --require-gpu run at its start, by name, instead of
# as scattered test failures (without tree-sitter-cuda, say, reports lose their C++ launch lines).
GPU_SUITE_MODULES = {"rich": "rich", "tree_sitter": "tree-sitter", "tree_sitter_cuda": "tree-sitter-cuda",
                     "cuda.bindings": "cuda-bindings", "triton": "triton"}


def missing_modules() -> list[str]:
    """The distributions of GPU_SUITE_MODULES whose module cannot be found (looked up, not imported: the
    suite imports them itself, and importing Triton here, in pytest's start-up, is not free)."""
    missing = []
    for module, dist in GPU_SUITE_MODULES.items():
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a parent package missing, or a module blocked in sys.modules
            found = False
        if not found:
            missing.append(dist)
    return missing


def pytest_addoption(parser):
    parser.addoption("--require-gpu", action="store_true",
                     help="fail (not skip) when a gpu test cannot run, and when no gpu test was collected")


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs a CUDA GPU (run with `pytest -m gpu --require-gpu`)")
    missing = missing_modules() if config.getoption("--require-gpu") else []
    if missing:
        raise pytest.UsageError(f"--require-gpu: the GPU suite needs {', '.join(missing)}, which do not import "
                                "here; install them first (pip install -e \".[test,cuda]\")")


def _has_cuda() -> bool:
    try:
        import torch
        return torch.cuda.is_available()
    except Exception:  # noqa: BLE001 - no torch, no GPU
        return False


def pytest_collection_modifyitems(config, items):
    if _has_cuda():
        return
    reason = "needs a CUDA GPU" + (" (--require-gpu was given)" if config.getoption("--require-gpu") else "")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if item.config.getoption("--require-gpu") and "gpu" in item.keywords and rep.skipped:
        rep.outcome = "failed"
        rep.longrepr = f"gpu test skipped under --require-gpu: {rep.longrepr}"


def pytest_sessionfinish(session, exitstatus):
    if session.config.getoption("--require-gpu") and not any("gpu" in i.keywords for i in session.items):
        session.exitstatus = 1
        print("\n--require-gpu: no gpu test was collected")
