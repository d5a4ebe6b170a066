"""Traces one CUDA-graph capture with torch.profiler (kineto/CUPTI) and finds the work that escaped it.

Captured work is only recorded while a capture is open; it does not execute. So every GPU activity
record (kernel, memcpy, memset) whose launching API call falls inside the capture window ran
eagerly and is absent from the graph. To say which stream it ran on, the tracer first launches one
tiny calibration kernel on each stream of interest (legacy default, per-thread default, the capture
stream) and learns the stream ids CUPTI gives them. The Python call site comes from the profiler's
Python tracer: the innermost Python frame around the launching API call.
"""
from __future__ import annotations

import bisect
import contextlib
import warnings
from dataclasses import dataclass, field

from ..diagnostics import Location
from . import frames

WINDOW = "graphsafe::capture_window"
CENSUS = "graphsafe::census::"  # windows whose executed kernels are listed (eager call, replay)
CALIBRATE = "graphsafe::calibrate::"
ROLES = ("legacy", "per_thread", "capture")
STREAM_WORDS = {
    "legacy": "the legacy default stream",
    "per_thread": "the per-thread default stream",
    "capture": "the capture stream",
    "other": "a stream that is not part of the capture",
}
_LAUNCH_APIS = ("cudaLaunch", "cuLaunch", "cudaMemcpy", "cudaMemset", "cuMemcpy", "cuMemset",
                "cudaGraphLaunch")


@dataclass
class EscapedOp:
    """One kind of GPU work that executed during capture (identical launches are merged)."""

    kind: str                # "kernel" | "memcpy" | "memset"
    name: str                # demangled, as CUPTI reports it
    stream_role: str         # "legacy" | "per_thread" | "capture" | "other"
    stream_id: int
    api: str | None = None   # the launching API call, e.g. cudaLaunchKernel
    entry: str | None = None  # the Python-visible call that launched it (C function or aten op)
    callsite: Location | None = None
    stack: list[Location] = field(default_factory=list)  # innermost first
    count: int = 1
    launch_sites: list[Location] = field(default_factory=list)  # C++ lines that launch this kernel
    launch_note: str | None = None  # why launch sites could not be looked for

    @property
    def short_name(self) -> str:
        return short_kernel_name(self.name)

    @property
    def stream(self) -> str:
        words = STREAM_WORDS.get(self.stream_role, self.stream_role)
        return words if self.stream_role != "other" else f"{words} (CUPTI stream {self.stream_id})"

    def to_dict(self) -> dict:
        import dataclasses
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> EscapedOp:
        d = dict(d)
        d["callsite"] = Location.from_dict(d.get("callsite"))
        d["stack"] = [Location(**s) for s in d.get("stack", [])]
        d["launch_sites"] = [Location(**s) for s in d.get("launch_sites", [])]
        return cls(**d)


@dataclass
class TraceResult:
    escaped: list[EscapedOp] = field(default_factory=list)
    stream_ids: dict[str, int] = field(default_factory=dict)
    last_entered: str | None = None           # last op/C call entered inside the window
    last_entered_at: Location | None = None
    launches_in_window: int = 0               # API launch calls seen inside the window
    error: str | None = None                  # why tracing was incomplete, if it was
    census: dict[str, list[str]] = field(default_factory=dict)  # census window -> kernels, in order


def short_kernel_name(name: str) -> str:
    """``void ns::k<float>(float*, int)`` -> ``ns::k``; memcpy/memset names are kept."""
    if name.startswith(("Memcpy", "Memset")):
        return name
    depth, cut = 0, len(name)
    for i, ch in enumerate(name):
        if ch in "<(":
            if depth == 0:
                cut = i
                break
        depth += ch == "<"
    base = name[:cut].strip()
    if base.startswith("void "):
        base = base[5:]
    return base or name


def _kind(name: str) -> str:
    if name.startswith("Memcpy"):
        return "memcpy"
    if name.startswith("Memset"):
        return "memset"
    return "kernel"


class CaptureTracer:
    """Profile one capture: ``start()``, ``calibrate(stream)``, ``open_window()`` right after capture
    begins, ``close_window()`` right before it ends, then ``stop()`` for the result."""

    def __init__(self) -> None:
        self._prof = None
        self._window = None
        self.result = TraceResult()

    def start(self) -> bool:
        import torch
        from torch.profiler import ProfilerActivity, profile

        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*Profiler clears events.*")
                self._prof = profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA], with_stack=True)
                self._prof.__enter__()
        except Exception as exc:  # another profiler is running, or kineto is unavailable
            self._prof = None
            self.result.error = f"torch.profiler could not start: {type(exc).__name__}: {exc}"
            return False
        del torch
        return True

    def calibrate(self, capture_stream) -> None:
        """Launch one tiny kernel on each stream of interest so their CUPTI ids become known."""
        import torch
        from torch.autograd.profiler import record_function

        if self._prof is None:
            return
        dev = capture_stream.device
        buf = torch.empty(1, device=dev)
        streams = {
            "legacy": torch.cuda.default_stream(dev),  # PyTorch's default stream is the NULL stream
            "per_thread": torch.cuda.ExternalStream(2, device=dev),  # cudaStreamPerThread
            "capture": capture_stream,
        }
        torch.cuda.synchronize(dev)
        for role, stream in streams.items():
            with record_function(CALIBRATE + role), torch.cuda.stream(stream):
                buf.fill_(1.0)
            torch.cuda.synchronize(dev)

    def open_window(self) -> None:
        from torch.autograd.profiler import record_function

        if self._prof is not None:
            self._window = record_function(WINDOW)
            self._window.__enter__()

    def close_window(self) -> None:
        if self._window is not None:
            self._window.__exit__(None, None, None)
            self._window = None

    @contextlib.contextmanager
    def census(self, name: str):
        """List the kernels that run inside this block (``result.census[name]``)."""
        from torch.autograd.profiler import record_function

        if self._prof is None:
            yield
            return
        with record_function(CENSUS + name):
            yield

    def stop(self) -> TraceResult:
        import torch

        self.close_window()
        if self._prof is None:
            return self.result
        with contextlib.suppress(Exception):
            torch.cuda.synchronize()  # let escaped work finish so CUPTI reports it
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*Profiler clears events.*")
                self._prof.__exit__(None, None, None)
            analyse(self._prof.profiler.kineto_results, self.result)
        except Exception as exc:  # noqa: BLE001 - reported, never hidden
            self.result.error = f"the capture trace could not be analysed: {type(exc).__name__}: {exc}"
        finally:
            self._prof = None
        return self.result


def analyse(kineto_results, result: TraceResult) -> TraceResult:
    """Fill ``result`` from a finished profiler session (see the module docstring)."""
    events = list(kineto_results.events())
    marks: dict[str, tuple[int, int]] = {}
    runtime: dict[int, object] = {}
    gpu = []
    for e in events:
        name = e.name()
        is_gpu = str(e.device_type()).endswith("CUDA")
        if not is_gpu and (name == WINDOW or name.startswith((CALIBRATE, CENSUS))):
            marks[name] = (e.start_ns(), e.start_ns() + e.duration_ns())
        elif not is_gpu and name.startswith(_LAUNCH_APIS):
            runtime[e.correlation_id()] = e
        elif is_gpu and not e.is_user_annotation() and not name.startswith("graphsafe::"):
            gpu.append(e)
    _census(marks, runtime, gpu, result)
    if WINDOW not in marks:
        result.error = "the capture window marker is missing from the trace"
        return result
    w0, w1 = marks[WINDOW]
    tree = _Tree(kineto_results.experimental_event_tree())
    result.launches_in_window = sum(1 for r in runtime.values() if w0 <= r.start_ns() <= w1)
    merged: dict[tuple, EscapedOp] = {}
    for g in gpu:
        rt = runtime.get(g.correlation_id()) or runtime.get(g.linked_correlation_id())
        t = rt.start_ns() if rt is not None else g.start_ns()
        for role in ROLES:
            c0, c1 = marks.get(CALIBRATE + role, (1, 0))
            if c0 <= t <= c1:
                result.stream_ids.setdefault(role, g.device_resource_id())
                break
        else:
            if not (w0 <= t <= w1):
                continue
            api = rt.name() if rt is not None else None
            tid = rt.start_thread_id() if rt is not None else None
            entry, callsite, stack = tree.context(t, tid)
            op = EscapedOp(kind=_kind(g.name()), name=g.name(), stream_role="", stream_id=g.device_resource_id(),
                           api=api, entry=entry, callsite=callsite, stack=stack)
            key = (op.name, op.stream_id, op.callsite.short() if op.callsite else None)
            if key in merged:
                merged[key].count += 1
            else:
                merged[key] = op
    roles = {v: k for k, v in result.stream_ids.items()}
    for op in merged.values():
        op.stream_role = roles.get(op.stream_id, "other")
        if op.stream_role == "other" and op.api and op.api.endswith(("_ptsz", "_ptds")):
            op.stream_role = "per_thread"
    result.escaped = list(merged.values())
    from .sources import launch_sites
    for op in result.escaped:
        if op.kind == "kernel":
            op.launch_sites, op.launch_note = launch_sites(op.short_name, op.stream_role)
    result.last_entered, result.last_entered_at = tree.last_entered(w0, w1)
    return result


def _census(marks: dict, runtime: dict, gpu: list, result: TraceResult) -> None:
    """Kernels per census window, by the time of their launching API call. In a replay window only
    the graph's own kernels count (those launched by ``cudaGraphLaunch``), not the RNG prologue."""
    for mark, (c0, c1) in marks.items():
        if not mark.startswith(CENSUS):
            continue
        hits = []
        for g in gpu:
            if _kind(g.name()) != "kernel":
                continue
            rt = runtime.get(g.correlation_id()) or runtime.get(g.linked_correlation_id())
            t = rt.start_ns() if rt is not None else g.start_ns()
            if c0 <= t <= c1:
                hits.append((g.start_ns(), rt.name() if rt is not None else "", g.name()))
        if any(api.startswith("cudaGraphLaunch") for _, api, _ in hits):
            hits = [h for h in hits if h[1].startswith("cudaGraphLaunch")]
        result.census[mark[len(CENSUS):]] = [short_kernel_name(n) for _, _, n in sorted(hits)]


class _Tree:
    """The profiler's event tree (Python calls, C calls, aten ops), searchable by time and thread."""

    def __init__(self, roots) -> None:
        self.roots = sorted(roots, key=lambda n: n.start_time_ns)
        self._starts = [n.start_time_ns for n in self.roots]

    def _path(self, t: int, tid):
        """The chain of nodes containing time ``t`` on thread ``tid``, outermost first."""
        path, level, starts = [], self.roots, self._starts
        while level:
            i = bisect.bisect_right(starts, t) - 1
            found = None
            # siblings on other threads may interleave: scan back over those that started earlier
            while i >= 0:
                n = level[i]
                if n.start_time_ns <= t <= n.end_time_ns and (tid is None or n.start_tid == tid):
                    found = n
                    break
                i -= 1
            if found is None:
                break
            path.append(found)
            level = sorted(found.children, key=lambda n: n.start_time_ns)
            starts = [n.start_time_ns for n in level]
        return path

    def context(self, t: int, tid) -> tuple[str | None, Location | None, list[Location]]:
        """(entry, callsite, stack) for an API call at ``t``: the innermost op or C function that
        made it, the user's line that called that, and the user frames outward."""
        path = self._path(t, tid) or self._path(t, None)  # CUPTI and the tracer may number threads apart
        entry = None
        frames_out: list[Location] = []
        for node in reversed(path):
            kind, fields = node.typed
            kind = getattr(kind, "name", str(kind))
            if kind == "TorchOp" and entry is None:
                entry = node.name
            elif kind in ("PyCCall", "PyCall"):
                if kind == "PyCCall" and entry is None:
                    entry = frames.c_function_name(node.name)
                loc = frames.location(fields.caller.file_name, fields.caller.line_number,
                                      fields.caller.function_name)
                if frames.is_user(loc.file):
                    frames_out.append(loc)
        frames_out = frames.dedupe(frames_out)
        return entry, (frames_out[0] if frames_out else None), frames_out[:8]

    def last_entered(self, w0: int, w1: int) -> tuple[str | None, Location | None]:
        """The last operator started inside the window (with the operators around it), and its caller.
        Profiler bookkeeping (``profiler::``/``graphsafe::`` ranges) is not an operation."""
        best, best_path = None, []
        stack = [(n, []) for n in self.roots]
        while stack:
            n, parents = stack.pop()
            if n.end_time_ns < w0 or n.start_time_ns > w1:
                continue
            kind = getattr(n.typed[0], "name", str(n.typed[0]))
            if kind == "TorchOp" and not n.name.startswith(("profiler::", "graphsafe::")) \
                    and (best is None or n.start_time_ns > best.start_time_ns):
                best, best_path = n, parents
            stack.extend((c, [*parents, n]) for c in n.children)
        if best is None:
            return None, None
        _, callsite, _ = self.context(best.start_time_ns, best.start_tid)
        outer = [p.name for p in reversed(best_path) if getattr(p.typed[0], "name", "") == "TorchOp"
                 and not p.name.startswith(("profiler::", "graphsafe::"))]
        return best.name + (f" (inside {', '.join(outer)})" if outer else ""), callsite
