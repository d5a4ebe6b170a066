"""A second view of a C/C++/CUDA file for files tree-sitter cannot parse as written.

tree-sitter parses preprocessor conditionals as syntax: each branch of an ``#if`` must be complete
code. Headers that wrap their whole body in one (``#if !defined(X)`` ... ``#else`` ``#error`` ...
``#endif``), or split a declaration across branches, can come out as one large ERROR node, and the
rules then see nothing there. :func:`first_branches` keeps one branch of every conditional (the first,
or the one after ``#if 0``) and blanks the directives and the other branches, byte for byte (spaces,
line breaks kept), so every position in the kept code is where it was and findings keep their lines
and columns. The engine merges what this view finds with what the file as written gave.

:func:`blank_attribute_macros` then blanks, in that view, the well-known macros that expand to
function attributes or export specifiers (``C10_HOST_DEVICE``, ``TORCH_API``, ``CUTLASS_HOST_DEVICE``...):
unexpanded, ``C10_HOST_DEVICE S(int d) : d(d) {}`` reads as a declaration of type ``C10_HOST_DEVICE`` and
the constructor's initializer list breaks the parse. They are found as identifier tokens of
tree-sitter's parse of the view, never inside strings or comments.

Directives are found as the C preprocessor finds them, per logical line (backslash continuations
joined) that starts with ``#`` outside a block comment; string and character literals and comments are
skipped only to follow block comments across lines. Nothing else in the file is interpreted.
"""
from __future__ import annotations

OPEN = (b"if", b"ifdef", b"ifndef")
NEXT = (b"elif", b"elifdef", b"elifndef", b"else")


def _directive(logical: bytes) -> tuple[bytes, bytes] | None:
    """(name, rest) of a directive line (``(b"if", b"0")`` for ``  #  if 0``), or None."""
    s = logical.lstrip(b" \t")
    if not s.startswith(b"#"):
        return None
    s = s[1:].lstrip(b" \t")
    end = 0
    while end < len(s) and (s[end:end + 1].isalnum() or s[end:end + 1] == b"_"):
        end += 1
    return s[:end], s[end:].split(b"//")[0].split(b"/*")[0].strip()


def _comment_after(line: bytes, in_comment: bool) -> bool:
    """Whether a block comment is still open at the end of ``line`` (one open at its start or not)."""
    if b"/*" not in line and b"*/" not in line:  # most lines: nothing opens or closes one
        return in_comment
    i, n = 0, len(line)
    quote = 0
    while i < n:
        c = line[i]
        if in_comment:
            if line.startswith(b"*/", i):
                in_comment, i = False, i + 2
                continue
        elif quote:
            if c == 0x5C:  # backslash: skip the escaped byte
                i += 1
            elif c == quote:
                quote = 0
        elif line.startswith(b"/*", i):
            in_comment, i = True, i + 2
            continue
        elif line.startswith(b"//", i):
            return False
        elif c in (0x22, 0x27):  # " or '
            quote = c
        i += 1
    return in_comment


# Macros that expand to attributes, specifiers or nothing, in PyTorch (c10), CUTLASS/CuTe and CUB.
ATTRIBUTE_MACROS = frozenset({
    b"C10_HOST_DEVICE", b"C10_DEVICE", b"C10_HOST", b"C10_ALWAYS_INLINE", b"C10_ALWAYS_INLINE_ATTRIBUTE",
    b"C10_NOINLINE", b"C10_API", b"C10_EXPORT", b"C10_IMPORT", b"C10_HIDDEN", b"C10_UNUSED", b"C10_NODISCARD",
    b"C10_CUDA_API", b"C10_HOST_CONSTEXPR", b"C10_HOST_CONSTEXPR_EXCEPT_WIN_CUDA", b"C10_ALWAYS_INLINE_UNLESS_MOBILE",
    b"TORCH_API", b"TORCH_CUDA_CPP_API", b"TORCH_CUDA_CU_API", b"TORCH_PYTHON_API", b"TORCH_XPU_API",
    b"CUTLASS_HOST_DEVICE", b"CUTLASS_DEVICE", b"CUTLASS_HOST", b"CUTLASS_GLOBAL",
    b"CUTE_HOST_DEVICE", b"CUTE_DEVICE", b"CUTE_HOST", b"CUTE_HOST_RTC",
    b"CUB_RUNTIME_FUNCTION", b"_CCCL_HOST_DEVICE", b"_CCCL_DEVICE", b"_CCCL_HOST",
})
_NAME_TOKENS = ("identifier", "type_identifier", "field_identifier", "namespace_identifier")


_NAMES = " ".join(f'"{m.decode()}"' for m in sorted(ATTRIBUTE_MACROS))
# one pattern per token type: py-tree-sitter 0.26 does not apply the predicate of an alternation
# [(a) (b)] @m to every branch
_MACRO_QUERY = "\n".join(f"(({t}) @m (#any-of? @m {_NAMES}))" for t in _NAME_TOKENS)


def blank_attribute_macros(src: bytes, tree) -> bytes:
    """``src`` with every ATTRIBUTE_MACROS token of ``tree`` (tree-sitter's parse of ``src``) blanked, the
    same length; ``src`` itself when there is none."""
    if not any(m in src for m in ATTRIBUTE_MACROS):
        return src
    from .cuda import matches
    spans = [(m["m"].start_byte, m["m"].end_byte) for m in matches(_MACRO_QUERY, tree.root_node)]
    if not spans:
        return src
    out = bytearray(src)
    for a, b in spans:
        out[a:b] = b" " * (b - a)
    return bytes(out)


def _blank(chunk: bytes) -> bytes:
    return bytes(c if c in b"\r\n" else 32 for c in chunk)


def _lines(src: bytes) -> list[bytes]:
    """Physical lines, each with its ``\\n``: as tree-sitter counts rows (a lone ``\\r`` ends none)."""
    parts = src.split(b"\n")
    lines = [p + b"\n" for p in parts[:-1]]
    return lines + [parts[-1]] if parts[-1] else lines


def _logical_lines(src: bytes):
    """(first physical line index, the physical lines, directive ``(name, rest)`` or None) per logical line:
    physical lines joined by backslash continuations, directives only outside block comments."""
    in_comment = False
    lines = _lines(src)
    i = 0
    while i < len(lines):
        j = i + 1
        while j < len(lines) and lines[j - 1].rstrip(b"\r\n").endswith(b"\\"):
            j += 1
        chunk = b"".join(lines[i:j])
        yield i, lines[i:j], (None if in_comment else _directive(chunk))
        in_comment = _comment_after(chunk, in_comment)
        i = j


def first_branches(src: bytes) -> bytes:
    """``src`` with one branch of every preprocessor conditional kept and the rest blanked: the same
    length and the same line breaks. Kept: the first branch, or after ``#if 0`` the next one. Stray
    ``#elif``/``#else``/``#endif`` lines (no open ``#if``) are blanked; an ``#if`` never closed stays
    open to the end."""
    out: list[bytes] = []
    levels: list[list[bool]] = []  # per open conditional: [current branch blanked, a branch was kept]
    blanked = 0  # how many open levels have their current branch blanked
    for _, lines, found in _logical_lines(src):
        chunk = b"".join(lines)
        name = found[0] if found else None
        if name in OPEN:
            dead = name == b"if" and found[1] == b"0"
            levels.append([dead, not dead])
            blanked += dead
            out.append(_blank(chunk))
        elif name in NEXT or name == b"endif":
            if levels:
                was = levels[-1][0]
                if name == b"endif":
                    levels.pop()
                    now = False
                else:
                    now = levels[-1][1]  # a branch was kept already: blank this one
                    levels[-1] = [now, True]
                blanked += now - was
            out.append(_blank(chunk))
        else:
            out.append(_blank(chunk) if blanked else chunk)
    return b"".join(out)


def without_dead_branches(src: bytes) -> bytes:
    """``src`` with every ``#if 0`` branch blanked (same length, same line breaks): what the compiler sees
    of them is nothing, so nothing there is a finding, a launch check or a stream binding."""
    dead = dead_lines(src)
    if not dead:
        return src
    return b"".join(_blank(line) if i in dead else line for i, line in enumerate(_lines(src), 1))


def dead_lines(src: bytes) -> set[int]:
    """The lines (1-based) the compiler never sees: an ``#if 0`` branch, up to its ``#elif``, ``#else`` or
    ``#endif`` (nested conditionals inside included). Every other branch may be compiled, so none of them."""
    dead: set[int] = set()
    levels: list[bool] = []  # per open conditional: whether its current branch is an #if 0 branch
    for i, lines, found in _logical_lines(src):
        name = found[0] if found else None
        if any(levels) and name not in NEXT and name != b"endif":
            dead.update(range(i + 1, i + 1 + len(lines)))
        if name in OPEN:
            levels.append(name == b"if" and found[1] == b"0")
        elif name in NEXT and levels:
            levels[-1] = False
        elif name == b"endif" and levels:
            levels.pop()
    return dead
