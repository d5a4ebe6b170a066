"""graphsafe's pytest plugin (registered through the ``pytest11`` entry point, so installing graphsafe enables it).

* ``graphsafe.assert_graph_safe(fn, make_inputs, **check_options)`` (also the ``graph_safe`` fixture): run the
  doctor on ``fn``; a mismatch, an inconclusive check or any error finding fails the test with the diagnosis.
* ``@pytest.mark.graph_safe(inputs=make_inputs, **check_options)``: the test function itself is the step that is
  captured and replayed (its fixtures are bound first); ``inputs(seed)`` returns its remaining arguments.
* Without a CUDA GPU both skip with a reason that starts with ``graphsafe:``; ``--graphsafe-fail-on-skip`` (or
  the ini option ``graphsafe_fail_on_skip = true``) turns those skips into failures, for GPU CI jobs.
* ``--graphsafe-sentinel=warn|strict`` watches every capture the test session makes (``GRAPHSAFE_SENTINEL`` does
  too: importing this plugin imports graphsafe, which reads it).
"""
from __future__ import annotations

import functools
import inspect
import os
import sys

import pytest

SKIP_PREFIX = "graphsafe: "


def pytest_addoption(parser):
    group = parser.getgroup("graphsafe", "graphsafe: CUDA-graph safety checks")
    group.addoption("--graphsafe-fail-on-skip", action="store_true", default=None,
                    help="fail graphsafe checks that would skip (no CUDA GPU) instead of skipping them")
    group.addoption("--graphsafe-sentinel", choices=("warn", "strict"), default=None,
                    help="watch every CUDA-graph capture of the session for escaped work and capture-breaking calls")
    parser.addini("graphsafe_fail_on_skip", "fail graphsafe checks that would skip", type="bool", default=False)


def pytest_configure(config):
    config.addinivalue_line("markers", "graph_safe(inputs, **options): run the test function through graphsafe's "
                                       "doctor: eager vs CUDA-graph replay on inputs(seed)")
    mode = config.getoption("--graphsafe-sentinel")
    if mode:
        from .runner.sentinel import Sentinel

        config._graphsafe_sentinel = Sentinel(mode)
        config._graphsafe_sentinel.install()


def pytest_unconfigure(config):
    s = getattr(config, "_graphsafe_sentinel", None)
    if s is not None:
        s.uninstall()


def _fail_on_skip(config) -> bool:
    opt = config.getoption("--graphsafe-fail-on-skip")
    return bool(opt) if opt is not None else bool(config.getini("graphsafe_fail_on_skip"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.skipped and _fail_on_skip(item.config) and call.excinfo is not None:
        reason = str(getattr(call.excinfo.value, "msg", "") or call.excinfo.value)
        if reason.startswith(SKIP_PREFIX):
            rep.outcome = "failed"
            rep.longrepr = f"graphsafe check skipped under --graphsafe-fail-on-skip: {reason}"


class GraphSafetyError(AssertionError):
    """``assert_graph_safe`` failed; ``report`` is the doctor's report."""

    def __init__(self, message: str, report):
        super().__init__(message)
        self.report = report


def assert_graph_safe(fn, make_inputs=None, **options):
    """Check ``fn`` (or a :class:`graphsafe.Target`) with the doctor and fail with its diagnosis unless the verdict
    is ``match`` or ``benign`` with no errors. Returns the report. Without a CUDA GPU it skips (under pytest) or
    raises ``RuntimeError`` (elsewhere)."""
    import torch

    from .doctor.check import check

    if not torch.cuda.is_available():
        msg = f"{SKIP_PREFIX}needs a CUDA GPU (torch.cuda.is_available() is False)"
        if _under_pytest():
            pytest.skip(msg)
        raise RuntimeError(msg)
    report = check(fn, make_inputs, **options)
    errors = [f for f in report.findings if f.severity == "error"]
    if report.verdict in ("match", "benign") and not errors:
        return report
    from .doctor.render import report_text

    text = report_text(report)
    raise GraphSafetyError(f"graphsafe: {report.target} is not graph-safe (verdict {report.verdict}, "
                           f"{len(errors)} error(s))\n\n{text}", report)


def _under_pytest() -> bool:
    return "_pytest" in sys.modules and "PYTEST_CURRENT_TEST" in os.environ


@pytest.fixture
def graph_safe():
    """``graph_safe(fn, make_inputs, **options)``: :func:`assert_graph_safe` as a fixture."""
    return assert_graph_safe


class _StepArgument:
    """Placeholder for a marked test's own arguments: the doctor passes them, from ``inputs(seed)``."""

    def __repr__(self) -> str:
        return "<from inputs(seed)>"


_STEP = _StepArgument()


def pytest_generate_tests(metafunc):
    if metafunc.definition.get_closest_marker("graph_safe") is None:
        return
    parametrized = set()
    for mark in metafunc.definition.iter_markers("parametrize"):
        names = mark.args[0] if mark.args else mark.kwargs.get("argnames", ())
        parametrized.update(n.strip() for n in (names.split(",") if isinstance(names, str) else names))
    step = [n for n in metafunc.fixturenames if n not in metafunc._arg2fixturedefs and n not in parametrized
            and n in inspect.signature(metafunc.function).parameters]
    if step:
        metafunc.parametrize(",".join(step), [tuple(_STEP for _ in step)] if len(step) > 1 else [_STEP],
                             ids=["graphsafe"])


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    marker = pyfuncitem.get_closest_marker("graph_safe")
    if marker is None:
        return None
    options = dict(marker.kwargs)
    inputs = options.pop("inputs", None) or (marker.args[0] if marker.args else None)
    if not callable(inputs):
        raise pytest.UsageError(f"{pyfuncitem.nodeid}: @pytest.mark.graph_safe needs inputs=callable(seed) "
                                "returning the test function's arguments")
    params = inspect.signature(pyfuncitem.obj).parameters
    step = [n for n in params if pyfuncitem.funcargs.get(n) is _STEP]  # parametrized values stay fixtures
    fixtures = {n: pyfuncitem.funcargs[n] for n in params if n in pyfuncitem.funcargs and n not in step}
    test_fn = pyfuncitem.obj

    def step_fn(**kwargs):
        return test_fn(**fixtures, **kwargs)

    functools.update_wrapper(step_fn, test_fn)

    def make_inputs(seed: int):
        got = inputs(seed)
        if isinstance(got, dict):
            return got
        got = tuple(got) if isinstance(got, (tuple, list)) else (got,)
        if len(got) != len(step):
            raise TypeError(f"inputs({seed}) returned {len(got)} values for the test's arguments {step}")
        return dict(zip(step, got))

    options.setdefault("name", pyfuncitem.name)
    assert_graph_safe(step_fn, make_inputs, **options)
    return True
