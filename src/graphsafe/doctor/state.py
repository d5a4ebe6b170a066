"""The host-side state a target carries: Python attributes and persistent tensors of its objects.

A replay runs no Python and reads every tensor at the address it had at capture. So the doctor
snapshots what the target can see besides its arguments — the attributes of its modules and objects
(found through ``self``, closures and globals the code names) — and compares snapshots taken around
eager calls and around replays:

* an attribute an eager call changes is a side effect the graph will never repeat (GSD011);
* a persistent tensor an eager call changes in place makes the target stateful (GSD015/GSD016);
* a tensor attribute that points elsewhere now than at capture is a stale pointer (GSD012);
* a plain value set between steps (``model.temperature = t``) is frozen into the graph (GSD010).
"""
from __future__ import annotations

import ast
import functools
import inspect
import math
import textwrap
import types
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from ..diagnostics import Location
from .evidence import AttrChange, Rebinding, TensorState

_MODULE_KEYS = frozenset(vars(torch.nn.Module()).keys())
_SCALARS = (bool, int, float, complex, str, bytes, type(None))
_MAX_OBJECTS = 2000


@dataclass
class Snapshot:
    values: dict[str, str] = field(default_factory=dict)            # path -> fingerprint of a plain value
    tensors: dict[str, tuple[int, int, str]] = field(default_factory=dict)  # path -> (id, data_ptr, role)
    sums: dict[str, tuple[float, float]] = field(default_factory=dict)      # path -> (sum, sum of squares)


def roots(fn: Callable[..., Any], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The objects whose state the target can reach: itself, ``self``, closure cells, named globals."""
    out: dict[str, Any] = {}
    fn = inspect.unwrap(fn) if not isinstance(fn, torch.nn.Module) else fn
    while isinstance(fn, functools.partial):
        for i, a in enumerate(fn.args):
            if _is_stateful(a):
                out[f"partial.args[{i}]"] = a
        fn = fn.func
    if isinstance(fn, types.MethodType):
        out[_name_of(fn.__self__)] = fn.__self__
        fn = fn.__func__
    elif _is_stateful(fn):
        out[_name_of(fn)] = fn
        fn = getattr(type(fn), "forward", None) or getattr(type(fn), "__call__", None)
    code = getattr(fn, "__code__", None)
    if code is not None:
        for name, cell in zip(code.co_freevars, getattr(fn, "__closure__", None) or ()):
            try:
                value = cell.cell_contents
            except ValueError:
                continue
            if _is_stateful(value):
                out.setdefault(name, value)
        glb = getattr(fn, "__globals__", {})
        for name in code.co_names:
            value = glb.get(name)
            if value is not None and _is_stateful(value) and not isinstance(value, types.ModuleType):
                out.setdefault(name, value)
    for k, v in (extra or {}).items():
        out.setdefault(k, v)
    return out


def _name_of(obj: Any) -> str:
    return "model" if isinstance(obj, torch.nn.Module) else "self"


def _is_stateful(obj: Any) -> bool:
    if isinstance(obj, torch.nn.Module):
        return True
    if isinstance(obj, (types.FunctionType, types.BuiltinFunctionType, types.ModuleType, type, torch.Tensor)):
        return False
    mod = getattr(type(obj), "__module__", "") or ""
    return hasattr(obj, "__dict__") and not mod.startswith(("builtins", "torch", "typing", "functools"))


def _fingerprint(v: Any) -> str | None:
    if isinstance(v, _SCALARS):
        if isinstance(v, float) and math.isnan(v):
            return "nan"
        r = repr(v)
        return r if len(r) <= 80 else r[:77] + "..."
    if isinstance(v, tuple) and all(isinstance(x, _SCALARS) for x in v) and len(v) <= 16:
        return repr(v)
    if isinstance(v, (list, dict, set, frozenset)) or type(v).__name__ in ("deque", "OrderedDict", "defaultdict"):
        return f"{type(v).__name__} of length {len(v)}"
    return None  # objects: walked (if stateful) or ignored


def snapshot(objs: dict[str, Any], sums: bool = True) -> Snapshot:
    snap = Snapshot()
    seen: set[int] = set()
    todo: list[tuple[str, Any, int]] = [(k, v, 0) for k, v in objs.items()]
    while todo and len(seen) < _MAX_OBJECTS:
        path, obj, depth = todo.pop(0)
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, torch.nn.Module):
            params = {id(p) for p in obj.parameters(recurse=False)}
            for name, t in list(obj._parameters.items()) + list(obj._buffers.items()):
                if t is not None:
                    snap.tensors[f"{path}.{name}"] = (id(t), t.data_ptr(), "parameter" if id(t) in params else "buffer")
            attrs = {k: v for k, v in vars(obj).items() if k not in _MODULE_KEYS}
            for name, child in obj._modules.items():
                if child is not None:
                    todo.append((f"{path}.{name}", child, depth + 1))
        else:
            try:
                attrs = dict(vars(obj))
            except TypeError:
                continue
        for name, v in attrs.items():
            p = f"{path}.{name}"
            if isinstance(v, torch.Tensor):
                snap.tensors[p] = (id(v), v.data_ptr() if v.layout == torch.strided else 0, "attribute")
            elif (fp := _fingerprint(v)) is not None:
                snap.values[p] = fp
            elif depth < 3 and _is_stateful(v):
                todo.append((p, v, depth + 1))
    if sums:
        snap.sums = _sums(objs, snap)
    return snap


def _resolve(objs: dict[str, Any], path: str) -> Any:
    head, *rest = path.split(".")
    obj = objs[head]
    for part in rest:
        obj = getattr(obj, part)
    return obj


def _sums(objs: dict[str, Any], snap: Snapshot) -> dict[str, tuple[float, float]]:
    """(sum, sum of squares) of every persistent tensor, with one transfer to the host per device."""
    by_device: dict[torch.device, tuple[list[str], list[torch.Tensor]]] = {}
    for p in snap.tensors:
        try:
            t = _resolve(objs, p)
        except AttributeError:
            continue
        if not isinstance(t, torch.Tensor) or t.layout != torch.strided or t.numel() == 0 or t.is_complex():
            continue
        x = t.detach().to(torch.float64)
        paths, parts = by_device.setdefault(x.device, ([], []))
        parts.append(torch.stack([x.sum(), (x * x).sum()]))
        paths.append(p)
    out: dict[str, tuple[float, float]] = {}
    for paths, parts in by_device.values():
        values = torch.stack(parts).cpu().tolist()
        out.update({p: (v[0], v[1]) for p, v in zip(paths, values)})
    return out


def _close(a: float, b: float) -> bool:
    if a == b or (math.isnan(a) and math.isnan(b)):
        return True
    return abs(a - b) <= 1e-5 * max(abs(a), abs(b))


def side_effects(s2: Snapshot, s3: Snapshot, objs: dict[str, Any]) -> list[AttrChange]:
    """Plain attributes and tensor attributes that the steady-state eager call (s2 -> s3) changed."""
    out = []
    for p, before in s2.values.items():
        after = s3.values.get(p, "<deleted>")
        if after != before:
            out.append(AttrChange(p, before, after, writes=attribute_writes(objs, p)))
    for p in s3.values.keys() - s2.values.keys():
        out.append(AttrChange(p, "<unset>", s3.values[p], writes=attribute_writes(objs, p)))
    for p, (ident, ptr, role) in s2.tensors.items():
        now = s3.tensors.get(p)
        if role == "attribute" and now is not None and (now[0] != ident or now[1] != ptr):
            out.append(AttrChange(p, f"tensor at {ptr:#x}", f"another tensor at {now[1]:#x}",
                                  writes=attribute_writes(objs, p)))
    return out


def tensor_changes(s1: Snapshot, s2: Snapshot, s3: Snapshot, objs: dict[str, Any]) -> list[TensorState]:
    """Persistent tensors that the steady-state eager call changed in place, with the pattern over
    three calls: the same increment each call (accumulates), the same factor (compounds), or other."""
    out = []
    for p, b in s2.sums.items():
        c = s3.sums.get(p)
        if c is None or (_close(b[0], c[0]) and _close(b[1], c[1])):
            continue  # unchanged, or changed only by the rounding of nondeterministic kernels
        if s2.tensors[p][:2] != s3.tensors.get(p, (0, 0))[:2]:
            continue  # rebound, not mutated: reported as a side effect
        a = s1.sums.get(p, b)
        d1, d2 = b[0] - a[0], c[0] - b[0]
        scale = max(abs(d1), abs(d2), 1e-30)
        if d1 != 0 and abs(d2 - d1) <= 1e-3 * scale:
            pattern, detail = "accumulates", f"its sum grew by {d2:.4g} on each call"
        elif a[0] != 0 and b[0] != 0 and abs(c[0] / b[0] - b[0] / a[0]) <= 1e-3 * abs(b[0] / a[0]):
            pattern, detail = "compounds", f"its sum was multiplied by {c[0] / b[0]:.4g} on each call"
        else:
            pattern, detail = "changes", f"its sum went from {b[0]:.6g} to {c[0]:.6g} in one call"
        out.append(TensorState(p, s2.tensors[p][2], "mutated", pattern, detail, writes=attribute_writes(objs, p)))
    return out


def rebindings(at_capture: Snapshot, now: Snapshot, objs: dict[str, Any],
               extra_sources: list[Callable] = ()) -> list[Rebinding]:
    """Tensors the graph baked in (by address) that now point elsewhere."""
    out = []
    for p, (ident, ptr, _role) in at_capture.tensors.items():
        cur = now.tensors.get(p)
        if cur is not None and cur[1] != ptr:
            out.append(Rebinding(p, f"{ptr:#x}", f"{cur[1]:#x}",
                                 writes=attribute_writes(objs, p, extra_sources)))
    return out


def changed_values(at_capture: Snapshot, now: Snapshot) -> dict[str, tuple[str, str]]:
    return {p: (v, now.values[p]) for p, v in at_capture.values.items() if p in now.values and now.values[p] != v}


# -- where the code writes an attribute (Python ast over the owning class and helper functions) --

_INPLACE = ("copy_", "add_", "sub_", "mul_", "div_", "zero_", "fill_", "index_add_", "index_copy_",
            "scatter_", "scatter_add_", "clamp_", "masked_fill_", "addcmul_", "lerp_", "append", "update")


def attribute_writes(objs: dict[str, Any], path: str, extra_sources: list[Callable] = ()) -> list[Location]:
    """Lines that assign ``obj.ATTR``, augment it, or call an in-place method on it, in the class that
    owns the attribute (and in ``extra_sources``, e.g. the target's ``prepare``)."""
    owner_path, _, attr = path.rpartition(".")
    try:
        owner = _resolve(objs, owner_path)
    except (AttributeError, KeyError):
        return []
    found: list[Location] = []
    sources: list[Any] = [c for c in type(owner).__mro__ if c.__module__ not in ("builtins",)
                          and not c.__module__.startswith("torch.")]
    sources += list(extra_sources)
    for src in sources:
        found += _writes_in(src, attr)
    # a write in the constructor sets the attribute up; the ones in methods are the interesting ones
    found.sort(key=lambda loc: loc.function == "__init__")
    return found[:4]


@functools.lru_cache(maxsize=256)
def _parsed(obj: Any) -> tuple[str, int, ast.AST] | None:
    try:
        lines, start = inspect.getsourcelines(obj)
        file = inspect.getsourcefile(obj)
        tree = ast.parse(textwrap.dedent("".join(lines)))
    except (OSError, TypeError, SyntaxError, IndentationError):
        return None
    return file or "", start, tree


def _writes_in(obj: Any, attr: str) -> list[Location]:
    try:
        parsed = _parsed(obj)
    except TypeError:  # unhashable
        return []
    if parsed is None:
        return []
    file, start, tree = parsed
    out = []
    for node in ast.walk(tree):
        targets: list[ast.AST] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in _INPLACE:
            targets = [node.func.value]
        for t in targets:
            if isinstance(t, ast.Attribute) and t.attr == attr:
                fn = _enclosing(tree, node)
                op = node.func.attr if isinstance(node, ast.Call) else \
                    "+=" if isinstance(node, ast.AugAssign) else "="
                out.append(Location(file, start + node.lineno - 1, node.col_offset + 1, fn, label=op))
    return sorted(out, key=lambda loc: loc.line or 0)


def _enclosing(tree: ast.AST, target: ast.AST) -> str | None:
    """The innermost function whose lines contain ``target``."""
    best = None
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and \
                node.lineno <= target.lineno <= (node.end_lineno or node.lineno):
            if best is None or node.lineno >= best.lineno:
                best = node
    return best.name if best is not None else None
