"""pytest plugin for the `gpu` marker. Without a GPU, gpu tests are skipped; with `--require-gpu` (the
GPU suite's switch) a skipped gpu test fails, and so does a run that collected no gpu test."""
from __future__ import annotations

import pytest


def pytest_addoption(parser):
    parser.addoption("--require-gpu", action="store_true",
                     help="fail (not skip) when a gpu test cannot run, and when no gpu test was collected")


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs a CUDA GPU (run with `pytest -m gpu --require-gpu`)")


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
