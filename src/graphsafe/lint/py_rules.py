"""Rules for Python sources (GSP codes, and GSC007 for build flags), on Python's ``ast``.

Capture-unsafe calls matter only in code that runs under capture, so GSP001-GSP005 look at code
reachable from a ``forward`` method, from the body of ``with torch.cuda.graph(...)``, or from a
function given to ``torch.cuda.make_graphed_callables``/``torch.compile(mode="reduce-overhead")``:
following calls to functions of the same file and ``self.method(...)`` calls within a class.
"""
from __future__ import annotations

import ast
import functools
import warnings

from .cpp_rules import Hit

HOST_SYNC_METHODS = {"item", "tolist", "cpu", "numpy"}
TENSOR_VALUE_METHODS = {"any", "all", "item", "sum", "max", "min", "mean", "norm", "amax", "amin", "prod", "std",
                        "var", "equal", "allclose", "isnan", "isinf", "isfinite", "count_nonzero", "argmax", "argmin"}
DYNAMIC_SHAPE = {"nonzero", "masked_select", "unique", "unique_consecutive", "argwhere", "repeat_interleave"}
MASK_MAKERS = {"isnan", "isinf", "isfinite", "bool", "logical_and", "logical_or", "logical_not", "eq", "ne", "gt",
               "lt", "ge", "le"}
HOST_TENSOR_MAKERS = {"tensor", "as_tensor", "from_numpy"}
# torch calls whose value is a host value (a flag, a count, a device, a shape, a dtype), not a tensor
NOT_TENSOR_TORCH = ("torch.is_", "torch.cuda.", "torch.jit.", "torch.compiler.", "torch.are_", "torch.get_",
                    "torch._dynamo.", "torch.distributed.", "torch.onnx.", "torch._C.", "torch.backends.",
                    "torch.device(", "torch.Size(", "torch.finfo(", "torch.iinfo(", "torch.numel(", "torch.typename(",
                    "torch.result_type(", "torch.promote_types(", "torch.can_cast(", "torch.version.",
                    "torch.fx.", "torch.overrides.")
PER_THREAD_FLAGS = ("--default-stream=per-thread", "-default-stream=per-thread", "--default-stream per-thread",
                    "-default-stream per-thread", "-DCUDA_API_PER_THREAD_DEFAULT_STREAM",
                    "-D CUDA_API_PER_THREAD_DEFAULT_STREAM")
_FLAG_PAIRS = {("--default-stream", "per-thread"), ("-default-stream", "per-thread"),
               ("-D", "CUDA_API_PER_THREAD_DEFAULT_STREAM")}  # the flag as two list items
COPY_METHODS = {"clone", "copy", "deepcopy", "tolist", "cpu", "numpy"}


def _name(node: ast.AST) -> str:
    try:
        return ast.unparse(node)
    except Exception:  # noqa: BLE001 - a name we cannot print is no name
        return ""


def _hit(code: str, node: ast.AST, message: str, label: str = "", help_: str = "") -> Hit:
    line = getattr(node, "lineno", 1)
    col = getattr(node, "col_offset", 0)
    end_line = getattr(node, "end_lineno", line)
    end_col = getattr(node, "end_col_offset", col + 1) if end_line == line else col + 1
    return Hit(code, line, col + 1, max(1, end_col - col), message, label, help_)


def _is_graph_ctx(call: ast.AST) -> bool:
    return isinstance(call, ast.Call) and _name(call.func) in ("torch.cuda.graph", "cuda.graph", "graph")


class _Index:
    """Functions and methods of a module, and the code that runs under capture."""

    def __init__(self, tree: ast.Module) -> None:
        self.tree = tree
        self.functions: dict[str, ast.AST] = {}
        self.methods: dict[tuple[str, str], ast.AST] = {}
        self.owner: dict[ast.AST, str] = {}
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                self.functions[node.name] = node
            elif isinstance(node, ast.ClassDef):
                for item in node.body:
                    if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                        self.methods[(node.name, item.name)] = item
                        self.owner[item] = node.name
        self.roots: list[ast.AST] = []
        self.graph_withs: list[ast.With] = []
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and (
                    node.name == "forward" and node in self.owner or any(_compiled(d) for d in node.decorator_list)):
                self.roots.append(node)
            elif isinstance(node, ast.With) and any(_is_graph_ctx(i.context_expr) for i in node.items):
                self.graph_withs.append(node)
                self.roots.append(node)
            elif isinstance(node, ast.Call) and node.args and (
                    _name(node.func).endswith("make_graphed_callables") or _compiled(node)):
                target = self._resolve(node.args[0], None)
                if target is not None:
                    self.roots.append(target)

    @functools.cached_property
    def parents(self) -> dict[ast.AST, ast.AST]:
        """Each node's parent, built on first use (only files with captured code or a flag string ask)."""
        return {child: node for node in ast.walk(self.tree) for child in ast.iter_child_nodes(node)}

    def _resolve(self, func: ast.AST, cls: str | None) -> ast.AST | None:
        if isinstance(func, ast.Name):
            return self.functions.get(func.id)
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "self" and cls:
            return self.methods.get((cls, func.attr))
        return None

    def captured(self) -> list[ast.AST]:
        """Roots and every function they reach, in the order found."""
        seen: dict[int, ast.AST] = {}
        work = list(self.roots)
        while work:
            node = work.pop()
            if id(node) in seen:
                continue
            seen[id(node)] = node
            cls = self.owner.get(node) or self._class_of(node)
            for call in ast.walk(node):
                if isinstance(call, ast.Call):
                    target = self._resolve(call.func, cls)
                    if target is not None and id(target) not in seen:
                        work.append(target)
        return list(seen.values())

    def _class_of(self, node: ast.AST) -> str | None:
        """The class of the method that holds ``node`` (climbing the parents: one walk of the tree in all)."""
        while node is not None:
            if node in self.owner:
                return self.owner[node]
            node = self.parents.get(node)
        return None


def _compiled(node: ast.AST) -> bool:
    """``torch.compile(..., mode="reduce-overhead")`` (call or decorator): CUDA graphs under the hood."""
    return isinstance(node, ast.Call) and _name(node.func).endswith("compile") and any(
        k.arg == "mode" and isinstance(k.value, ast.Constant) and k.value.value in ("reduce-overhead",
                                                                                     "max-autotune")
        for k in node.keywords)


def lint_python(source: str) -> list[Hit]:
    with warnings.catch_warnings():  # the user's invalid escapes are not ours to report
        warnings.simplefilter("ignore")
        tree = ast.parse(source)
    index = _Index(tree)
    hits: list[Hit] = []  # a function reached from two roots gives its hits twice: the engine keeps one per place
    for scope in index.captured():
        hits += _captured_rules(scope, index)
    for w in index.graph_withs:
        hits += _warmup_rule(w, tree, index)
    hits += _static_output_rule(tree)
    hits += _per_thread_flags(tree, index)
    return sorted(hits, key=lambda h: (h.line, h.column, h.code))


def _tensorish(node: ast.AST) -> bool:
    """An expression that evaluates to a tensor (by its form: reductions, torch calls)."""
    if isinstance(node, ast.Call):
        if isinstance(node.func, ast.Attribute) and node.func.attr in TENSOR_VALUE_METHODS:
            return True
        called = _name(node.func) + "("
        return called.startswith("torch.") and not called.startswith(NOT_TENSOR_TORCH)
    if isinstance(node, ast.Compare):
        return any(_tensorish(x) for x in (node.left, *node.comparators))
    if isinstance(node, ast.BoolOp):
        return any(_tensorish(v) for v in node.values)
    if isinstance(node, ast.UnaryOp):
        return _tensorish(node.operand)
    return False


def _is_self_attr(node: ast.AST, attr: str) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == attr and isinstance(node.value, ast.Name)
            and node.value.id == "self")


def _static_repeats(node: ast.Call, fn: str) -> bool:
    """``repeat_interleave`` with a whole-number ``repeats`` (or an ``output_size``): its shape is known without
    reading the data (expand and reshape, no ``nonzero``)."""
    if not fn.endswith("repeat_interleave"):
        return False
    if any(k.arg == "output_size" for k in node.keywords):
        return True
    pos = 1 if fn.startswith("torch.") else 0  # torch.repeat_interleave(x, repeats) / x.repeat_interleave(repeats)
    rep = next((k.value for k in node.keywords if k.arg == "repeats"), None)
    if rep is None and len(node.args) > pos:
        rep = node.args[pos]
    return isinstance(rep, ast.Constant) and isinstance(rep.value, int) and not isinstance(rep.value, bool)


def _self_attr_read(node: ast.AST, attr: str) -> bool:
    """``self.attr``, or ``getattr(self, "attr", None)``."""
    if _is_self_attr(node, attr):
        return True
    return (isinstance(node, ast.Call) and _name(node.func) == "getattr" and len(node.args) == 3
            and _name(node.args[0]) == "self" and isinstance(node.args[1], ast.Constant)
            and node.args[1].value == attr and isinstance(node.args[2], ast.Constant) and node.args[2].value is None)


def _unset_test(test: ast.AST, attr: str) -> bool:
    """``self.attr is None``, ``not self.attr`` or ``not hasattr(self, "attr")``. Not with another
    clause (``self.buf is None or self.buf.shape != x.shape``): a buffer made again for another shape
    leaves a graph captured at the first shape holding the freed one."""
    if isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Is):
        return _self_attr_read(test.left, attr) and isinstance(test.comparators[0], ast.Constant) \
            and test.comparators[0].value is None
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        o = test.operand
        return _self_attr_read(o, attr) or (
            isinstance(o, ast.Call) and _name(o.func) == "hasattr" and len(o.args) == 2
            and _name(o.args[0]) == "self" and isinstance(o.args[1], ast.Constant) and o.args[1].value == attr)
    return False


def _negated(test: ast.AST) -> ast.AST:
    """``not test`` as the tests above read it: ``x is not None`` -> ``x is None``, ``x`` -> ``not x``."""
    if isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.IsNot):
        return ast.Compare(left=test.left, ops=[ast.Is()], comparators=test.comparators)
    return ast.UnaryOp(op=ast.Not(), operand=test)


def _lazy_init(attr: str, assign: ast.AST, parents: dict) -> bool:
    """``self.attr`` set only while it is unset (``if self.attr is None: self.attr = ...`` or
    ``self.attr = self.attr or ...``): a buffer or stream made on the first call (the warm-up before
    capture), which later calls and replays reuse. Not state that changes per call."""
    value = getattr(assign, "value", None)
    if isinstance(value, ast.BoolOp) and isinstance(value.op, ast.Or) and _is_self_attr(value.values[0], attr):
        return True
    child, node = assign, parents.get(assign)
    while node is not None:
        if isinstance(node, ast.If) and ((child in node.body and _unset_test(node.test, attr)) or (
                child in node.orelse and _unset_test(_negated(node.test), attr))):
            return True
        child, node = node, parents.get(node)
    return False


def _captured_rules(scope: ast.AST, index: _Index) -> list[Hit]:
    out: list[Hit] = []
    masks: set[str] = set()
    is_method = scope in index.owner
    for node in ast.walk(scope):
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            v = node.value
            if isinstance(v, ast.Compare) or (isinstance(v, ast.UnaryOp) and isinstance(v.op, ast.Invert)) or (
                    isinstance(v, ast.Call) and isinstance(v.func, ast.Attribute) and v.func.attr in MASK_MAKERS):
                masks.add(node.targets[0].id)
    parents = index.parents
    for node in ast.walk(scope):
        if isinstance(node, ast.Call):
            out += _call_rules(node)
        elif isinstance(node, ast.Subscript) and not (isinstance(parents.get(node), ast.Assign) and
                                                       node in parents[node].targets):  # x[m] = v keeps x's shape
            sl = node.slice
            if isinstance(sl, ast.Compare) or (isinstance(sl, ast.Name) and sl.id in masks):
                out.append(_hit("GSP002", node, "boolean-mask indexing makes the output shape depend on data",
                                "shape decided by tensor values", "use `torch.where(mask, x, 0)` or a fixed-size "
                                "index; keep data-dependent shapes out of the captured region"))
        elif isinstance(node, (ast.If, ast.While, ast.IfExp, ast.Assert)) and _tensorish(node.test):
            out.append(_hit("GSP005", node.test, "branch on a tensor value", "the branch taken at capture is "
                            "replayed forever", "compute both sides and select with `torch.where`, or decide "
                            "outside the captured region"))
        elif is_method and isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            targets = [e for t in targets for e in (t.elts if isinstance(t, (ast.Tuple, ast.List)) else [t])]
            for t in targets:
                if (isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self"
                        and not _lazy_init(t.attr, node, parents)):
                    out.append(_hit("GSP004", t, f"Python state `self.{t.attr}` is updated in captured code",
                                    "runs at capture only, never on replay", "keep state in device tensors updated "
                                    "in place (`self.buf.add_(1)`), or update it outside the graph"))
        elif isinstance(node, ast.Global):
            out.append(_hit("GSP004", node, f"global `{', '.join(node.names)}` is updated in captured code",
                            "runs at capture only", "keep state in device tensors, or update it outside the graph"))
    return out


def _call_rules(node: ast.Call) -> list[Hit]:
    fn = _name(node.func)
    attr = node.func.attr if isinstance(node.func, ast.Attribute) else None
    if attr in HOST_SYNC_METHODS and not node.args and not node.keywords:
        return [_hit("GSP001", node, f"`.{attr}()` copies to the host and waits", "host sync in captured code",
                     "keep the value on the GPU; take host values before capture")]
    if attr == "to" and any(isinstance(a, ast.Constant) and a.value == "cpu" for a in node.args):
        return [_hit("GSP001", node, "`.to(\"cpu\")` copies to the host and waits", "host sync in captured code",
                     "keep the value on the GPU; take host values before capture")]
    if fn == "torch.cuda.synchronize" or (attr == "synchronize" and not node.args):
        return [_hit("GSP001", node, f"`{fn}()` waits for the GPU", "synchronization in captured code",
                     "remove it: a capturing stream cannot be waited on")]
    if fn in ("float", "int", "bool") and len(node.args) == 1 and _tensorish(node.args[0]):
        return [_hit("GSP001", node, f"`{fn}()` of a tensor copies to the host and waits", "host sync",
                     "keep the value as a tensor")]
    if (attr in DYNAMIC_SHAPE or fn in {f"torch.{n}" for n in DYNAMIC_SHAPE} or (
            fn == "torch.where" and len(node.args) == 1 and not node.keywords)) and not _static_repeats(node, fn):
        return [_hit("GSP002", node, f"`{fn}` returns a shape that depends on the data",
                     "data-dependent shape", "use fixed-size alternatives (`torch.where(c, a, b)`, padding "
                     "with a known maximum)")]
    if fn in {f"torch.{n}" for n in HOST_TENSOR_MAKERS}:
        dev = next((k.value for k in node.keywords if k.arg == "device"), None)
        if dev is not None and not (isinstance(dev, ast.Constant) and dev.value == "cpu"):
            return [_hit("GSP003", node, f"`{fn}(...)` copies host data to the GPU inside captured code",
                         "the value is frozen at capture", "create the tensor once outside the graph and "
                         "`copy_` new values into it before each replay")]
    if attr in ("cuda", "to") and isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Call) \
            and _name(node.func.value.func) in {f"torch.{n}" for n in HOST_TENSOR_MAKERS}:
        return [_hit("GSP003", node, "a host-built tensor is copied to the GPU inside captured code",
                     "the value is frozen at capture", "create the tensor once outside the graph and `copy_` "
                     "new values into it before each replay")]
    return []


def _warmup_rule(w: ast.With, tree: ast.Module, index: _Index) -> list[Hit]:
    """``torch.cuda.graph`` capture with no warm-up call of the captured callable before it, in a module
    that has no warm-up of its own elsewhere (a function or class named for it, as in runners that warm
    up in one method and capture in another)."""
    calls = [n for stmt in w.body for n in ast.walk(stmt) if isinstance(n, ast.Call)]
    if not calls:
        return []
    captured = {_name(c.func) for c in calls}
    func = _enclosing(w, index.parents)
    body = func.body if func is not None else tree.body
    for node in body:
        if node is w or getattr(node, "lineno", 0) > w.lineno:
            break
        for n in ast.walk(node):  # a statement that holds the capture (an outer with) counts up to it
            if isinstance(n, ast.Call) and n.lineno < w.lineno and (
                    _name(n.func) in captured or _name(n.func) == "torch.cuda.stream" or _warm(_name(n.func))):
                return []
    owner = next((c for c in tree.body if isinstance(c, ast.ClassDef) and func in c.body), None)
    for scope in (tree.body, owner.body if owner is not None else []):  # module functions, sibling methods
        if any(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and _warm(n.name) for n in scope):
            return []
    item = next((i.context_expr for i in w.items if _is_graph_ctx(i.context_expr)), w.items[0].context_expr)
    return [_hit("GSP006", item, "CUDA-graph capture without a warm-up run",
                 "the first call (lazy init, autotuning, allocations) happens during capture",
                 f"run `{sorted(captured)[0]}(...)` a few times on a side stream (`with torch.cuda.stream(s):`) "
                 "before capturing")]


def _warm(name: str) -> bool:
    """A warm-up by its name: ``warmup``, ``self._warm_up``, ``warmup_model`` (not ``skip_warmup``)."""
    return name.rsplit(".", 1)[-1].lstrip("_").lower().startswith("warm")


def _enclosing(target: ast.AST, parents: dict) -> ast.AST | None:
    """The innermost function that holds ``target``."""
    node = parents.get(target)
    while node is not None and not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        node = parents.get(node)
    return node


def _static_output_rule(tree: ast.Module) -> list[Hit]:
    """A function that replays a graph and returns the graph's static output buffer itself."""
    out = []
    for fn in ast.walk(tree):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        if not any(isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "replay"
                   for n in ast.walk(fn)):
            continue
        for ret in (n for n in ast.walk(fn) if isinstance(n, ast.Return) and n.value is not None):
            values = ret.value.elts if isinstance(ret.value, ast.Tuple) else [ret.value]
            for v in values:
                base = v.value if isinstance(v, ast.Subscript) else v
                if isinstance(base, ast.Attribute) and isinstance(base.value, ast.Name) and base.value.id == "self":
                    out.append(_hit("GSP007", v, f"the graph's static output `{_name(v)}` is returned without a copy",
                                    "the next replay overwrites what the caller holds",
                                    f"return `{_name(v)}.clone()`, or document that the result is only valid until "
                                    "the next call"))
    return out


STR_METHODS = {"startswith", "endswith", "find", "rfind", "index", "rindex", "count", "replace", "split",
               "partition", "removeprefix", "removesuffix", "strip", "lstrip", "rstrip"}


def _per_thread_flags(tree: ast.Module, index: _Index) -> list[Hit]:
    """nvcc flags that make the default stream per-thread, in build scripts (setup.py, load(...)). A flag
    that is only looked for (compared, tested with ``in``, passed to a string method such as
    ``startswith``, or held in a name used only that way) is not set anywhere, so it is not reported."""
    flags = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and _has_flag(node.value):
            flags.append(node)
        elif isinstance(node, (ast.List, ast.Tuple)):
            vals = [e.value if isinstance(e, ast.Constant) else None for e in node.elts]
            flags += [node.elts[i] for i, v in enumerate(vals[:-1])
                      if isinstance(vals[i + 1], str) and (v, vals[i + 1].split("=")[0]) in _FLAG_PAIRS]
    if not flags:  # most files: no need for the name uses below
        return []
    uses: dict[str, list[ast.Name]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            uses.setdefault(node.id, []).append(node)
    for fn in ast.walk(tree):  # a name a function binds locally is not the module's: its uses do not count
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            local = {a.arg for a in ast.walk(fn.args) if isinstance(a, ast.arg)}
            local |= {n.id for n in ast.walk(fn) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
            for name in local & uses.keys():
                uses[name] = []
    return [_hit("GSC007", flag, "nvcc flag makes the default stream per-thread",
                 "work on the default stream escapes capture", "remove the flag; launch on "
                 "`at::cuda::getCurrentCUDAStream()`")
            for flag in flags if not _only_looked_for(flag, index.parents, uses)]


def _has_flag(value: str) -> bool:
    """The flag in a string that reads as compiler flags or an nvcc command line: at its start, or after
    other flags (``"-O3 --default-stream per-thread"``), or after an ``nvcc`` word (``"nvcc -O3
    -DCUDA_API_PER_THREAD_DEFAULT_STREAM k.cu"``); not in prose (``"do not pass --default-stream ..."``)."""
    words = value.split()
    for i, w in enumerate(words):
        if w.startswith("-") and " ".join(words[i:]).startswith(PER_THREAD_FLAGS):
            before = words[:i]
            nvcc = next((k for k, b in enumerate(before) if b.rsplit("/", 1)[-1] == "nvcc"), None)
            if nvcc is None and all(b.startswith("-") for b in before):
                return True
            args = before[nvcc + 1:] if nvcc is not None else []
            if nvcc is not None and all(_cli_word(b) or (j and args[j - 1].startswith("-"))  # a flag's value
                                        for j, b in enumerate(args)):
                return True
    return False


def _cli_word(word: str) -> bool:
    """A word of a command line after ``nvcc``: a flag, or a file (``k.cu``, ``build/k.o``)."""
    return word.startswith("-") or (("." in word or "/" in word) and word[-1] not in ",;:")


def _only_looked_for(node: ast.AST, parents: dict, uses: dict[str, list[ast.Name]]) -> bool:
    """Whether the value ``node`` (a constant, or a name holding it) is only matched against, never set:
    climbing out of the containers that hold it, it ends in a comparison or a string method's argument
    (``replace``'s first), or in a module-level assignment to names whose every use is such (names no
    function rebinds)."""
    owner = node
    while isinstance(parents.get(owner), (ast.List, ast.Tuple, ast.Set, ast.Starred, ast.BinOp, ast.Dict)):
        owner = parents[owner]
    parent = parents.get(owner)
    if isinstance(parent, ast.Compare):
        return True
    if isinstance(parent, ast.Call) and owner in parent.args and isinstance(parent.func, ast.Attribute):
        if parent.func.attr == "replace":  # what it looks for; the replacement is what it sets
            return parent.args[0] is owner
        return parent.func.attr in STR_METHODS
    if isinstance(parent, (ast.Assign, ast.AnnAssign)) and owner is parent.value \
            and isinstance(parents.get(parent), ast.Module):
        targets = parent.targets if isinstance(parent, ast.Assign) else [parent.target]
        if not all(isinstance(t, ast.Name) for t in targets):
            return False
        loads = [u for t in targets for u in uses.get(t.id, [])]
        return bool(loads) and all(_only_looked_for(u, parents, {}) for u in loads)
    return False
