"""Behavioural probes the check runs besides replay-vs-eager.

* host values: non-tensor and CPU-tensor arguments that differ between inputs (a graph cannot take them);
* RNG: seed every generator the same way before an eager call and before a replay, so random
  programs become comparable, then move the seed and see which side follows (GSD019);
* uninitialized memory: run eagerly with PyTorch's ``fill_uninitialized_memory`` on and off (both in
  deterministic mode, so only the fill differs) — outputs that move read memory nobody wrote (GSD014);
* races: run eagerly under PyTorch's CUDA Sanitizer event model, which records every stream's
  accesses to every tensor and the events between streams (GSD017);
* bounded waits: every eager call and replay waits on an event with a deadline, so a hang is reported.
"""
from __future__ import annotations

import contextlib
import random
import sys
import threading
import time
import warnings
from typing import Any, Callable

import torch

from ..diagnostics import Location
from . import frames
from .compare import all_close, leaves
from .evidence import HostValue, Race


class CallTimeout(Exception):
    """A call or replay did not finish within its bound."""

    def __init__(self, phase: str, seconds: float):
        super().__init__(f"the {phase} did not finish within {seconds:g} s (the GPU is still busy with it)")
        self.phase, self.seconds = phase, seconds


def wait(dev: torch.device, timeout_s: float, phase: str) -> None:
    """Wait for the work queued so far on the current stream, at most ``timeout_s`` seconds."""
    done = torch.cuda.Event()
    done.record(torch.cuda.current_stream(dev))
    deadline = time.monotonic() + timeout_s
    pause = 1e-4
    while not done.query():
        if time.monotonic() > deadline:
            raise CallTimeout(phase, timeout_s)
        time.sleep(pause)
        pause = min(pause * 2, 0.01)
    # then the work on other streams (escaped work, an un-joined side stream's collective), bounded too: a
    # device-wide synchronize cannot be polled, so it waits in a helper thread (it releases the GIL)
    outcome: list[BaseException | None] = []

    def sync() -> None:
        try:
            torch.cuda.synchronize(dev)
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            outcome.append(exc)

    helper = threading.Thread(target=sync, name="graphsafe-sync", daemon=True)
    helper.start()
    helper.join(max(deadline - time.monotonic(), 1.0))
    if not outcome:
        raise CallTimeout(f"{phase} (work on another stream)", timeout_s)
    if outcome[0] is not None:
        raise outcome[0]


# -- host values ---------------------------------------------------------------------------------

def host_leaves(obj: Any, path: str = "args") -> list[tuple[str, Any]]:
    """Non-tensor leaves and CPU tensors of a call's arguments, with readable paths."""
    if isinstance(obj, torch.Tensor):
        return [(path, obj)] if not obj.is_cuda else []
    if isinstance(obj, dict):
        return [x for k, v in obj.items() for x in host_leaves(v, str(k) if path == "args" else f"{path}[{k!r}]")]
    if isinstance(obj, (list, tuple)):
        return [x for i, v in enumerate(obj) for x in host_leaves(v, f"{path}[{i}]")]
    return [(path, obj)]


def _show(v: Any) -> str:
    if isinstance(v, torch.Tensor):
        return f"cpu tensor {v.tolist()!r}"[:80] if v.numel() <= 8 else f"cpu tensor {tuple(v.shape)} (sum {float(v.double().sum()):.6g})"
    r = repr(v)
    return r if len(r) <= 60 else r[:57] + "..."


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape and \
            a.dtype == b.dtype and bool(torch.equal(a, b))
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - incomparable objects count as different
        return a is b


def name_positional(fn: Callable[..., Any], paths: list[str]) -> dict[str, str]:
    """``args[1]`` -> ``temperature`` where the target's signature names it."""
    try:
        params = list(inspect_signature(fn).parameters)
    except (TypeError, ValueError):
        return {}
    out = {}
    for p in paths:
        if p.startswith("args[") and "]" in p:
            i = int(p[5:p.index("]")])
            if i < len(params):
                out[p] = params[i] + p[p.index("]") + 1:]
    return out


def inspect_signature(fn):
    import inspect

    return inspect.signature(getattr(fn, "forward", fn))


def host_values(fn: Callable[..., Any], cap: Any, by_seed: dict[int, Any]) -> list[HostValue]:
    """Host-side arguments whose values differ between the capture input and verification inputs."""
    ref = dict(host_leaves(cap))
    found: dict[str, HostValue] = {}
    for seed, v in by_seed.items():
        for path, val in host_leaves(v):
            if path in ref and not _equal(ref[path], val):
                hv = found.setdefault(path, HostValue(
                    path, "cpu_tensor" if isinstance(val, torch.Tensor) else "argument", _show(ref[path])))
                hv.values[str(seed)] = _show(val)
    names = name_positional(fn, list(found))
    for path, hv in found.items():
        hv.path = names.get(path, path)
    return list(found.values())


def with_host_values(v: Any, cap: Any) -> Any:
    """``v`` with its host-side leaves (non-tensors, CPU tensors) replaced by the capture input's."""
    if isinstance(v, torch.Tensor):
        return v if v.is_cuda else (cap.clone() if isinstance(cap, torch.Tensor) else cap)
    if isinstance(v, dict):
        return {k: with_host_values(x, cap.get(k) if isinstance(cap, dict) else None) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        items = [with_host_values(x, c) for x, c in zip(v, cap)] if isinstance(cap, (list, tuple)) else list(v)
        return type(v)(*items) if hasattr(v, "_fields") else type(v)(items)
    return cap


# -- RNG -------------------------------------------------------------------------------------------

@contextlib.contextmanager
def rng_preserved():
    """Restore Python's, NumPy's and PyTorch's (CPU and CUDA) generators afterwards."""
    py = random.getstate()
    np = sys.modules.get("numpy")
    np_state = np.random.get_state() if np is not None else None
    cpu = torch.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    try:
        yield
    finally:
        random.setstate(py)
        if np is not None:
            np.random.set_state(np_state)
        torch.set_rng_state(cpu)
        if cuda is not None:
            with contextlib.suppress(Exception):  # a faulted context cannot take it back
                torch.cuda.set_rng_state_all(cuda)


def seed_all(seed: int) -> None:
    random.seed(seed)
    np = sys.modules.get("numpy")
    if np is not None:
        np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


# -- uninitialized memory --------------------------------------------------------------------------

def uninitialized(run: Callable[[], Any]) -> dict[str, Any] | None:
    """Run three times in deterministic mode: plain, with ``fill_uninitialized_memory``, plain again.
    When the two plain runs agree and the filled one differs, the target reads memory nobody wrote:
    return the outputs that moved, how many elements became non-finite, and the first operation whose
    output the fill changed (when it is a dispatched op). None when nothing moved or the target is
    unstable (then the probe proves nothing)."""
    import torch.utils.deterministic as det

    saved = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
             det.fill_uninitialized_memory)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.use_deterministic_algorithms(True, warn_only=True)
            det.fill_uninitialized_memory = False
            base = leaves(run())
            det.fill_uninitialized_memory = True
            poisoned = leaves(run())
            det.fill_uninitialized_memory = False
            again = leaves(run())
            if not all_close(base, again):
                return None
            moved, nonfinite = _moved(base, poisoned)
            if not moved:
                return None
            first = _first_moved_op(run, det)
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        det.fill_uninitialized_memory = saved[2]
    out: dict[str, Any] = {"outputs": moved, "nonfinite": nonfinite}
    if first is not None:
        out["first_op"], out["first_op_at"] = first[0], first[1]
    return out


def _moved(base: list[torch.Tensor], poisoned: list[torch.Tensor]) -> tuple[list[int], int]:
    from .compare import stats

    moved, nonfinite = [], 0
    for i, (a, b) in enumerate(zip(base, poisoned)):
        if not (a.dtype.is_floating_point or a.dtype.is_complex):
            if not torch.equal(a, b):
                moved.append(i)
            continue
        new_bad = int((~torch.isfinite(b) & torch.isfinite(a)).sum())
        if new_bad or not stats(b, a).close:
            moved.append(i)
            nonfinite += new_bad
    return moved, nonfinite


_FACTORIES = ("empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided", "empty_permuted")


def _first_moved_op(run: Callable[[], Any], det) -> tuple[str, dict | None] | None:
    """Replay the plain and the filled run under a dispatch mode that fingerprints every op's float
    outputs; the first op (not an allocation) whose fingerprint differs read the unwritten memory."""
    from torch.utils._python_dispatch import TorchDispatchMode

    def trace(fill: bool) -> list[tuple[str, float, Location | None]]:
        rec: list[tuple[str, float, Location | None]] = []

        class _Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                out = func(*args, **(kwargs or {}))
                name = func.__name__.split(".")[0] if hasattr(func, "__name__") else str(func)
                if name not in _FACTORIES:
                    fps = [float(t.detach().double().nan_to_num(nan=1e300, posinf=1e299, neginf=-1e299).sum())
                           for t in leaves(out) if t.is_floating_point() and t.numel()]
                    rec.append((str(func.overloadpacket.__name__), sum(fps), _caller()))
                return out

        det.fill_uninitialized_memory = fill
        with _Mode():
            run()
        return rec

    try:
        plain, filled = trace(False), trace(True)
    except Exception:  # noqa: BLE001 - localization is a bonus; the finding stands without it
        return None
    for (name, a, loc), (_, b, _) in zip(plain, filled):
        if a != b and loc is not None:
            return f"aten.{name}", (loc.__dict__ if loc else None)
    return None


def _caller() -> Location | None:
    """The user's line that ran the current op; None when graphsafe itself ran it (clones, copies)."""
    import traceback
    from pathlib import Path

    for fs in reversed(traceback.extract_stack()[:-2]):
        loc = frames.location(fs.filename, fs.lineno, fs.name)
        if frames.is_user(loc.file):
            return loc
        p = Path(fs.filename).resolve()
        if frames._PKG in p.parents and frames._CASES not in p.parents and p.name != "_python_dispatch.py":
            if "doctor" in p.parts and p.name in ("check.py", "compare.py", "probes.py"):
                return None  # the doctor's own bookkeeping, not the target
    return None


# -- races (PyTorch's CUDA Sanitizer event model) --------------------------------------------------

@contextlib.contextmanager
def _sync_events(handler):
    """Feed the handler the synchronizations the target makes through ``torch.cuda`` (event record
    and wait, which ``wait_stream`` and ``record_event`` use; stream, event and device syncs), for the
    duration of the block only. (PyTorch's own sanitizer uses process-wide GPU trace hooks instead,
    which stay on for the life of the process.)"""
    ev_cls, st_cls, cuda = torch.cuda.Event, torch.cuda.Stream, torch.cuda
    saved = (ev_cls.record, ev_cls.wait, ev_cls.synchronize, st_cls.synchronize, cuda.synchronize)

    def sid(stream) -> int:
        return int((stream if stream is not None else torch.cuda.current_stream()).cuda_stream)

    def record(self, stream=None):
        saved[0](self, stream)
        handler._handle_event_record(id(self), sid(stream))

    def wait(self, stream=None):
        saved[1](self, stream)
        handler._handle_event_wait(id(self), sid(stream))

    def ev_sync(self):
        saved[2](self)
        handler._handle_event_synchronization(id(self))

    def st_sync(self):
        saved[3](self)
        handler._handle_stream_synchronization(sid(self))

    def dev_sync(device=None):
        saved[4](device)
        handler._handle_device_synchronization()

    ev_cls.record, ev_cls.wait, ev_cls.synchronize, st_cls.synchronize, cuda.synchronize = \
        record, wait, ev_sync, st_sync, dev_sync
    try:
        yield
    finally:
        ev_cls.record, ev_cls.wait, ev_cls.synchronize, st_cls.synchronize, cuda.synchronize = saved


def _sanitizer_module():
    """``torch.cuda._sanitizer`` without its import-time side effect: importing it constructs a global
    sanitizer whose constructor switches on process-wide GPU trace hooks for good (they then run on
    every allocation and event, and break exception handling in some failed captures)."""
    name = "torch.cuda._sanitizer"
    if name in sys.modules:
        return sys.modules[name]
    import importlib

    import torch.cuda._gpu_trace as gpu_trace

    regs = {n: getattr(gpu_trace, n) for n in dir(gpu_trace) if n.startswith("register_callback_for_")}
    activate = torch._C._activate_gpu_trace
    torch._C._activate_gpu_trace = lambda: None
    for n in regs:
        setattr(gpu_trace, n, lambda cb: None)
    try:
        return importlib.import_module(name)
    finally:
        torch._C._activate_gpu_trace = activate
        for n, f in regs.items():
            setattr(gpu_trace, n, f)


def races(run: Callable[[], Any]) -> list[Race]:
    """Run once, recording every tensor access per stream and every event between streams; return the
    accesses that no event orders (the CUDA Sanitizer's model, collected instead of raised)."""
    import logging

    from torch.utils._python_dispatch import TorchDispatchMode

    csan = _sanitizer_module()
    handler = csan.EventHandler()
    found: list[Any] = []

    class _Mode(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if func is torch.ops.aten.record_stream.default:
                return func(*args, **kwargs)
            is_factory = bool(csan.FACTORY_FUNCTION_REGEX.match(func._schema.name))
            ah = csan.ArgumentHandler()
            ah.parse_inputs(func._schema, args, kwargs, is_factory=is_factory)
            out = func(*args, **kwargs)
            ah.parse_outputs(func._schema, out, is_factory=is_factory)
            found.extend(handler._handle_kernel_launch(
                torch.cuda.current_stream().cuda_stream, ah.dataptrs_read - ah.dataptrs_written,
                ah.dataptrs_written, ah.outputs, func._schema, ah.tensor_aliases))
            return out

    log = logging.getLogger(csan.__name__)
    level = log.level
    log.setLevel(logging.ERROR)  # "backfilling the trace" notes for tensors and events made before the probe
    try:
        with _sync_events(handler), _Mode():
            run()
    finally:
        log.setLevel(level)
    out, seen = [], set()
    for e in found:
        if not isinstance(e, csan.UnsynchronizedAccessError):
            continue
        cur, prev = e.current_access, e.previous_access
        key = (str(cur.operator), str(prev.operator), cur.stream, prev.stream)
        if key in seen:
            continue
        seen.add(key)
        out.append(Race(
            tensor=f"{e.data_ptr:#x}",
            access=f"{cur.type} `{_op_name(cur.operator)}`" + (f" ({', '.join(cur.aliases)})" if cur.aliases else ""),
            stream=int(cur.stream),
            previous=f"{prev.type} `{_op_name(prev.operator)}`" + (f" ({', '.join(prev.aliases)})" if prev.aliases else ""),
            previous_stream=int(prev.stream),
            location=_user_frame(cur.stack_trace), previous_location=_user_frame(prev.stack_trace)))
    return out


def _op_name(schema: Any) -> str:
    return str(getattr(schema, "name", schema)).replace("aten::", "aten.")


def _user_frame(stack) -> Location | None:
    for fs in reversed(list(stack)):
        loc = frames.location(fs.filename, fs.lineno, fs.name)
        if frames.is_user(loc.file):
            return loc
    return None


# -- graphs the target replays itself ----------------------------------------------------------------

@contextlib.contextmanager
def count_replays():
    """Count ``torch.cuda.CUDAGraph.replay`` calls made inside the block (a target that is a runner)."""
    cls = torch.cuda.CUDAGraph
    original = cls.replay
    counter = [0]

    def replay(self, *a, **k):
        counter[0] += 1
        return original(self, *a, **k)

    cls.replay = replay
    try:
        yield counter
    finally:
        cls.replay = original
