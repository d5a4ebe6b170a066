"""The capture sentinel: escaped work and capture-breaking calls, reported the moment they happen.

``with graphsafe.sentinel():`` (or ``graphsafe run --sentinel``, or ``GRAPHSAFE_SENTINEL=warn|strict`` in a
process that imports graphsafe) wraps ``torch.cuda.CUDAGraph.capture_begin``/``capture_end``, which
``torch.cuda.graph``, ``make_graphed_callables``, torch.compile's cudagraph trees and hand-written runners all
go through. While a capture is open it subscribes to CUPTI's callback API for the launch, copy, set,
synchronize and allocation calls only; outside captures nothing is enabled, so eager steps and graph replays
cost nothing extra.

On each watched call made by the capturing thread, at the call's exit:

* a CUDA capture error (900-908) in its return code is a capture-breaking call: GSD003;
* kernel, memcpy or memset work enqueued on a stream that is not capturing ran eagerly and is not in the
  graph: GSD002 (the seed's bug: a ``<<<grid, block>>>`` launch on the legacy default stream).

Work launched by *other* threads during a capture is left alone: with PyTorch's default capture mode their
unsafe calls fail on their own, and their kernels are not part of this graph.

A report is a :class:`~graphsafe.diagnostics.Finding` with the Python call site, the same as
``graphsafe check`` gives. In ``warn`` mode it becomes a :class:`GraphCaptureWarning` attributed to the user's
line; in ``strict`` mode a :class:`CaptureViolationError` is raised in the capturing thread as soon as control
returns to Python after the offending call, so the traceback ends at that call.
"""
from __future__ import annotations

import ctypes
import functools
import os
import sys
import threading
import warnings
from dataclasses import dataclass, field

from ..diagnostics import Finding, Location
from ..doctor import capture_errors, frames
from . import cupti, shim

ENV = "GRAPHSAFE_SENTINEL"
MODES = ("warn", "strict")
_STATUS_NONE = 0  # CU_STREAM_CAPTURE_STATUS_NONE
_LEGACY, _PER_THREAD = 0x1, 0x2


class GraphCaptureWarning(UserWarning):
    """A capture recorded something that makes replay differ from eager execution."""


class CaptureViolationError(RuntimeError):
    """Raised by a strict sentinel in the capturing thread; ``finding`` is the diagnosis."""

    finding: Finding | None = None

    def __init__(self, *args):
        if not args and self.finding is not None:
            from ..doctor.render import finding_text

            args = (finding_text(self.finding),)
        super().__init__(*args)


@dataclass
class Capture:
    index: int
    thread: int
    stream: int                                # the handle torch captures on
    site: Location | None
    findings: list[Finding] = field(default_factory=list)
    keys: dict = field(default_factory=dict)   # merge key -> finding (repeated launches are counted)
    broken: bool = False                       # a capture-breaking call was reported
    pending: type | None = None                # strict mode: the exception not raised yet
    disarm: object = None                      # strict mode: undoes the one-shot trace


class Sentinel:
    """Watches every CUDA-graph capture in the process while installed (``with`` or install/uninstall)."""

    def __init__(self, mode: str = "warn") -> None:
        if mode not in MODES:
            raise ValueError(f"sentinel mode must be one of {MODES}, got {mode!r}")
        self.mode = mode
        self.captures: list[Capture] = []
        self.unavailable: str | None = None  # why CUPTI could not be used (reported once, never silent)
        self._live: dict[int, Capture] = {}  # capturing thread -> its open capture
        self._runtime_depth: dict[int, int] = {}
        self._orig = None
        self._handle: int | None = None
        self._lib: cupti.Cupti | None = None
        self._table: dict[tuple[int, int], tuple] = {}
        self._callback = cupti.Cupti.CALLBACK(self._on_api)  # used only when the native shim cannot be built
        self._notify = shim.NOTIFY(self._on_notify)
        self._native = None
        self.native: bool | None = None  # True: the C callback; False: the Python one (slower captures)
        self._lock = threading.Lock()
        self._said_failure = False
        self._retry = False  # CUPTI was held by another client: try again at the next capture
        # "calls": CUPTI calls in for the watched calls only; "domains": for every runtime and driver call (the
        # C callback drops the rest). Kept for benchmarks/decode.py, which measures both.
        self.enable_scope = "calls"

    # -- public ------------------------------------------------------------------------------------------
    @property
    def findings(self) -> list[Finding]:
        return [f for c in self.captures for f in c.findings]

    def __enter__(self) -> Sentinel:
        self.install()
        return self

    def __exit__(self, *exc) -> None:
        self.uninstall()

    def install(self) -> None:
        import torch

        if self._orig is not None:
            return
        cls = torch.cuda.CUDAGraph
        self._orig = (cls.capture_begin, cls.capture_end)
        orig_begin, orig_end = self._orig
        me = self

        def capture_begin(graph, *args, **kwargs):
            me._begin(torch.cuda.current_stream().cuda_stream)
            try:
                return orig_begin(graph, *args, **kwargs)
            except BaseException:
                me._end(sys.exc_info()[1])
                raise

        def capture_end(graph, *args, **kwargs):
            in_flight = sys.exc_info()[1]  # torch.cuda.graph's __exit__ while an exception propagates
            try:
                out = orig_end(graph, *args, **kwargs)
            except BaseException as exc:
                me._end(exc)
                if isinstance(in_flight, CaptureViolationError):
                    # the strict exception unwound out of the capture, and CUDA then reports the capture
                    # invalidated: the sentinel's diagnosis is the cause, so it is what propagates
                    raise in_flight from exc
                raise
            me._end(in_flight)
            return out

        capture_begin.__wrapped__, capture_end.__wrapped__ = orig_begin, orig_end
        cls.capture_begin, cls.capture_end = capture_begin, capture_end
        _INSTALLED.append(self)

    def uninstall(self) -> None:
        if self._orig is None:
            return
        import torch

        torch.cuda.CUDAGraph.capture_begin, torch.cuda.CUDAGraph.capture_end = self._orig
        self._orig = None
        with self._lock:
            self._live.clear()
            self._release()
        if self in _INSTALLED:
            _INSTALLED.remove(self)

    # -- capture windows ---------------------------------------------------------------------------------
    def _begin(self, stream: int) -> None:
        site, _ = frames.stack_from(sys._getframe(2), depth=1)
        cap = Capture(index=len(self.captures) + 1, thread=threading.get_ident(), stream=stream,
                      site=site[0] if site else None)
        self.captures.append(cap)
        with self._lock:
            self._live[cap.thread] = cap
            if self._handle is None and (self.unavailable is None or self._retry):
                self._acquire()
            if self._native is not None and self._handle is not None:
                self._native.gs_begin(cap.thread, stream)

    def _end(self, exc: BaseException | None) -> None:
        cap = self._live.get(threading.get_ident())
        with self._lock:
            self._live.pop(threading.get_ident(), None)
            if self._native is not None:
                self._native.gs_end(threading.get_ident())
            if not self._live:
                self._release()
        if self.unavailable and self.unavailable.startswith("sentinel callback failed") and not self._said_failure:
            self._said_failure = True  # a failure inside CUDA's call could not be raised there: say it now
            warnings.warn(f"graphsafe sentinel stopped watching captures: {self.unavailable}", GraphCaptureWarning,
                          stacklevel=3)
        if cap is not None and cap.disarm is not None:
            cap.disarm()
        if cap is not None and cap.pending is not None and exc is None:
            pending, cap.pending = cap.pending, None
            raise pending()  # strict: the offending call's frame ended without another event
        if cap is None or exc is None or cap.broken or isinstance(exc, CaptureViolationError):
            return
        from ..doctor.check import failure_finding

        failure, f = failure_finding("capture", exc, f"capture #{cap.index}")
        if failure.cuda_error is None:
            return  # an ordinary exception of the user's code: not the sentinel's business
        cap.broken = True
        f.data["capture"] = cap.index
        self._report(cap, f, raise_now=False)

    def _acquire(self) -> None:
        try:
            lib = self._lib = self._lib or cupti.load()
            if not self._table:
                self._table = _watch_table(lib)
            callback = self._native_callback()
            self._handle = lib.subscribe(callback)  # unsubscribing at capture end disables them all again
            if self.native and self.enable_scope == "domains":  # CUPTI calls in for every API call
                lib.enable_domain(self._handle, cupti.DOMAIN_RUNTIME, True)
                lib.enable_domain(self._handle, cupti.DOMAIN_DRIVER, True)
            elif self.native:  # ~90 cuptiEnableCallback calls, made in C (0.1-0.2 ms a capture on an H100)
                rc = self._native.gs_enable_watched(self._handle, ctypes.cast(lib.lib.cuptiEnableCallback,
                                                                              ctypes.c_void_p).value)
                if rc != 0:
                    raise cupti.CuptiUnavailable(f"cuptiEnableCallback failed: {lib.error(rc)}")
            else:
                for domain, cbid in self._table:
                    lib.enable(self._handle, domain, cbid, True)
        except (cupti.CuptiUnavailable, OSError, AttributeError) as exc:
            said = self.unavailable is not None
            self.unavailable = str(exc)
            self._retry = "cuptiSubscribe failed" in str(exc)  # another client may let go later
            if self._handle is not None:
                self._lib.unsubscribe(self._handle)
                self._handle = None
            if not said:
                warnings.warn(f"graphsafe sentinel is not watching captures: {exc}", GraphCaptureWarning,
                              stacklevel=4)
            return
        self.unavailable, self._retry = None, False

    def _native_callback(self) -> int:
        """The C callback's address, configured with the watch table; the Python callback's if the shim
        cannot be built (said once: it makes captures several times slower)."""
        if self.native is not False:
            try:  # notify is set on every subscription (it is process-wide: this sentinel's now); the watch
                native = shim.load()  # table, the same for every sentinel, once per process
                native.gs_configure(self._notify, ctypes.cast(_driver_is_capturing(), ctypes.c_void_p).value)
                if not _SHIM_WATCHING:
                    for (domain, cbid), (_name, ptsz, _kind, struct, path) in self._table.items():
                        indirect, offset = cupti.offsets(struct, path) if struct is not None else (-1, -1)
                        native.gs_watch_call(domain, cbid, indirect, offset, int(ptsz))
                    _SHIM_WATCHING.append(True)
                self._native, self.native = native, True
            except shim.ShimUnavailable as exc:
                self.native = False
                warnings.warn(f"graphsafe sentinel: the native CUPTI callback is unavailable ({exc}); the Python "
                              "callback is used instead and captures take longer", GraphCaptureWarning, stacklevel=5)
        if self.native:
            return ctypes.cast(self._native.gs_callback, ctypes.c_void_p).value
        return ctypes.cast(self._callback, ctypes.c_void_p).value

    def _release(self) -> None:
        if self._handle is not None:
            self._lib.unsubscribe(self._handle)  # disables every callback of this subscriber
            self._handle = None

    # -- the CUPTI callback (runs inside CUDA API calls: keep the common path short) ----------------------
    def _on_api(self, userdata, domain, cbid, data) -> None:
        try:
            tid = threading.get_ident()
            site = ctypes.c_int.from_address(data).value
            if domain == cupti.DOMAIN_RUNTIME:  # driver calls made by a runtime call are that call
                d = self._runtime_depth.get(tid, 0) + (1 if site == cupti.SITE_ENTER else -1)
                self._runtime_depth[tid] = d
            elif self._runtime_depth.get(tid, 0):
                return
            cap = self._live.get(tid)
            if site != cupti.SITE_EXIT or cap is None:
                return
            entry = self._table.get((domain, cbid))
            if entry is None:
                return
            name, ptsz, kind, struct, path = entry
            cb = cupti.CallbackData.from_address(data)
            rc = ctypes.c_int.from_address(cb.functionReturnValue).value if cb.functionReturnValue else 0
            if 900 <= rc <= 908 and not cap.broken:
                self._capture_error(cap, name, rc)
                return
            if kind is None or rc != 0:
                return
            stream = cupti.read_stream(cb.functionParams, struct, path)
            if stream == cap.stream:
                return
            handle = _PER_THREAD if (stream == 0 and ptsz) else stream
            if _capture_status(handle) != _STATUS_NONE:
                return
            self._escaped(cap, kind, name, cb.symbolName, handle, cb.functionParams, struct)
        except Exception as exc:  # noqa: BLE001 - never let an error escape into CUDA's call
            self.unavailable = f"sentinel callback failed: {type(exc).__name__}: {exc}"

    def _on_notify(self, domain, cbid, stream, rc, symbol, params) -> None:
        """Called by the C callback for a capture error or work on a stream that is not capturing."""
        try:
            cap = self._live.get(threading.get_ident())
            entry = self._table.get((domain, cbid))
            if cap is None or entry is None:
                return
            name, _ptsz, kind, struct, _path = entry
            if rc:
                if not cap.broken:
                    self._capture_error(cap, name, rc)
            elif kind is not None:
                self._escaped(cap, kind, name, symbol, stream, params, struct)
        except Exception as exc:  # noqa: BLE001 - never let an error escape into CUDA's call
            self.unavailable = f"sentinel callback failed: {type(exc).__name__}: {exc}"

    def _escaped(self, cap: Capture, kind: str, api: str, symbol: bytes | None, handle: int, params: int,
                 struct: type) -> None:
        from ..doctor.classify import _escaped
        from ..doctor.evidence import Evidence
        from ..doctor.sources import launch_sites
        from ..doctor.trace import EscapedOp
        from ..doctor.locate.cugraph import demangle

        user, frame = frames.stack_from(sys._getframe(1), depth=12)
        role = "legacy" if handle in (0, _LEGACY) else "per_thread" if handle == _PER_THREAD else "other"
        name = demangle(symbol.decode(errors="replace")) if symbol else f"{api} ({_bytes(params, struct)})"
        key = (kind, name, role, (user[0].file, user[0].line) if user else None)
        if key in cap.keys:
            f = cap.keys[key]
            f.data["count"] += 1
            return
        op = EscapedOp(kind=kind, name=name, stream_role=role, stream_id=handle, api=api,
                       callsite=user[0] if user else None, stack=user[:8])
        if kind == "kernel":
            op.launch_sites, op.launch_note = launch_sites(op.short_name, role)
        f = _escaped(op, Evidence(target=f"capture #{cap.index}"))
        f.evidence[0] = f.evidence[0].replace("executed 1 time inside the capture window",
                                              "was enqueued while the capture was open")
        f.evidence.insert(1, _capture_words(cap))
        f.data["capture"] = cap.index
        cap.keys[key] = f
        self._report(cap, f, raise_now=True, frame=frame)

    def _capture_error(self, cap: Capture, api: str, rc: int) -> None:
        from ..doctor.classify import _failure as finding_of
        from ..doctor.evidence import Evidence, Failure

        cap.broken = True
        err = capture_errors.BY_CODE.get(rc)
        user, frame = frames.stack_from(sys._getframe(1), depth=12)
        text = f"`{api}` returned {rc}" + (f" ({err.name}): {err.description}" if err else "")
        failure = Failure(phase="capture", exc_type="CUDA error", message=text, location=user[0] if user else None,
                          stack=user[:8], cuda_error=rc, last_entered=api,
                          last_entered_at=user[0] if user else None)
        f = finding_of(Evidence(target=f"capture #{cap.index}", failure=failure))
        f.evidence.insert(1, _capture_words(cap))
        f.data["capture"] = cap.index
        f.data["api"] = api
        self._report(cap, f, raise_now=True, frame=frame)

    def _report(self, cap: Capture, f: Finding, raise_now: bool, frame=None) -> None:
        cap.findings.append(f)
        if self.mode == "strict" and raise_now:
            self._raise_later(cap, f, frame)
            return
        from ..doctor.render import finding_text

        loc = f.location
        try:
            warnings.warn_explicit(finding_text(f), GraphCaptureWarning, (loc.file if loc else None) or "<capture>",
                                   (loc.line if loc else None) or 0, module="graphsafe.sentinel")
        except Warning:  # warnings turned into errors: deliver it as the exception it now is
            if raise_now:
                self._raise_later(cap, f, frame)

    @staticmethod
    def _raise_later(cap: Capture, f: Finding, frame) -> None:
        """Raise in the user's frame as soon as the offending call returns to it: an exception cannot cross
        CUDA's call into this callback, so a one-shot local trace on that frame raises at its next event."""
        exc = type("CaptureViolationError", (CaptureViolationError,), {"finding": f, "__module__": __name__})
        if cap.pending is not None:
            return
        cap.pending = exc
        if frame is None:
            return  # no user frame: capture_end raises it
        previous, armed_at = sys.gettrace(), frame.f_lineno

        def disarm() -> None:
            frame.f_trace = None
            sys.settrace(previous)
            cap.disarm = None

        def fire(fr, event, arg):
            if cap.pending is not exc:
                return None
            if event == "line" and fr.f_lineno < armed_at:
                # a jump back (the `with torch.cuda.graph` line as its block ends, a loop's head): raising
                # here would skip the capture's __exit__; capture_end raises it instead
                disarm()
                return None
            if event in ("line", "return", "exception"):
                disarm()
                cap.pending = None
                raise exc()
            return fire

        cap.disarm = disarm
        frame.f_trace = fire
        frame.f_trace_lines = True
        sys.settrace(previous or _no_trace)


def _no_trace(frame, event, arg):
    return None


_INSTALLED: list[Sentinel] = []


def sentinel(mode: str = "warn") -> Sentinel:
    """``with graphsafe.sentinel():`` — watch every CUDA-graph capture inside the block."""
    return Sentinel(mode)


def from_environment() -> Sentinel | None:
    """Install a process-wide sentinel when ``GRAPHSAFE_SENTINEL`` says so (``1``/``warn`` or ``strict``)."""
    value = os.environ.get(ENV, "").strip().lower()
    if value in ("", "0", "off", "no", "false"):
        return None
    mode = "warn" if value in ("1", "on", "yes", "true", "warn") else value
    if mode not in MODES:
        warnings.warn(f"{ENV}={value!r} is not one of 0, 1, warn, strict: no sentinel is installed",
                      GraphCaptureWarning, stacklevel=2)
        return None
    if _INSTALLED:
        return _INSTALLED[0]
    s = Sentinel(mode)
    s.install()
    return s


# -- helpers -------------------------------------------------------------------------------------------------
def _watch_table(lib: cupti.Cupti) -> dict[tuple[int, int], tuple]:
    table: dict[tuple[int, int], tuple] = {}
    for domain in (cupti.DOMAIN_RUNTIME, cupti.DOMAIN_DRIVER):
        ids = lib.callback_ids(domain)
        for name in (*cupti.WORK, *cupti.SYNC):
            kind, struct, path = cupti.WORK.get(name, (None, None, None))
            for cbid, ptsz in ids.get(name, ()):
                table[(domain, cbid)] = (name, ptsz, kind, struct, path)
    if not table:
        raise cupti.CuptiUnavailable("CUPTI reported none of the launch/copy callback names")
    return table


_SHIM_WATCHING: list[bool] = []  # the shim's watch table is loaded (it lives as long as the process)


@functools.cache
def _driver_is_capturing():
    fn = ctypes.CDLL("libcuda.so.1").cuStreamIsCapturing
    fn.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int)]
    return fn


def _capture_status(stream: int) -> int:
    status = ctypes.c_int(-1)
    rc = _driver_is_capturing()(stream or None, ctypes.byref(status))
    return status.value if rc == 0 else -rc


def _capture_words(cap: Capture) -> str:
    at = f" at {cap.site.short()}" + (f" ({cap.site.function})" if cap.site.function else "") if cap.site else ""
    return f"capture #{cap.index}{at} was open on stream {cap.stream:#x}"


def _bytes(params: int, struct: type) -> str:
    try:
        n = struct.from_address(params).count
    except (AttributeError, ValueError):
        return "size unknown"
    return f"{n} bytes"
