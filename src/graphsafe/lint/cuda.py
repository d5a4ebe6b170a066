"""CUDA C++ parsing with tree-sitter-cuda, and the kernel launches (``k<<<...>>>(...)``) in a source."""
from __future__ import annotations

import functools
from dataclasses import dataclass


@functools.cache
def parser():
    import tree_sitter
    import tree_sitter_cuda

    return tree_sitter.Parser(tree_sitter.Language(tree_sitter_cuda.language()))


@dataclass
class Launch:
    kernel: str
    line: int            # 1-based
    column: int          # 1-based, at the kernel name
    config: list[str]    # the <<<...>>> arguments, as written
    function: str | None  # the enclosing function
    span: int = 0         # length of `kernel<<<...>>>` on its first line

    @property
    def stream(self) -> str | None:
        """The stream argument as written (4th launch-config argument), None if absent."""
        return self.config[3] if len(self.config) >= 4 else None


def _text(node, src: bytes) -> str:
    return src[node.start_byte:node.end_byte].decode(errors="replace")


def _enclosing_function(node, src: bytes) -> str | None:
    while node is not None:
        if node.type == "function_definition":
            decl = node.child_by_field_name("declarator")
            while decl is not None and decl.type not in ("identifier", "qualified_identifier", "field_identifier"):
                decl = decl.child_by_field_name("declarator")
            return _text(decl, src) if decl is not None else None
        node = node.parent
    return None


def launches(source: bytes | str) -> list[Launch]:
    """Every triple-chevron launch in ``source``, in order."""
    src = source.encode() if isinstance(source, str) else source
    tree = parser().parse(src)
    out: list[Launch] = []
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        if node.type == "call_expression":
            cfg = next((c for c in node.children if c.type == "kernel_call_syntax"), None)
            fn = node.child_by_field_name("function")
            if cfg is not None and fn is not None:
                args = [_text(c, src) for c in cfg.named_children if c.type != "comment"]
                same_line = cfg.end_point[0] == fn.start_point[0]
                span = (cfg.end_point[1] if same_line else fn.end_point[1]) - fn.start_point[1]
                out.append(Launch(kernel=_text(fn, src), line=fn.start_point[0] + 1, column=fn.start_point[1] + 1,
                                  config=args, function=_enclosing_function(node, src), span=span))
        stack.extend(reversed(node.children))
    return sorted(out, key=lambda l: (l.line, l.column))
