"""GraphRunner's argument checks, the sentinel's C callback and Python reporting, without a GPU."""
from __future__ import annotations

import ctypes
import warnings

import pytest

torch = pytest.importorskip("torch")

from graphsafe.runner import cupti, shim  # noqa: E402
from graphsafe.runner.graph_runner import GraphRunner  # noqa: E402
from graphsafe.doctor.render import finding_text  # noqa: E402
from graphsafe.runner.sentinel import (  # noqa: E402
    Capture, CaptureViolationError, GraphCaptureWarning, Sentinel, from_environment,
)


# -- GraphRunner: bad input is refused with a clear error -------------------------------------------------
@pytest.mark.parametrize("sizes", [(), (0, 1), (-2,), None])
def test_runner_refuses_bad_batch_sizes(sizes):
    with pytest.raises(ValueError, match="batch_sizes must be positive integers"):
        GraphRunner(torch.nn.Identity(), sizes)


def test_runner_refuses_a_model_that_is_not_callable():
    with pytest.raises(TypeError, match="model must be callable"):
        GraphRunner(42)


def test_runner_refuses_no_warmup():
    with pytest.raises(ValueError, match="warmup"):
        GraphRunner(torch.nn.Identity(), warmup=0)


@pytest.mark.parametrize("args, message", [
    ((torch.zeros(0, 4),), "batch size 0"),
    ((3,), "at least one tensor argument with a batch dimension"),
    ((torch.zeros(2, 4), torch.zeros(3, 4)), r"disagree on the batch size .*\[2, 3\]"),
    ((torch.zeros(2, 4),), "must be CUDA tensors"),
])
def test_runner_refuses_bad_calls(args, message):
    runner = GraphRunner(lambda *a: a[0], (1, 2))
    with pytest.raises(ValueError, match=message):
        runner(*args)
    assert not runner.captured


# -- cupti: names and struct layouts -------------------------------------------------------------------------
def test_api_names_drop_version_and_keep_the_per_thread_variant():
    assert cupti.api_name("cudaLaunchKernel_v7000") == ("cudaLaunchKernel", False)
    assert cupti.api_name("cudaLaunchKernel_ptsz_v7000") == ("cudaLaunchKernel", True)
    assert cupti.api_name("cuMemcpyHtoDAsync_v2") == ("cuMemcpyHtoDAsync", False)
    assert cupti.api_name("cuLaunchKernelEx_ptsz") == ("cuLaunchKernelEx", True)


def test_stream_offsets_follow_the_structs():
    # the layouts of the CUDA 12/13 headers (the GPU suite compares them with offsetof on the real headers)
    assert cupti.offsets(cupti.RtLaunchKernel, "stream") == (-1, 48)
    assert cupti.offsets(cupti.RtLaunchKernelExC, "config.stream") == (0, 32)
    assert cupti.offsets(cupti.RtMemcpyAsync, "stream") == (-1, 32)
    assert cupti.offsets(cupti.RtMemsetAsync, "stream") == (-1, 24)
    assert cupti.offsets(cupti.DrvLaunchKernel, "hStream") == (-1, 40)
    assert cupti.offsets(cupti.DrvLaunchKernelEx, "config.hStream") == (0, 32)
    assert cupti.offsets(cupti.DrvMemAsync, "hStream") == (-1, 24)


def test_read_stream_follows_the_config_pointer():
    config = cupti.RtLaunchConfig(stream=0x1234)
    params = cupti.RtLaunchKernelExC(config=ctypes.pointer(config))
    assert cupti.read_stream(ctypes.addressof(params), cupti.RtLaunchKernelExC, "config.stream") == 0x1234
    plain = cupti.RtLaunchKernel(stream=0x99)
    assert cupti.read_stream(ctypes.addressof(plain), cupti.RtLaunchKernel, "stream") == 0x99


# -- the native callback, driven with made-up CUPTI data ---------------------------------------------------
needs_cc = pytest.mark.skipif(shim.compiler() is None, reason="no C compiler")


class _Data(ctypes.Structure):
    _fields_ = cupti.CallbackData._fields_


@needs_cc
def test_native_callback_reports_only_uncaptured_work_and_capture_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHSAFE_BUILD_DIR", str(tmp_path / "ext"))
    shim.load.cache_clear()
    lib = shim.load()
    seen = []
    capturing = {0x10: 1, 0x20: 0, 0x2: 0}  # 0x10 capturing, 0x20 and the per-thread stream not

    @shim.NOTIFY
    def notify(domain, cbid, stream, rc, symbol, params):
        seen.append((domain, cbid, stream, rc, symbol))

    @ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(ctypes.c_int))
    def is_capturing(stream, status):
        status[0] = capturing.get(stream or 0, 0)
        return 0

    lib.gs_configure(notify, ctypes.cast(is_capturing, ctypes.c_void_p).value)
    lib.gs_watch_call(2, 211, -1, 48, 0)   # runtime launch, stream at 48
    lib.gs_watch_call(2, 214, -1, 48, 1)   # its per-thread variant
    lib.gs_watch_call(2, 165, -1, -1, 0)   # a synchronize: return code only
    me = ctypes.c_uint64(__import__("threading").get_ident()).value

    def fire(cbid, stream, rc=0, domain=2, site=1, symbol=b"k"):
        params = cupti.RtLaunchKernel(stream=stream)
        ret = ctypes.c_int(rc)
        data = _Data(callbackSite=site, functionParams=ctypes.addressof(params),
                     functionReturnValue=ctypes.addressof(ret), symbolName=symbol)
        if domain == 2 and site == 1:  # the entry a real call has first
            lib.gs_callback(None, 2, cbid, ctypes.byref(_Data(callbackSite=0)))
        lib.gs_callback(None, domain, cbid, ctypes.byref(data))

    fire(211, 0x20)
    assert seen == [], "no capture is open on this thread: nothing is reported"
    assert lib.gs_begin(me, 0x10) >= 0
    fire(211, 0x10)                 # on the capture stream
    fire(211, 0x30 + 0)             # unknown stream that reports capturing=0 -> escaped
    fire(214, 0)                    # ptsz with stream 0 = per-thread stream -> escaped as 0x2
    fire(211, 0x20, rc=1)           # failed launch: not escaped work
    fire(165, 0, rc=900)            # a synchronize rejected by the capture
    fire(999, 0x20)                 # not watched
    lib.gs_end(me)
    fire(211, 0x20)
    assert [(s[1], s[2], s[3]) for s in seen] == [(211, 0x30, 0), (214, 0x2, 0), (165, 0, 900)]
    assert seen[0][4] == b"k"
    assert list((tmp_path / "ext" / "sentinel_shim").glob("sentinel_shim-*.so")), "built inside GRAPHSAFE_BUILD_DIR"

    # a runtime call whose exit came after an unsubscribe must not hide this thread's driver launches later
    lib.gs_watch_call(1, 307, -1, 40, 0)  # cuLaunchKernel, stream at 40
    lib.gs_callback(None, 2, 211, ctypes.byref(_Data(callbackSite=0)))  # entry seen, exit never
    lib.gs_configure(notify, ctypes.cast(is_capturing, ctypes.c_void_p).value)  # the next subscription
    seen.clear()
    lib.gs_begin(me, 0x10)
    params = cupti.DrvLaunchKernel(hStream=0x20)
    ret = ctypes.c_int(0)
    lib.gs_callback(None, 1, 307, ctypes.byref(_Data(callbackSite=1, functionParams=ctypes.addressof(params),
                                                     functionReturnValue=ctypes.addressof(ret))))
    lib.gs_end(me)
    assert [(s[0], s[1], s[2]) for s in seen] == [(1, 307, 0x20)]
    shim.load.cache_clear()


# -- the Python side: a finding with the call site, as a warning or an exception at that call ---------------
def _fake_capture(sentinel: Sentinel) -> Capture:
    import threading

    cap = Capture(index=1, thread=threading.get_ident(), stream=0x10, site=None)
    sentinel.captures.append(cap)
    sentinel._live[cap.thread] = cap
    sentinel._table = {(2, 211): ("cudaLaunchKernel", False, "kernel", cupti.RtLaunchKernel, "stream")}
    return cap


def _launch_escaped(sentinel: Sentinel):
    sentinel._on_notify(2, 211, 0, 0, b"_Z6kernelPf", 0)  # what the C callback calls: legacy stream


def test_escaped_work_becomes_a_warning_at_the_users_line():
    s = Sentinel("warn")
    _fake_capture(s)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        for _ in range(2): s._on_notify(2, 211, 0, 0, b"_Z6kernelPf", 0); line = _line()  # noqa: E701,E702
    (f,) = s.findings
    assert f.code == "GSD002" and f.data["kernel"] == "kernel(float*)" and "legacy default stream" in f.message
    assert f.location.file == __file__ and f.location.line == line
    assert any("was enqueued while the capture was open" in e for e in f.evidence)
    (warning,) = [x for x in w if issubclass(x.category, GraphCaptureWarning)]
    assert warning.filename == __file__ and warning.lineno == line
    assert "error[GSD002]" in str(warning.message) and "help:" in str(warning.message)
    assert len(s.findings) == 1 and f.data["count"] == 2, "repeats are counted, not reported again"


def test_strict_mode_raises_right_after_the_offending_call():
    s = Sentinel("strict")
    _fake_capture(s)
    reached = []
    with pytest.raises(CaptureViolationError) as info:
        _launch_escaped(s)
        reached.append("the next line")
    assert reached == []
    assert info.value.finding.code == "GSD002"
    assert "error[GSD002]" in str(info.value)
    entry = info.traceback[-2]  # the last is the sentinel's one-shot trace function that raised
    assert str(entry.path) == __file__  # raised as the offending frame returned: at its caller's line


def test_strict_mode_never_raises_on_a_jump_back():
    """Raising on the `with torch.cuda.graph` line as its block ends would skip __exit__ and leave the capture
    open: a jump back disarms, and capture end raises instead."""
    import sys

    s = Sentinel("strict")
    cap = _fake_capture(s)
    before = sys.gettrace()
    for i in range(2):
        if i == 0:
            s._on_notify(2, 211, 0, 0, b"k", 0)
    assert cap.pending is not None and cap.disarm is None and sys.gettrace() is before
    with pytest.raises(CaptureViolationError):
        s._end(None)


def test_warnings_as_errors_raise_like_strict_mode():
    s = Sentinel("warn")
    _fake_capture(s)
    with warnings.catch_warnings():
        warnings.simplefilter("error", GraphCaptureWarning)
        with pytest.raises(CaptureViolationError):
            _launch_escaped(s)
            pytest.fail("not raised at the call")


def test_capture_error_becomes_gsd003_once():
    s = Sentinel("warn")
    cap = _fake_capture(s)
    s._table[(2, 165)] = ("cudaDeviceSynchronize", False, None, None, None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s._on_notify(2, 165, 0, 900, None, 0)
        s._on_notify(2, 165, 0, 901, None, 0)
    (f,) = s.findings
    assert f.code == "GSD003" and "900" in f.message and cap.broken
    assert f.location.file == __file__
    assert "`cudaDeviceSynchronize` returned 900" in finding_text(f)


def test_sentinel_modes_and_environment(monkeypatch):
    with pytest.raises(ValueError, match="sentinel mode"):
        Sentinel("loud")
    monkeypatch.setenv("GRAPHSAFE_SENTINEL", "0")
    assert from_environment() is None
    monkeypatch.setenv("GRAPHSAFE_SENTINEL", "bogus")
    with pytest.warns(GraphCaptureWarning, match="GRAPHSAFE_SENTINEL='bogus' is not one of"):
        assert from_environment() is None


def test_sentinel_install_is_reversible():
    original = torch.cuda.CUDAGraph.capture_begin, torch.cuda.CUDAGraph.capture_end
    with Sentinel() as s:
        assert torch.cuda.CUDAGraph.capture_begin is not original[0]
        assert s._orig == original
    assert (torch.cuda.CUDAGraph.capture_begin, torch.cuda.CUDAGraph.capture_end) == original


def test_shim_without_a_compiler_says_so(monkeypatch, tmp_path):
    monkeypatch.setenv("GRAPHSAFE_BUILD_DIR", str(tmp_path / "none"))
    monkeypatch.setattr(shim, "compiler", lambda: None)
    shim.load.cache_clear()
    with pytest.raises(shim.ShimUnavailable, match="no C compiler"):
        shim.load()
    shim.load.cache_clear()


def _line() -> int:
    import sys

    return sys._getframe(1).f_lineno


def test_a_failure_inside_the_callback_is_said_at_capture_end():
    s = Sentinel("warn")
    _fake_capture(s)
    s._escaped = None  # the callback will fail calling it
    s._on_notify(2, 211, 0, 0, b"k", 0)
    assert s.unavailable.startswith("sentinel callback failed: TypeError")
    with pytest.warns(GraphCaptureWarning, match="stopped watching captures"):
        s._end(None)
