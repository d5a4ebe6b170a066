"""A second view of a C/C++/CUDA file for files tree-sitter cannot parse as written.

tree-sitter parses preprocessor conditionals as syntax: each branch of an ``#if`` must be complete
code. Headers that wrap their whole body in one (``#if !defined(X)`` ... ``#else`` ``#error`` ...
``#endif``), or split a declaration across branches, come out as one large ERROR node, and the rules
then see nothing. :func:`first_branches` keeps the first branch of every conditional and blanks the
directives and the other branches, byte for byte (spaces, line breaks kept), so every position in the
kept code is where it was and findings keep their lines and columns.

Directives are found line by line, as the C preprocessor itself reads them (a logical line that starts
with ``#``, backslash continuations joined); nothing else in the file is interpreted.
"""
from __future__ import annotations

CONDITIONALS_OPEN = (b"if", b"ifdef", b"ifndef")
CONDITIONALS_NEXT = (b"elif", b"elifdef", b"elifndef", b"else")


def _directive(logical: bytes) -> bytes | None:
    """The directive name of a logical line (``b"if"`` for ``  #  if X``), or None."""
    s = logical.lstrip(b" \t")
    if not s.startswith(b"#"):
        return None
    s = s[1:].lstrip(b" \t")
    end = 0
    while end < len(s) and (s[end:end + 1].isalnum() or s[end:end + 1] == b"_"):
        end += 1
    return s[:end]


def _blank(chunk: bytes) -> bytes:
    return bytes(c if c in b"\r\n" else 32 for c in chunk)


def first_branches(src: bytes) -> bytes:
    """``src`` with the first branch of every preprocessor conditional kept and the rest blanked: the
    same length and the same line breaks. Unbalanced directives are taken as they come (an ``#endif``
    too many closes nothing; a missing one leaves the branch open to the end)."""
    out: list[bytes] = []
    dead: list[bool] = []  # per open conditional: whether the current branch is blanked
    lines = src.splitlines(keepends=True)
    i = 0
    while i < len(lines):
        j = i + 1  # a logical line: physical lines joined by backslash continuations
        while lines[j - 1].rstrip(b"\r\n").endswith(b"\\") and j < len(lines):
            j += 1
        chunk = b"".join(lines[i:j])
        name = _directive(chunk)
        outside = any(dead)
        if name in CONDITIONALS_OPEN:
            dead.append(False)
            out.append(_blank(chunk))
        elif name in CONDITIONALS_NEXT and dead:
            dead[-1] = True
            out.append(_blank(chunk))
        elif name == b"endif":
            if dead:
                dead.pop()
            out.append(_blank(chunk))
        else:
            out.append(_blank(chunk) if outside else chunk)
        i = j
    return b"".join(out)
