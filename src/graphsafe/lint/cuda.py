"""CUDA C++ parsing with tree-sitter-cuda: kernel launches, calls, and where a stream value comes from.

Stream values are followed within the enclosing function: a parameter is the caller's business
(accepted), a local is traced to its initializer or last assignment before the use, casts and
``.stream()`` are looked through, and only values known to name a default stream are reported.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass


@functools.cache
def language():
    import tree_sitter
    import tree_sitter_cuda

    return tree_sitter.Language(tree_sitter_cuda.language())


@functools.cache
def parser():
    import tree_sitter

    return tree_sitter.Parser(language())


@functools.cache
def _query(source: str):
    import tree_sitter

    return tree_sitter.Query(language(), source)


def matches(query_source: str, node) -> list[dict[str, object]]:
    """One dict per match: capture name -> node (the first node of that capture)."""
    import tree_sitter

    out = []
    for _, caps in tree_sitter.QueryCursor(_query(query_source)).matches(node):
        out.append({k: v[0] for k, v in caps.items() if v})
    return out


def text(node, src: bytes) -> str:
    return src[node.start_byte:node.end_byte].decode(errors="replace")


LAUNCH_QUERY = "(call_expression function: (_) @fn (kernel_call_syntax) @cfg) @launch"
CALL_QUERY = "(call_expression function: (_) @fn arguments: (argument_list) @args) @call"

# What the C++ rules and the engine look for in a whole file, one pattern each: run as one query, so that
# tree-sitter walks the tree once rather than once a pattern (on the headers inside torch, the eight walks
# of the first eight took about half of the lint's time).
PATTERNS = {
    "launch": LAUNCH_QUERY,
    "call": CALL_QUERY,
    "asm": "(gnu_asm_expression) @asm",
    "declaration": "(declaration type: (_) @type) @decl",
    "macro_function": "(preproc_function_def name: (identifier) @name parameters: (preproc_params) @params "
                      "value: (preproc_arg) @body) @def",
    "macro": "(preproc_def name: (identifier) @name) @def",
    "error": "(ERROR) @e",
    "comment": "(comment) @c",
    "using": "(using_declaration) @u",
}


@functools.cache
def _scan_query():
    query = _query("\n".join(PATTERNS.values()))
    if query.pattern_count != len(PATTERNS):  # an entry holding two patterns would shift every name after it
        raise RuntimeError(f"PATTERNS holds {query.pattern_count} patterns for {len(PATTERNS)} names")
    return query


class Scan:
    """Every match of :data:`PATTERNS` under ``node``, from one pass: ``scan["call"]`` is what
    ``matches(CALL_QUERY, node)`` gives, in the same order."""

    def __init__(self, node):
        import tree_sitter

        names = list(PATTERNS)
        self.found: dict[str, list[dict[str, object]]] = {name: [] for name in names}
        for index, caps in tree_sitter.QueryCursor(_scan_query()).matches(node):
            self.found[names[index]].append({k: v[0] for k, v in caps.items() if v})

    def __getitem__(self, name: str) -> list[dict[str, object]]:
        return self.found[name]


# ---------------------------------------------------------------------------------------------- launches
@dataclass
class Launch:
    kernel: str
    line: int             # 1-based
    column: int           # 1-based, at the kernel name
    config: list[str]     # the <<<...>>> arguments, as written
    function: str | None  # the enclosing function
    span: int = 0         # length of `kernel<<<...>>>` on its first line
    node: object = None   # the call_expression
    config_nodes: tuple = ()

    @property
    def stream(self) -> str | None:
        """The stream argument as written (4th launch-config argument), None if absent."""
        return self.config[3] if len(self.config) >= 4 else None


def function_name(node, src: bytes) -> str | None:
    """The name a function definition declares, as written (``Foo::bar``, ``Event<T>::synchronize``,
    ``bar<int>``), through pointer and reference declarators; None where there is none."""
    decl = node.child_by_field_name("declarator")
    while decl is not None and decl.type not in ("identifier", "qualified_identifier", "field_identifier",
                                                 "destructor_name", "operator_name", "template_function"):
        inner = decl.child_by_field_name("declarator")
        if inner is None:  # a reference declarator holds its declarator as a plain child
            inner = next((c for c in decl.named_children if c.type.endswith("declarator")), None)
        decl = inner
    return text(decl, src) if decl is not None else None


def enclosing_function(node):
    while node is not None:
        if node.type == "function_definition":
            return node
        node = node.parent
    return None


def launches_in(root, src: bytes, scan: Scan | None = None) -> list[Launch]:
    """Every triple-chevron launch under ``root`` (``scan``: the :class:`Scan` of ``root``, if made)."""
    out = []
    for m in (scan or Scan(root))["launch"]:
        call, fn, cfg = m["launch"], m["fn"], m["cfg"]
        cfg_nodes = tuple(c for c in cfg.named_children if c.type != "comment")
        same_line = cfg.end_point[0] == fn.start_point[0]
        span = (cfg.end_point[1] if same_line else fn.end_point[1]) - fn.start_point[1]
        func = enclosing_function(call)
        out.append(Launch(kernel=text(fn, src), line=fn.start_point[0] + 1, column=fn.start_point[1] + 1,
                          config=[text(c, src) for c in cfg_nodes],
                          function=function_name(func, src) if func is not None else None,
                          span=span, node=call, config_nodes=cfg_nodes))
    return sorted(out, key=lambda ln: (ln.line, ln.column))


def launches(source: bytes | str) -> list[Launch]:
    """Every triple-chevron launch in ``source``, in order."""
    src = source.encode() if isinstance(source, str) else source
    return launches_in(parser().parse(src).root_node, src)


# ------------------------------------------------------------------------------------ following values
@dataclass(frozen=True)
class StreamValue:
    verdict: str          # "default" | "ok" | "unknown"
    kind: str = ""        # for "default": "legacy" | "per-thread" | "default"; for "ok": why
    written: str = ""     # the expression that decided it

    @property
    def is_default(self) -> bool:
        return self.verdict == "default"


_LEGACY_NAMES = {"0", "nullptr", "NULL", "cudaStreamLegacy", "CU_STREAM_LEGACY"}
_PER_THREAD_NAMES = {"cudaStreamPerThread", "CU_STREAM_PER_THREAD"}
_CASTS = ("static_cast", "reinterpret_cast", "const_cast", "c10::bit_cast")


def _block_end(decl) -> int | None:
    """Where the block a declaration holds in ends (a ``for``'s own declaration: the loop's end); ``None``
    for the function's outermost block, which holds to the end of the function."""
    node = decl.parent
    while node is not None:
        if node.type in ("for_statement", "for_range_loop"):
            return node.end_byte
        if node.type == "compound_statement":
            outer = node.parent
            return None if outer is None or outer.type == "function_definition" else node.end_byte
        node = node.parent
    return None


class FunctionScope:
    """Parameters, declarations and assignments of one function (or macro body), for value following."""

    def __init__(self, func_node, src: bytes, params: set[str] | None = None) -> None:
        self.src = src
        self.params: set[str] = set(params or ())
        # name -> [(byte offset, value node, end of the block it holds in or None: the whole function)]
        self.defs: dict[str, list[tuple[int, object, int | None]]] = {}
        if func_node is None:
            return
        decl = func_node.child_by_field_name("declarator")
        plist = None
        while decl is not None and plist is None:
            plist = decl.child_by_field_name("parameters")
            decl = decl.child_by_field_name("declarator")
        if plist is not None:
            for p in plist.named_children:
                name = self._declared_name(p.child_by_field_name("declarator"))
                if name:
                    self.params.add(name)
        body = func_node.child_by_field_name("body")
        if body is not None:
            self._collect(body)

    def _declared_name(self, d) -> str | None:
        while d is not None and d.type not in ("identifier", "field_identifier"):
            d = d.child_by_field_name("declarator") or (d.named_children[0] if d.named_children else None)
        return text(d, self.src) if d is not None else None

    def _collect(self, body) -> None:
        for m in matches("""
            (init_declarator declarator: (_) @name value: (_) @value) @def
            (declaration declarator: (identifier) @bare) @plain
            (assignment_expression left: (_) @lhs right: (_) @rhs) @assign
        """, body):
            if "plain" in m:  # declared without a value: shadows an outer name for its block, holds none
                self.defs.setdefault(text(m["bare"], self.src), []).append(
                    (m["plain"].start_byte, None, _block_end(m["bare"])))
            elif "def" in m:
                name = m["name"]
                n = text(name, self.src) if name.type == "identifier" else self._declared_name(name)
                if n:
                    self.defs.setdefault(n, []).append((m["def"].start_byte, m["value"], _block_end(m["def"])))
            else:
                self.defs.setdefault(text(m["lhs"], self.src), []).append((m["assign"].start_byte, m["rhs"], -1))
        for name, v in self.defs.items():
            v.sort(key=lambda t: t[0])
            for i, (pos, value, end) in enumerate(v):
                if end == -1:  # an assignment holds as long as the declaration it assigns
                    decl = [e for p, _, e in v[:i] if e != -1 and p < pos and (e is None or pos < e)]
                    v[i] = (pos, value, decl[-1] if decl else None)

    def last_def(self, name: str, before: int):
        """The value ``name`` holds at byte ``before``: its last definition there whose block is still open."""
        found = [v for pos, v, end in self.defs.get(name, []) if pos < before and (end is None or before < end)]
        return found[-1] if found else None

    def stream_value(self, node, depth: int = 0) -> StreamValue:
        """Where the stream expression ``node`` comes from."""
        src = self.src
        written = text(node, src)
        if depth > 6:
            return StreamValue("unknown", written=written)
        t = node.type
        if t in ("parenthesized_expression", "cast_expression"):
            inner = node.child_by_field_name("value") or node.named_children[-1]
            return self.stream_value(inner, depth + 1)
        if t in ("number_literal", "null", "nullptr") or (t == "identifier" and written in _LEGACY_NAMES):
            if t == "number_literal" and written.rstrip("uUlL").lower() not in ("0", "0x0"):
                return StreamValue("unknown", written=written)
            return StreamValue("default", "legacy", written)
        if written in _PER_THREAD_NAMES or written.endswith(("::cudaStreamPerThread",)):
            return StreamValue("default", "per-thread", written)
        if written.endswith("::cudaStreamLegacy"):
            return StreamValue("default", "legacy", written)
        if t == "conditional_expression":
            for branch in (node.child_by_field_name("consequence"), node.child_by_field_name("alternative")):
                if branch is not None:
                    v = self.stream_value(branch, depth + 1)
                    if v.is_default:
                        return v
            return StreamValue("unknown", written=written)
        if t == "call_expression":
            fn = node.child_by_field_name("function")
            args = node.child_by_field_name("arguments")
            callee = text(fn, src) if fn is not None else ""
            base = callee.split("<")[0]
            if base.endswith(_CASTS) and args is not None and args.named_children:
                return self.stream_value(args.named_children[0], depth + 1)
            if base in ("cudaStream_t", "CUstream") and args is not None and not args.named_children:
                return StreamValue("default", "legacy", written)  # cudaStream_t(): a null stream
            if base.endswith("getDefaultCUDAStream"):
                return StreamValue("default", "default", written)
            if base.endswith(("getCurrentCUDAStream", "getCurrentStream", "current_stream")):
                return StreamValue("ok", "the current stream", written)
            if fn is not None and fn.type == "field_expression":
                field = fn.child_by_field_name("field")
                if field is not None and text(field, src) == "stream":
                    return self.stream_value(fn.child_by_field_name("argument"), depth + 1)
            return StreamValue("unknown", written=written)
        if t in ("identifier", "field_expression", "qualified_identifier"):
            if written in self.params:
                return StreamValue("ok", "a parameter", written)
            value = self.last_def(written, node.start_byte)
            if value is not None:
                if value.type in ("initializer_list", "argument_list") and not value.named_children:
                    return StreamValue("default", "legacy", f"{written}{text(value, src)}")  # value-initialized: null
                if value.type == "initializer_list" and value.named_children:
                    value = value.named_children[0]
                elif value.type in ("argument_list",) and value.named_children:
                    value = value.named_children[0]
                return self.stream_value(value, depth + 1)
            return StreamValue("unknown", written=written)
        return StreamValue("unknown", written=written)


NO_STREAM = StreamValue("default", "legacy", "")  # `<<<grid, block>>>` / `<<<grid, block, smem>>>`


def launch_stream(ln: Launch, scope: FunctionScope) -> StreamValue:
    """The stream a triple-chevron launch runs on: no 4th config argument is the legacy default stream."""
    return scope.stream_value(ln.config_nodes[3]) if len(ln.config_nodes) > 3 else NO_STREAM
