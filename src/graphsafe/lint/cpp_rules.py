"""Rules for CUDA C++ / C++ sources (GSC codes), on the tree-sitter-cuda syntax tree."""
from __future__ import annotations

from dataclasses import dataclass

from .cuda import (NO_STREAM, FunctionScope, Scan, StreamValue, enclosing_function, function_name, launch_stream,
                   launches_in, matches, parser, text)


@dataclass
class Hit:
    """A rule's raw result: the engine turns it into a Finding (severity, help, suppression)."""

    code: str
    line: int      # 1-based
    column: int    # 1-based
    span: int
    message: str
    label: str = ""
    help: str = ""


# stream argument position (0-based) of calls that enqueue work; None: the stream lives in a config struct
STREAM_ARG = {
    "cudaLaunchKernel": 5, "cudaLaunchCooperativeKernel": 5, "cuLaunchKernel": 8, "cuLaunchCooperativeKernel": 8,
    "cudaMemcpyAsync": 4, "cudaMemsetAsync": 3, "cudaMemcpy2DAsync": 7, "cudaMemset2DAsync": 5,
    "cudaMemcpy3DAsync": 1, "cudaMemset3DAsync": 3, "cudaMemcpyToSymbolAsync": 5,
    "cudaMemcpyFromSymbolAsync": 5, "cudaMemcpyPeerAsync": 5, "cudaMemcpy2DToArrayAsync": 8,
    "cuMemcpyAsync": 3, "cuMemcpyHtoDAsync": 3, "cuMemcpyDtoHAsync": 3, "cuMemcpyDtoDAsync": 3,
    "cuMemsetD8Async": 3, "cuMemsetD16Async": 3, "cuMemsetD32Async": 3, "cuMemcpy2DAsync": 1,
    "cuMemcpy3DAsync": 1,
}
# runtime-API calls whose C++ overloads default the stream to 0: the fewest arguments such a call takes
STREAM_DEFAULTED = {"cudaLaunchKernel": 4, "cudaLaunchCooperativeKernel": 4, "cudaMemcpyAsync": 4,
                    "cudaMemsetAsync": 3, "cudaMemcpy2DAsync": 7, "cudaMemset2DAsync": 5, "cudaMemcpy3DAsync": 1,
                    "cudaMemset3DAsync": 3, "cudaMemcpyToSymbolAsync": 3, "cudaMemcpyFromSymbolAsync": 3,
                    "cudaMemcpyPeerAsync": 5, "cudaMemcpy2DToArrayAsync": 8}
CONFIG_LAUNCH = {"cudaLaunchKernelEx": "stream", "cuLaunchKernelEx": "hStream"}
STREAM_CREATE = {"cudaStreamCreate", "cudaStreamCreateWithFlags", "cudaStreamCreateWithPriority",
                 "cuStreamCreate", "cuStreamCreateWithPriority"}
HANDLE_CREATE = {"cublasCreate": "cublasSetStream", "cublasCreate_v2": "cublasSetStream",
                 "cudnnCreate": "cudnnSetStream", "cusparseCreate": "cusparseSetStream",
                 "cusolverDnCreate": "cusolverDnSetStream", "cusolverSpCreate": "cusolverSpSetStream"}
SET_STREAM = {"cublasSetStream", "cublasSetStream_v2", "cudnnSetStream", "cusparseSetStream",
              "cusolverDnSetStream", "cusolverSpSetStream"}
# calls that make the host wait: the CUDA APIs, and c10's helpers (c10/cuda/CUDAFunctions.h, the CUDA
# device guard's synchronizeEvent/synchronizeDevice); a `.synchronize()` call is one too (_check_host_sync)
SYNC = {"cudaDeviceSynchronize", "cudaStreamSynchronize", "cudaEventSynchronize", "cudaThreadSynchronize",
        "cuCtxSynchronize", "cuStreamSynchronize", "cuEventSynchronize", "device_synchronize",
        "stream_synchronize", "memcpy_and_sync", "synchronizeEvent", "synchronizeDevice"}
# helpers that may wait by design, whose own bodies are not reported (calls to them are not either: c10's device
# guard's synchronizeStream blocks the host, c10d's Work::synchronizeStream makes a stream wait)
SYNC_HELPER = {"synchronizeStream"}
SYNC_COPY = {"cudaMemcpy", "cudaMemset", "cudaMemcpy2D", "cudaMemcpy3D", "cudaMemset2D", "cudaMemset3D",
             "cudaMemcpyToSymbol", "cudaMemcpyFromSymbol", "cudaMemcpyPeer", "cuMemcpy", "cuMemcpyHtoD",
             "cuMemcpyDtoH", "cuMemcpyDtoD", "cuMemsetD8", "cuMemsetD16", "cuMemsetD32"}
SYNC_METHOD = {"item", "cpu"}  # tensor.item<T>(), tensor.cpu(): device-to-host copies that wait
HOST_WAIT_CALLS = SYNC_COPY | SYNC_METHOD  # with _synchronizes(name): the calls _check_host_sync looks at
ALLOC = {"cudaMalloc", "cudaFree", "cudaMallocHost", "cudaFreeHost", "cudaHostAlloc", "cudaMallocManaged",
         "cudaMallocPitch", "cudaMalloc3D", "cudaMallocArray", "cuMemAlloc", "cuMemAlloc_v2", "cuMemFree",
         "cuMemFree_v2", "cuMemAllocHost", "cuMemAllocManaged"}
LAUNCH_CHECKS = ("LAUNCH_CHECK", "GetLastError", "PeekAtLastError", "KERNEL_CHECK", "CHECK_LAST")
PER_THREAD_MACRO = "CUDA_API_PER_THREAD_DEFAULT_STREAM"
_STREAM_TYPES = {"cudaStream_t", "CUstream", "CUDAStream", "at::cuda::CUDAStream", "c10::cuda::CUDAStream"}

_FIX = "use the stream PyTorch captures: `at::cuda::getCurrentCUDAStream()`"
_KIND_WORDS = {"legacy": "the legacy default stream", "per-thread": "the per-thread default stream",
               "default": "PyTorch's default stream (the legacy NULL stream)"}


def _synchronizes(name: str) -> bool:
    """Whether a call or function of this (unqualified) name makes the host wait: one of SYNC, or a
    ``synchronize`` (a stream's, an event's, ``torch::cuda::synchronize()``)."""
    return name in SYNC or name == "synchronize"


def _device_only(func) -> bool:
    """Whether a function definition is device code (``__global__``, or ``__device__`` without ``__host__``)."""
    kinds = {c.type for c in func.children} if func is not None else set()
    return bool(kinds & {"__global__", "__device__"}) and "__host__" not in kinds


def _base(callee: str) -> str:
    """``at::cuda::foo<int>`` -> ``foo``; ``x.item<float>`` -> ``item``; ``Event<T>::synchronize`` ->
    ``synchronize`` (template arguments dropped wherever they are, however nested)."""
    name = callee
    if "<" in callee:  # most callees have none: every call expression comes through here
        depth, kept = 0, []
        for ch in callee:
            if ch == "<":
                depth += 1
            elif ch == ">" and depth:
                depth -= 1
            elif not depth:
                kept.append(ch)
        name = "".join(kept)
    for sep in ("::", ".", "->"):
        name = name.rsplit(sep, 1)[-1]
    return name.strip()


_TORCH_CUDA = {("namespace", "torch::cuda"), ("", "torch::cuda::synchronize")}


def _torch_cuda_usings(scan: Scan, src: bytes) -> list:
    """The using-directives for ``torch::cuda`` and using-declarations of ``torch::cuda::synchronize`` in a
    tree (its :class:`Scan`)."""
    out = []
    for m in scan["using"]:
        u = m["u"]
        named = [c for c in u.named_children if c.type in ("qualified_identifier", "identifier")]
        kind = "namespace" if any(c.type == "namespace" for c in u.children) else ""
        if named and (kind, "".join(text(named[-1], src).split()).lstrip(":")) in _TORCH_CUDA:
            out.append(u)
    return out


class _Ctx:
    def __init__(self, src: bytes, row0: int = 0, col0: int = 0, prefix: int = 0, params=None, usings=()):
        self.src, self.row0, self.col0, self.prefix = src, row0, col0, prefix
        self.macro_params = params
        self._scopes: dict[int, FunctionScope] = {}
        self.usings = usings  # the whole file's usings of torch::cuda (_torch_cuda_usings; none in a macro's snippet)

    def torch_cuda_synchronize(self, call) -> bool:
        """Whether a bare ``synchronize()`` at ``call`` names ``torch::cuda::synchronize``: a using-directive
        for ``torch::cuda`` (or a using-declaration of the function) earlier in a scope holding the call."""
        for using in self.usings:
            if using.start_byte < call.start_byte and using.parent is not None and \
                    using.parent.start_byte <= call.start_byte < using.parent.end_byte:
                return True
        return False

    def scope(self, node) -> FunctionScope:
        func = enclosing_function(node)
        key = func.id if func is not None else -1
        if key not in self._scopes:
            self._scopes[key] = FunctionScope(func, self.src, self.macro_params)
        return self._scopes[key]

    def pos(self, node) -> tuple[int, int]:
        """1-based (line, column) in the real file (macro bodies are parsed as shifted snippets)."""
        r, c = node.start_point
        if r == 0:
            c = c - self.prefix + self.col0
        return self.row0 + r + 1, c + 1

    def hit(self, code, node, message, label="", help_="", span=None) -> Hit:
        line, col = self.pos(node)
        if span is None:
            if node.end_point[0] == node.start_point[0]:
                span = node.end_point[1] - node.start_point[1]
            else:
                span = len(self.src.split(b"\n")[node.start_point[0]]) - node.start_point[1]
        return Hit(code, line, col, max(1, span), message, label, help_)


def lint_cpp(src: bytes, return_tree: bool = False, tree=None):
    """All hits in a C/C++/CUDA source, and how many bytes lie in regions tree-sitter could not parse
    (and, with ``return_tree``, the syntax tree and its :class:`Scan`). ``tree``: tree-sitter's parse of
    ``src``, if the caller has it already."""
    tree = tree if tree is not None else parser().parse(src)
    scan = Scan(tree.root_node)
    hits = _lint_tree(tree.root_node, _Ctx(src, usings=_torch_cuda_usings(scan, src)), in_macro=False, scan=scan)
    for m in scan["macro_function"]:
        hits += _lint_macro(m, src)
    for m in scan["macro"]:
        if text(m["name"], src) == PER_THREAD_MACRO:
            hits.append(_Ctx(src).hit(
                "GSC007", m["def"], f"`{PER_THREAD_MACRO}` makes the default stream per-thread",
                "per-thread default stream switched on here",
                "remove the define; launch on `at::cuda::getCurrentCUDAStream()` instead of the default stream"))
    errors = error_bytes(tree, scan)
    return (hits, errors, tree, scan) if return_tree else (hits, errors)


def error_bytes(tree, scan: Scan | None = None) -> int:
    """Bytes inside regions tree-sitter could not parse (macro-heavy C++ gives small ones everywhere).
    ``scan``: the tree's :class:`Scan`, if made."""
    if not tree.root_node.has_error:
        return 0
    found = scan["error"] if scan is not None else matches("(ERROR) @e", tree.root_node)
    return _covered(sorted((m["e"].start_byte, m["e"].end_byte) for m in found))


def _covered(spans: list[tuple[int, int]]) -> int:
    """Bytes covered by sorted (start, end) spans: error regions nest, and each byte counts once."""
    total, reach = 0, 0
    for start, end in spans:
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total


def _lint_macro(m, src: bytes) -> list[Hit]:
    """Launches inside a function-like macro: parsed as a snippet; the macro's parameters are accepted
    stream values (the macro forwards whatever its user passes)."""
    body = m["body"]
    params = {text(p, src) for p in m["params"].named_children if p.type == "identifier"}
    code = text(body, src).replace("\\\n", " \n")
    prefix = "void __graphsafe_macro__() { "
    snippet = (prefix + code + "\n;}").encode()
    sub = parser().parse(snippet)
    ctx = _Ctx(snippet, body.start_point[0], body.start_point[1], len(prefix), params)
    return _lint_tree(sub.root_node, ctx, in_macro=True)


def _check_host_sync(ctx: _Ctx, call, fn, name: str, argv) -> list[Hit]:
    """GSC004 for a call that makes the host wait: a synchronization, a synchronous copy or memset, or a
    tensor's ``.item()``/``.cpu()``. Not in device code, and not inside a synchronization helper itself
    (c10's ``stream_synchronize``, an event's ``synchronize()``: a function defined with a name of SYNC or
    as ``synchronize``): waiting is what it is for, and the calls to it are reported where they are made."""
    method = fn.type == "field_expression"
    if name in SYNC_COPY:
        if method:
            return []
        hit = ctx.hit("GSC004", fn, f"`{name}` is synchronous", "synchronous copy/memset",
                      f"use `{name}Async(..., at::cuda::getCurrentCUDAStream())`"
                      if name.startswith("cuda") else "use the `...Async` variant on the current stream")
    elif name in SYNC_METHOD:
        if not method or name == "cpu" and argv:
            return []
        hit = ctx.hit("GSC004", fn, f"`.{name}()` copies a tensor to the host and waits", "host sync",
                      "keep the value on the GPU (pass tensors, not scalars, to kernels)")
    else:
        own = method and text(fn.child_by_field_name("argument"), ctx.src) == "this"
        if name not in SYNC and (own or fn.type == "identifier" and not ctx.torch_cuda_synchronize(call)):
            return []  # a class's own synchronize(), which may make a stream wait rather than the host (c10d's Work)
        hit = ctx.hit("GSC004", fn, f"`{f'.{name}()' if method else name}` blocks the host inside an op",
                      "host synchronization",
                      "remove it: ops must stay asynchronous (a capturing stream cannot be waited on)")
    func = enclosing_function(call)
    if _device_only(func) or func is not None and (_synchronizes(defined := _base(function_name(func, ctx.src) or ""))
                                                   or defined in SYNC_HELPER):
        return []
    return [hit]


def _lint_tree(root, ctx: _Ctx, in_macro: bool, scan: Scan | None = None) -> list[Hit]:
    src = ctx.src
    scan = scan or Scan(root)
    hits: list[Hit] = []
    later: dict = {}  # _launch_checked's cache
    for ln in launches_in(root, src, scan):
        if _device_only(enclosing_function(ln.node)):
            continue  # a device-side launch (dynamic parallelism): the device runtime's streams, not the host's
        hits += _check_launch(ln, ctx)
        if not in_macro and not _launch_checked(ln.node, src, later):
            hits.append(ctx.hit("GSC006", ln.node.child_by_field_name("function"),
                                f"launch of `{ln.kernel}` is never checked for errors", "unchecked launch",
                                "add `C10_CUDA_KERNEL_LAUNCH_CHECK();` (or check `cudaGetLastError()`) after it",
                                span=ln.span))
    set_stream_calls = []
    handle_calls = []
    for m in scan["call"]:
        fn, args, call = m["fn"], m["args"], m["call"]
        callee = text(fn, src)
        name = _base(callee)
        argv = [a for a in args.named_children if a.type != "comment"]
        if name in STREAM_ARG:
            hits += _check_api_stream(ctx, call, fn, name, argv)
        elif name in CONFIG_LAUNCH:
            hits += _check_config_launch(ctx, call, fn, name, argv)
        elif name in STREAM_CREATE:
            hits.append(ctx.hit("GSC002", fn, f"`{name}` creates a stream inside an op", "stream created here",
                                "launch on `at::cuda::getCurrentCUDAStream()`; for a side stream, take one from "
                                "`at::cuda::getStreamFromPool()` and join it to the current stream with events"))
        elif name in HANDLE_CREATE:
            handle_calls.append((name, fn, argv))
        elif name in SET_STREAM:
            set_stream_calls.append((name, call, argv))
        elif name in HOST_WAIT_CALLS or _synchronizes(name):
            hits += _check_host_sync(ctx, call, fn, name, argv)
        elif name in ALLOC:
            hits.append(ctx.hit("GSC005", fn, f"`{name}` allocates or frees memory outside PyTorch's allocator",
                                "raw allocation", "allocate with `torch::empty(...)` (the caching allocator, "
                                "which graphs capture) or `c10::cuda::CUDACachingAllocator::raw_alloc`"))
    hits += _check_handles(ctx, handle_calls, set_stream_calls)
    hits += _check_pdl_waits(ctx, scan)
    if not in_macro:
        hits += _check_static_streams(ctx, scan)
    return hits


def _string_value(node, src: bytes) -> str:
    """The characters of a string literal, or of adjacent ones (``"a" "b"``), without quotes."""
    if node.type == "concatenated_string":
        return "".join(_string_value(c, src) for c in node.named_children if c.type == "string_literal")
    return "".join(text(c, src) for c in node.named_children if c.type in ("string_content", "escape_sequence"))


def _check_pdl_waits(ctx: _Ctx, scan: Scan) -> list[Hit]:
    """GSC008: an inline-asm PDL wait that the compiler may move loads across (no "memory" clobber)."""
    hits = []
    for m in scan["asm"]:
        node = m["asm"]
        code = node.child_by_field_name("assembly_code")
        if code is None or "griddepcontrol.wait" not in _string_value(code, ctx.src):
            continue
        clobbers = node.child_by_field_name("clobbers")
        if clobbers is not None and any(_string_value(c, ctx.src) == "memory" for c in clobbers.named_children):
            continue
        hits.append(ctx.hit("GSC008", node, "`griddepcontrol.wait` without a \"memory\" clobber is not a compiler "
                            "barrier", "loads may move above this wait",
                            "add the clobber (`asm volatile(\"griddepcontrol.wait;\" ::: \"memory\");`) or call "
                            "`cudaGridDependencySynchronize()`"))
    return hits


def _words(v: StreamValue) -> str:
    return _KIND_WORDS.get(v.kind, "a default stream")


def _check_launch(ln, ctx: _Ctx) -> list[Hit]:
    fn = ln.node.child_by_field_name("function")
    v = launch_stream(ln, ctx.scope(ln.node))
    if v is NO_STREAM:
        cfg = ", ".join(ln.config + (["0"] if len(ln.config) < 3 else []))
        return [ctx.hit("GSC001", fn, f"kernel launch `{ln.kernel}<<<{', '.join(ln.config)}>>>` names no stream",
                        "runs on the legacy default stream: not captured by CUDA graphs",
                        f"pass the current stream: `{ln.kernel}<<<{cfg}, at::cuda::getCurrentCUDAStream()>>>`",
                        span=ln.span)]
    if v.is_default:
        return [ctx.hit("GSC001", fn, f"kernel `{ln.kernel}` is launched on {_words(v)}",
                        f"stream `{ln.config[3]}` is {_words(v)}", _FIX, span=ln.span)]
    return []


def _check_api_stream(ctx: _Ctx, call, fn, name: str, argv) -> list[Hit]:
    idx = STREAM_ARG[name]
    if len(argv) <= idx:
        if len(argv) < STREAM_DEFAULTED.get(name, idx + 1):  # not a complete call of this API: not ours
            return []
        return [ctx.hit("GSC001", fn, f"`{name}` without a stream argument runs on the legacy default stream",
                        "stream argument omitted (defaults to 0)", f"pass `at::cuda::getCurrentCUDAStream()` "
                        f"as argument {idx + 1}")]
    v = ctx.scope(call).stream_value(argv[idx])
    if v.is_default:
        return [ctx.hit("GSC001", fn, f"`{name}` enqueues work on {_words(v)}",
                        f"stream argument `{text(argv[idx], ctx.src)}`", _FIX)]
    return []


def _check_config_launch(ctx: _Ctx, call, fn, name: str, argv) -> list[Hit]:
    if not argv:
        return []
    field = CONFIG_LAUNCH[name]
    cfg = argv[0]
    cfg_text = text(cfg, ctx.src).lstrip("&").strip()
    scope = ctx.scope(call)
    if cfg_text in scope.params:
        return []
    for access in (f"{cfg_text}.{field}", f"{cfg_text}->{field}"):
        value = scope.last_def(access, call.start_byte)
        if value is not None:
            v = scope.stream_value(value)
            return [] if not v.is_default else [ctx.hit(
                "GSC001", fn, f"`{name}` launches on {_words(v)}", f"`{access}` is `{text(value, ctx.src)}`", _FIX)]
    init = scope.last_def(cfg_text, call.start_byte)
    if init is not None and init.type == "initializer_list":
        for item in init.named_children:
            if item.type == "initializer_pair" and text(item.named_children[0], ctx.src).lstrip(".") == field:
                v = scope.stream_value(item.named_children[-1])
                return [] if not v.is_default else [ctx.hit(
                    "GSC001", fn, f"`{name}` launches on {_words(v)}", f"`.{field}` is {_words(v)}", _FIX)]
        positional = [c for c in init.named_children if c.type != "initializer_pair"]
        if field == "stream" and len(positional) >= 4:
            v = scope.stream_value(positional[3])
            return [] if not v.is_default else [ctx.hit(
                "GSC001", fn, f"`{name}` launches on {_words(v)}", f"the config's stream is {_words(v)}", _FIX)]
        return [ctx.hit("GSC001", fn, f"`{name}` launches with `{cfg_text}.{field}` never set (0: the legacy "
                        "default stream)", "launch config without a stream", f"set `{cfg_text}.{field} = "
                        "at::cuda::getCurrentCUDAStream();` before the launch")]
    return []


def _check_handles(ctx: _Ctx, handle_calls, set_stream_calls) -> list[Hit]:
    out = []
    # a setter binds the handle it names; one naming no created handle (``handle()``, an alias) may bind any
    created = {_handle_name(argv[0], ctx.src) for _, _, argv in handle_calls if argv}
    for name, fn, argv_created in handle_calls:
        setter = HANDLE_CREATE[name]
        handle = _handle_name(argv_created[0], ctx.src) if argv_created else None  # cublasCreate(&h): "h"
        bound = [argv for n, call, argv in set_stream_calls if n.startswith(setter) and len(argv) >= 2
                 and (handle is None or _handle_name(argv[0], ctx.src) == handle or
                      _handle_name(argv[0], ctx.src) not in created)
                 and not ctx.scope(call).stream_value(argv[1]).is_default]
        if not bound:
            out.append(ctx.hit("GSC003", fn, f"`{name}` creates a handle that is never bound to the current stream",
                               f"no `{setter}(handle, at::cuda::getCurrentCUDAStream())` in this file",
                               f"call `{setter}(handle, at::cuda::getCurrentCUDAStream())` before each use, or use "
                               "PyTorch's handle (`at::cuda::getCurrentCUDABlasHandle()`)"))
    return out


def _handle_name(arg, src: bytes) -> str:
    """The handle an argument names: ``&h`` and ``h`` alike (``&this->h`` as ``this->h``)."""
    t = text(arg, src).replace(" ", "")
    return t[1:] if t.startswith("&") else t


def _check_static_streams(ctx: _Ctx, scan: Scan) -> list[Hit]:
    """A stream kept in a static or global variable outlives the capture that should use it."""
    out = []
    for m in scan["declaration"]:
        decl, typ = m["decl"], m["type"]
        if text(typ, ctx.src) not in _STREAM_TYPES:
            continue
        if decl.child_by_field_name("declarator") is not None and \
                decl.child_by_field_name("declarator").type == "function_declarator":
            continue  # a prototype returning a stream holds none
        is_static = any(c.type == "storage_class_specifier" and text(c, ctx.src) == "static" for c in decl.children)
        at_file_scope = enclosing_function(decl) is None and decl.parent is not None and \
            decl.parent.type in ("translation_unit", "declaration_list")
        if is_static or at_file_scope:
            out.append(ctx.hit("GSC002", decl, "a stream is cached in a static or global variable",
                               "cached stream", "query `at::cuda::getCurrentCUDAStream()` at each launch instead",
                               span=decl.end_point[1] - decl.start_point[1] if decl.end_point[0] == decl.start_point[0]
                               else None))
    return out


def _launch_checked(call, src: bytes, later: dict | None = None) -> bool:
    """Is a launch followed, in its block, by an error check? ``later`` caches, per statement, whether a
    statement after it in its block holds one (each block is read once however many launches it has)."""
    stmt = call.parent
    while stmt is not None and stmt.type not in ("expression_statement",):
        if stmt.type in ("compound_statement", "function_definition"):
            return True  # part of a larger expression (e.g. wrapped in a check macro): not ours to judge
        stmt = stmt.parent
    if stmt is None:
        return True
    later = {} if later is None else later
    node = stmt
    while node is not None and node.type != "function_definition":  # later statements, then outer blocks
        if node.id not in later and node.parent is not None:
            _checks_after(node.parent, src, later)
        if later.get(node.id):
            return True
        node = node.parent
    return False


def _checks_after(parent, src: bytes, later: dict) -> None:
    """For each named child of ``parent``: whether a later sibling names an error check."""
    seen = False
    for child in reversed(parent.named_children):
        later[child.id] = seen
        if not seen:
            seen = any(any(k in text(m["id"], src) for k in LAUNCH_CHECKS)
                       for m in matches("[(identifier) @id (field_identifier) @id]", child))
