"""Records what a target runs, operation by operation, without the user placing a probe.

Three hooks run together while the target is called (eagerly, or under capture):

* a ``TorchDispatchMode`` sees every aten and custom op (also those C++ extensions call);
* global ``nn.Module`` forward hooks keep the module path (``model.layers.3.mlp``);
* ``sys.setprofile`` sees calls into native code PyTorch cannot see into (pybind extension functions,
  Triton launchers, cuda-python): such a call is attributed to the innermost user Python function that
  made it, which becomes an *opaque step* when it returns.

Each step can snapshot (clone) what it produced. Under capture the clones are captured too, so a replay
refills them with the values the graph computes, step by step; the graph nodes each step added are
attributed to it through :class:`GraphWatch`. Instrumentation runs are separate from the verdict run.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from ...diagnostics import Location
from .. import frames
from ..compare import leaves

# factories whose output holds no defined value yet: nothing to compare
_UNDEFINED = ("empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided", "empty_permuted")
_SAFE_TOP = {"builtins", "torch", "numpy", "triton", "rich", "graphsafe", "typing", "_pytest", "pytest", "pluggy"}
_MAX_STACK = 8


@dataclass
class Access:
    start: int
    end: int
    write: bool | None          # True written, False read, None unknown
    label: str


@dataclass
class Step:
    index: int
    kind: str                   # "aten" | "custom" | "opaque"
    op: str
    module: str
    location: Location | None
    stack: list[Location]
    snaps: list[Any] = field(default_factory=list)      # cloned outputs (None: not comparable)
    spans: list[Any] = field(default_factory=list)      # where each snapshotted output lived
    alive: list[Any] = field(default_factory=list)      # the outputs themselves, held so memory is not reused
    accesses: list[Access] = field(default_factory=list)
    nodes: list[int] = field(default_factory=list)      # graph node handles it added
    kernels: list[str] = field(default_factory=list)    # names of the kernel nodes among them
    entry: tuple[str, str] | None = None                # opaque: (module, qualname) of the user function
    args: Any = None                                    # saved call arguments (for the repro)
    arg_names: list[str] = field(default_factory=list)  # opaque Triton kernels: non-constexpr argument names


def tensor_span(t: torch.Tensor) -> tuple[int, int] | None:
    if not isinstance(t, torch.Tensor) or t.device.type != "cuda" or t.numel() == 0:
        return None
    lo = hi = 0
    for size, stride in zip(t.shape, t.stride()):
        if stride >= 0:
            hi += (size - 1) * stride
        else:
            lo += (size - 1) * stride
    start = t.data_ptr()
    return start + lo * t.element_size(), start + (hi + 1) * t.element_size()


class _Mode(TorchDispatchMode):
    def __init__(self, rec: Recorder) -> None:
        super().__init__()
        self.rec = rec

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if not self.rec.busy:
            self.rec.on_op(func, args, kwargs, out)
        return out


@dataclass
class _Pending:
    frame: Any
    name: str
    location: Location
    stack: list[Location]
    module: str
    call: tuple[list[Any], dict[str, Any]]             # positional and keyword-only arguments
    arg_names: list[str] = field(default_factory=list)


class Recorder:
    """``with Recorder(names, snapshot=True, watch=w) as rec: target(...)``; then ``rec.steps``."""

    def __init__(self, module_names: dict[int, str] | None = None, *, snapshot: bool = True,
                 watch: GraphWatch | None = None, keep_args_for: int | None = None,
                 keep_alive: bool = False) -> None:
        self.names = module_names or {}
        self.snapshot, self.watch, self.keep_args_for = snapshot, watch, keep_args_for
        self.keep_alive = keep_alive  # hold outputs: then an address read later is this output, not a reuse
        self.steps: list[Step] = []
        self.instrumentation_nodes: list[int] = []
        self.busy = False
        self._modules: list[str] = []
        self._pending: dict[int, _Pending] = {}
        self._safe: dict[str, bool] = {}
        self._hooks: list[Any] = []
        self._mode: _Mode | None = None
        self._old_profile = None

    # -- context ---------------------------------------------------------------------------------------
    def __enter__(self) -> Recorder:
        from torch.nn.modules import module as M

        self._hooks = [M.register_module_forward_pre_hook(self._pre), M.register_module_forward_hook(self._post)]
        self._mode = _Mode(self)
        self._mode.__enter__()
        self._old_profile = sys.getprofile()
        sys.setprofile(self._profile)
        return self

    def __exit__(self, *exc) -> None:
        sys.setprofile(self._old_profile)
        if self._mode is not None:
            self._mode.__exit__(*exc)
        for h in self._hooks:
            h.remove()
        self._pending.clear()

    def _pre(self, mod, args) -> None:
        self._modules.append(self.names.get(id(mod), type(mod).__name__))

    def _post(self, mod, args, out) -> None:
        if self._modules:
            self._modules.pop()

    @property
    def module(self) -> str:
        return self._modules[-1] if self._modules else ""

    # -- where the user is -----------------------------------------------------------------------------
    def _user_stack(self, frame) -> list[Location]:
        out: list[Location] = []
        f = frame
        while f is not None and len(out) < _MAX_STACK:
            file = f.f_code.co_filename
            if frames.is_user(file):
                out.append(Location(file=file, line=f.f_lineno, function=f.f_code.co_name))
            f = f.f_back
        return frames.dedupe(out)

    # -- aten and custom ops ---------------------------------------------------------------------------
    def on_op(self, func, args, kwargs, out) -> None:
        name = func.name()  # "aten::mul.Tensor"
        ns = name.split("::", 1)[0]
        stack = self._user_stack(sys._getframe(2))
        step = Step(len(self.steps), "aten" if ns in ("aten", "prims") else "custom", name, self.module,
                    stack[0] if stack else None, stack)
        self.busy = True
        try:
            schema = func._schema
            written: list[Any] = []
            for i, a in enumerate(schema.arguments):
                v = args[i] if i < len(args) else kwargs.get(a.name)
                w = a.alias_info is not None and a.alias_info.is_write
                for t in leaves(v):
                    self._access(step, t, bool(w), a.name)
                    if w:
                        written.append(t)
            rets = out if isinstance(out, tuple) else (out,)
            fresh = [t for r, v in zip(schema.returns, rets) if r.alias_info is None for t in leaves(v)]
            for t in fresh:
                self._access(step, t, True, "out")
            self._attribute(step)
            if self.snapshot:
                base = name.split("::", 1)[-1].split(".")[0]
                keep = [] if base in _UNDEFINED else fresh + written
                step.snaps = [_clone(t) for t in keep]
                step.spans = [tensor_span(t) for t in keep]
                step.alive = list(keep) if self.keep_alive else []
            if self.keep_args_for == step.index:
                step.args = _to_cpu((tuple(args), dict(kwargs)))
            self._own_nodes()
        finally:
            self.busy = False
        self.steps.append(step)

    def _access(self, step: Step, t: torch.Tensor, write: bool | None, label: str) -> None:
        span = tensor_span(t)
        if span is not None:
            step.accesses.append(Access(span[0], span[1], write, label))

    def _attribute(self, step: Step) -> None:
        if self.watch is not None:
            step.nodes = self.watch.take()

    # -- opaque native calls ---------------------------------------------------------------------------
    def _opaque(self, fn) -> bool:
        mod = getattr(fn, "__module__", None)
        if not mod:
            return False  # bound methods of builtin types (list.append, Tensor methods)
        safe = self._safe.get(mod)
        if safe is None:
            top = mod.split(".")[0]
            safe = top in _SAFE_TOP or top in sys.stdlib_module_names or top.lstrip("_") in sys.stdlib_module_names
            self._safe[mod] = safe
        return not safe

    def _profile(self, frame, event, arg) -> None:
        if event == "c_call":
            if self.busy or not self._opaque(arg):
                return
            f = frame
            while f is not None and not frames.is_user(f.f_code.co_filename):
                f = f.f_back
            if f is None:
                return
            jit = _jit_fn(frame, f)
            name = jit.fn.__name__ if jit is not None else getattr(arg, "__name__", "native call")
            names = [q.name for q in getattr(jit, "params", []) if not getattr(q, "is_constexpr", False)]
            p = self._pending.get(id(f))
            if p is not None and p.frame is f:
                if jit is not None and not p.arg_names:  # a Triton launch names the call better than a helper
                    p.name, p.arg_names = name, names
                return
            loc = Location(file=f.f_code.co_filename, line=f.f_lineno, function=f.f_code.co_name)
            self._pending[id(f)] = _Pending(f, name, loc, self._user_stack(f), self.module, _call_args(f), names)
        elif event == "return" and self._pending:
            p = self._pending.pop(id(frame), None)
            if p is not None and p.frame is frame:
                self._on_opaque_return(p, arg)

    def _on_opaque_return(self, p: _Pending, ret: Any) -> None:
        step = Step(len(self.steps), "opaque", p.name, p.module, p.location, p.stack)
        code = p.frame.f_code
        step.entry = (p.frame.f_globals.get("__name__", ""), code.co_qualname if hasattr(code, "co_qualname")
                      else code.co_name)
        step.arg_names = p.arg_names
        self.busy = True
        try:
            outs = list({id(t): t for t in [*leaves(ret), *leaves(p.call)]}.values())
            rets = {id(t) for t in leaves(ret)}
            for t in outs:
                self._access(step, t, True if id(t) in rets else None, "result" if id(t) in rets else "argument")
            self._attribute(step)
            if self.snapshot:
                step.snaps = [_clone(t) for t in outs]
                step.spans = [tensor_span(t) for t in outs]
                step.alive = list(outs) if self.keep_alive else []
            if self.keep_args_for == step.index:
                step.args = _to_cpu(p.call)
            self._own_nodes()
        finally:
            self.busy = False
        self.steps.append(step)

    def _own_nodes(self) -> None:
        """Nodes added since the step was attributed are graphsafe's snapshots, not the target's."""
        if self.watch is not None:
            self.instrumentation_nodes += self.watch.take()


def _call_args(f) -> tuple[list[Any], dict[str, Any]]:
    """The arguments a Python frame was called with, as (positional, keyword-only)."""
    code, loc = f.f_code, f.f_locals
    n, k = code.co_argcount, code.co_kwonlyargcount
    names = code.co_varnames
    pos = [loc.get(x) for x in names[:n]]
    kw = {x: loc.get(x) for x in names[n:n + k]}
    extra = n + k
    if code.co_flags & 0x04:  # *args
        pos += list(loc.get(names[extra], ()))
        extra += 1
    if code.co_flags & 0x08:  # **kwargs
        kw.update(loc.get(names[extra], {}) or {})
    return pos, kw


def _clone(t: torch.Tensor) -> torch.Tensor | None:
    if not isinstance(t, torch.Tensor) or t.is_meta or t.layout != torch.strided:
        return None
    return t.detach().clone()


def _to_cpu(obj: Any) -> Any:
    """A copy that ``torch.save`` can write: tensors on the CPU, marked with their device."""
    if isinstance(obj, torch.Tensor):
        return {"__graphsafe_tensor__": obj.detach().to("cpu", copy=True), "device": str(obj.device)}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(x) for x in obj)
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    return obj


def _jit_fn(frame, stop):
    """The Triton ``JITFunction`` being launched, from the frames between the C call and the user."""
    f = frame
    while f is not None and f is not stop:
        me = f.f_locals.get("self")
        if me is not None and type(me).__name__ == "JITFunction" and hasattr(getattr(me, "fn", None), "__name__"):
            return me
        f = f.f_back
    return None


class GraphWatch:
    """The nodes a capture gains, step by step (``cuGraphGetNodes`` on the graph being captured)."""

    def __init__(self, stream: torch.cuda.Stream) -> None:
        from .cugraph import driver as _driver

        driver = _driver()
        from cuda.bindings import runtime

        self._drv = driver
        res = runtime.cudaStreamGetCaptureInfo(stream.cuda_stream)
        if int(res[0]) != 0:
            raise RuntimeError(f"cudaStreamGetCaptureInfo failed: {res[0]}")
        self.graph = driver.CUgraph(int(res[3]))
        self.known: set[int] = set()
        self.count = 0

    def _nodes(self, n: int) -> list[int]:
        err, nodes, got = self._drv.cuGraphGetNodes(self.graph, n)
        if int(err) != 0:
            raise RuntimeError(f"cuGraphGetNodes failed: {err}")
        return [int(x) for x in nodes[:got]]

    def _size(self) -> int:
        err, _, n = self._drv.cuGraphGetNodes(self.graph, 0)
        if int(err) != 0:
            raise RuntimeError(f"cuGraphGetNodes failed: {err}")
        return int(n)

    def take(self) -> list[int]:
        n = self._size()
        if n == self.count:
            return []
        nodes = self._nodes(n)
        tail = nodes[self.count:]
        if any(x in self.known for x in tail) or len(nodes) != n:
            tail = [x for x in nodes if x not in self.known]  # not appended in order: diff the whole set
        self.known.update(tail)
        self.count = n
        return tail
