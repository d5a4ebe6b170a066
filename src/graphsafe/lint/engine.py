"""Runs the rules over files: discovery, reading, configuration, suppression comments.

Nothing a file contains can stop the run: unreadable, binary, huge, non-UTF-8 or malformed files get
a GSX finding and the linter goes on.
"""
from __future__ import annotations

import fnmatch
import io
import os
import re
import stat
import sys
import tokenize
from dataclasses import dataclass, field
from pathlib import Path

from ..diagnostics import Finding, Location
from .codes import RULES

CUDA_SUFFIXES = (".cu", ".cuh", ".cpp", ".cc", ".cxx", ".h", ".hpp")
PY_SUFFIXES = (".py",)
PARSE_NOTE_SHARE = 0.10  # C++ files with more unparsed bytes than this get a GSX002 note
SKIP_DIRS = {"__pycache__", "node_modules", ".git", ".hg", ".svn", ".tox", ".venv", "venv", ".mypy_cache"}
_SUPPRESS = re.compile(r"graphsafe:\s*ignore(?:\[([A-Za-z0-9_,\s]*)\])?")  # applied to comment text only


@dataclass
class LintConfig:
    select: list[str] = field(default_factory=lambda: [""])  # code prefixes; "" selects everything
    ignore: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)       # glob patterns on paths
    max_file_size: int = 10_000_000
    source: str | None = None                              # the pyproject.toml it came from

    def enabled(self, code: str) -> bool:
        if code.startswith("GSX"):
            return not any(code.startswith(p) for p in self.ignore if p)
        return any(code.startswith(p) for p in self.select) and not any(code.startswith(p) for p in self.ignore if p)

    def excluded(self, path: Path) -> bool:
        """``exclude`` patterns match the path as given, its name, or the path from the pyproject.toml's
        directory (so ``third_party/*`` holds however the directory is named on the command line)."""
        if not self.exclude:
            return False
        forms = {path.as_posix(), path.name}
        if self.source:  # from the config's directory: the path as named (links kept) and as resolved
            root = Path(os.path.abspath(self.source)).parent
            pairs = [(Path(os.path.abspath(path)), root)]
            try:
                pairs.append((path.resolve(), root.resolve()))
            except (OSError, RuntimeError):
                pass
            for here, base in pairs:
                try:
                    forms.add(here.relative_to(base).as_posix())
                except ValueError:
                    pass
        return any(fnmatch.fnmatch(form, pat) for form in forms for pat in self.exclude)


def _toml(path: Path) -> dict:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    with open(path, "rb") as f:
        return tomllib.load(f)


def load_config(start: Path | None = None, explicit: Path | None = None) -> LintConfig:
    """``[tool.graphsafe]`` from ``explicit`` or the nearest pyproject.toml at or above ``start``."""
    if explicit is not None and not explicit.is_file():
        raise ValueError(f"cannot read {explicit}: {'it is a directory' if explicit.is_dir() else 'no such file'}")
    candidates = [explicit] if explicit else [d / "pyproject.toml" for d in [(start or Path.cwd()).resolve(),
                                                                              *(start or Path.cwd()).resolve().parents]]
    for path in candidates:
        if path is not None and path.is_file():
            try:
                table = _toml(path).get("tool", {}).get("graphsafe", {})
            except Exception as exc:  # noqa: BLE001
                raise ValueError(f"cannot read {path}: {exc}") from None
            if explicit is None and not table:
                continue
            unknown = set(table) - {"select", "ignore", "exclude", "max-file-size"}
            if unknown:
                raise ValueError(f"{path}: unknown keys in [tool.graphsafe]: {', '.join(sorted(unknown))}")
            where = f"{path}: [tool.graphsafe]"
            size = table.get("max-file-size", 10_000_000)
            if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
                raise ValueError(f"{where} max-file-size must be a positive whole number of bytes, got {size!r}")
            select = codes(_strings(table, "select", where), f"{where} select") if "select" in table else [""]
            if not select:
                raise ValueError(f"{where} select names no code (leave it out to select every rule)")
            return LintConfig(select=select,
                              ignore=codes(_strings(table, "ignore", where), f"{where} ignore"),
                              exclude=_strings(table, "exclude", where), max_file_size=size, source=str(path))
    return LintConfig()


def _strings(table: dict, key: str, where: str) -> list[str]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{where} {key} must be a list of strings, got {value!r}")
    return value


def codes(items: list[str], where: str) -> list[str]:
    """Codes or code prefixes, upper-cased; one that starts no known code is an error, not a silent no-op."""
    out = [c.strip().upper() for c in items if c.strip()]
    bad = [c for c in out if not any(code.startswith(c) for code in RULES)]
    if bad:
        raise ValueError(f"{where}: unknown code or prefix {', '.join(map(repr, bad))} "
                         f"(codes: {', '.join(sorted(RULES))})")
    return out


@dataclass
class LintResult:
    findings: list[Finding] = field(default_factory=list)
    files: int = 0
    lines: int = 0

    @property
    def exit_status(self) -> int:
        return 1 if any(f.severity in ("error", "warning") for f in self.findings) else 0


def discover(paths: list[str], config: LintConfig) -> tuple[list[Path], list[Finding]]:
    """The files to lint, each once (however often it is named), and GSX findings for what cannot be."""
    files: list[Path] = []
    problems: list[Finding] = []

    def unreadable(exc: OSError) -> None:
        problems.append(_gsx("GSX001", str(exc.filename), f"cannot list this directory: {exc.strerror or exc}"))

    for p in paths:
        path = Path(p)
        if not path.exists() and not path.is_symlink():
            problems.append(_gsx("GSX001", str(path), "no such file or directory"))
        elif path.is_dir():
            for root, dirs, names in os.walk(path, onerror=unreadable, followlinks=False):
                dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.startswith("."))
                for name in sorted(names):
                    fp = Path(root) / name
                    if fp.suffix in CUDA_SUFFIXES + PY_SUFFIXES and not config.excluded(fp):
                        files.append(fp)
        elif path.suffix in CUDA_SUFFIXES + PY_SUFFIXES or _source_link(path):
            if not config.excluded(path):
                files.append(path)
        else:
            problems.append(_gsx("GSX003", str(path), "not a C++/CUDA or Python file"))
    return _once(files), problems


def _source_link(path: Path) -> bool:
    """A symlink named without a source suffix counts by its target's name (a broken one or a loop is
    linted, and reported as unreadable)."""
    return path.is_symlink() and (_kind(path) in CUDA_SUFFIXES + PY_SUFFIXES or not path.exists())


def _once(files: list[Path]) -> list[Path]:
    seen: set[str] = set()
    out = []
    for fp in files:
        key = os.path.realpath(fp)
        if key not in seen:
            seen.add(key)
            out.append(fp)
    return out


def _kind(path: Path) -> str:
    """The language a file is linted as: by its name, or a symlink's by its target's."""
    if path.suffix in PY_SUFFIXES + CUDA_SUFFIXES or not path.is_symlink():
        return path.suffix
    try:
        return path.resolve(strict=False).suffix
    except (OSError, RuntimeError):
        return path.suffix


def _gsx(code: str, file: str, why: str, line: int | None = None, severity: str | None = None,
         help_: str | None = None) -> Finding:
    rule = RULES[code]
    if help_ is None:
        help_ = "" if code != "GSX002" else "findings in the unparsed part may be missing"
    return Finding(code, severity or rule.severity, f"{rule.summary}: {why}", location=Location(file=file, line=line),
                   help=help_)


def lint_paths(paths: list[str], config: LintConfig | None = None) -> LintResult:
    config = config or LintConfig()
    files, problems = discover(paths, config)
    result = LintResult(findings=[f for f in problems if config.enabled(f.code)])
    for fp in files:
        found, lines = lint_file(fp, config)
        result.findings += found
        result.files += 1
        result.lines += lines
    return result


def lint_file(path: Path, config: LintConfig | None = None) -> tuple[list[Finding], int]:
    config = config or LintConfig()
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):  # a FIFO would block, a device never end
            return _enabled([_gsx("GSX001", str(path), "not a regular file (a device, FIFO or socket)")], config), 0
        size = st.st_size
        if size > config.max_file_size:
            return _enabled([_gsx("GSX003", str(path), f"{size / 1e6:.1f} MB is above the "
                                                       f"{config.max_file_size / 1e6:.0f} MB limit")], config), 0
        data = path.read_bytes()
    except OSError as exc:
        return _enabled([_gsx("GSX001", str(path), exc.strerror or str(exc))], config), 0
    return lint_source(data, str(path), config, python=_kind(path) in PY_SUFFIXES)


def _enabled(findings: list[Finding], config: LintConfig) -> list[Finding]:
    return [f for f in findings if config.enabled(f.code)]


def lint_source(data: bytes, filename: str, config: LintConfig | None = None, *,
                python: bool | None = None) -> tuple[list[Finding], int]:
    """Lint one file's bytes, as Python or C++/CUDA (``python``; default: by the name); never raises for
    anything the bytes contain."""
    config = config or LintConfig()
    python = filename.endswith(PY_SUFFIXES) if python is None else python
    if b"\x00" in data[:8192]:
        return _enabled([_gsx("GSX003", filename, "binary content")], config), 0
    lines = data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)
    try:
        if python:
            hits, notes, comments = _python(data, filename)
        else:
            hits, notes, comments = _cuda(data, filename)
    except (RecursionError, MemoryError):
        severity = "warning" if python else None  # an unchecked Python file warns
        return _enabled([_gsx("GSX002", filename, "nesting too deep to analyse", severity=severity)], config), lines
    out = [f for f in notes if config.enabled(f.code)]
    seen = set()
    to_chars = _Characters(_utf8(data) if python else data)
    for h in hits:
        if not config.enabled(h.code) or _suppressed(h.code, h.line, comments) or (h.code, h.line, h.column) in seen:
            continue  # one finding per code and place (error recovery can reach a launch twice)
        seen.add((h.code, h.line, h.column))
        rule = RULES[h.code]
        column, span = to_chars(h.line, h.column, h.span)
        out.append(Finding(h.code, rule.severity, h.message, location=Location(
            file=filename, line=h.line, column=column, label=h.label or None, span=span), help=h.help))
    return out, lines


class _Characters:
    """The parsers count columns and spans in UTF-8 bytes; a finding counts characters (as editors and
    SARIF's ``unicodeCodePoints`` do). The line index is built once a file, and only for non-ASCII text."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.starts: list[int] | None = None if not data.isascii() else []

    def __call__(self, line: int, column: int | None, span: int | None) -> tuple[int | None, int | None]:
        if self.starts == [] or not column or line < 1:
            return column, span
        if self.starts is None:
            self.starts = [0] + [m.end() for m in re.finditer(b"\n", self.data)]
        if line > len(self.starts):
            return column, span
        start = self.starts[line - 1]
        end = self.data.find(b"\n", start)
        raw = self.data[start:end if end >= 0 else len(self.data)]
        if raw.isascii():
            return column, span
        col = len(raw[:column - 1].decode("utf-8", "replace")) + 1
        return col, (len(raw[column - 1:column - 1 + span].decode("utf-8", "replace")) if span else span)


def _utf8(data: bytes) -> bytes:
    """A Python file's text as the UTF-8 that ``ast``'s offsets count (a coding cookie may say otherwise)."""
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
        return data if encoding in ("utf-8", "utf-8-sig") else data.decode(encoding).encode("utf-8")
    except (SyntaxError, UnicodeDecodeError, LookupError):
        return data


def _python(data: bytes, filename: str):
    from .py_rules import lint_python

    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
        source = data.decode(encoding)
    except (SyntaxError, UnicodeDecodeError, LookupError) as exc:
        return [], [_gsx("GSX002", filename, f"cannot decode: {exc}", severity="warning")], {}
    try:
        hits = lint_python(source)
    except SyntaxError as exc:
        return [], [_gsx("GSX002", filename, f"syntax error: {exc.msg}", exc.lineno, "warning")], {}
    except ValueError as exc:  # e.g. source with NUL bytes past the sniffed prefix
        return [], [_gsx("GSX002", filename, str(exc), severity="warning")], {}
    return hits, [], _python_comments(source)


Comments = dict[int, list[tuple[str, bool]]]  # line -> its comments, each with whether it stands alone


def _python_comments(source: str) -> Comments:
    comments: Comments = {}
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.COMMENT:
                standalone = not tok.line[:tok.start[1]].strip()
                comments.setdefault(tok.start[0], []).append((tok.string, standalone))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        pass
    return comments


def _second_view(data: bytes, tree, errors: int):
    """The second reading of a badly parsed file (``preproc``): one branch of each conditional, and the
    attribute macros blanked where that parses better (blanking can also shift tree-sitter's error
    recovery the wrong way). ``tree`` and ``errors``: the file's parse and its unparsed bytes, reused
    where no conditional was cut. Returns the view, its parse, how it was made and what it may miss (for
    the note)."""
    from .cpp_rules import error_bytes
    from .cuda import parser
    from .preproc import blank_attribute_macros, first_branches
    view = first_branches(data)
    view_tree = tree if view == data else parser().parse(view)
    branches = "one branch of each preprocessor conditional (#if/#ifdef)"
    other_branches = "findings in the other branches of its #if/#ifdef conditionals may be missing"
    blanked = blank_attribute_macros(view, view_tree)
    if blanked != view:
        blanked_tree = parser().parse(blanked)
        if error_bytes(blanked_tree) < (errors if view == data else error_bytes(view_tree)):
            if view == data:  # no conditional was cut
                return blanked, blanked_tree, "attribute macros blanked", None
            return blanked, blanked_tree, branches + " and attribute macros blanked", other_branches
    return view, view_tree, branches, other_branches


def _cuda(data: bytes, filename: str):
    from .cpp_rules import lint_cpp
    from .preproc import without_dead_branches

    if b"#" in data:  # an #if 0 branch is never compiled: read the file without it (positions unchanged)
        data = without_dead_branches(data)

    hits, error_bytes, tree, scan = lint_cpp(data, return_tree=True)
    share = error_bytes / max(1, len(data))
    trees = [(scan, data)]
    notes = []
    if share > PARSE_NOTE_SHARE:  # read once more: one branch of each conditional, attribute macros blanked
        view, view_tree, how, missing = _second_view(data, tree, error_bytes)
        if view != data:
            more, view_errors, _, view_scan = lint_cpp(view, return_tree=True, tree=view_tree)
            if view_errors < error_bytes:  # it parses more: add what it finds (same positions; lint_source
                hits = hits + more           # keeps the first finding per code and place, the file as written's)
                trees.append((view_scan, view))
                notes.append(_gsx(
                    "GSX002", filename, f"{share:.0%} of the file could not be parsed as written; read again with "
                    f"{how}, {view_errors / max(1, len(data)):.0%} could not", help_=missing))
    if share > PARSE_NOTE_SHARE and not notes:
        notes.append(_gsx("GSX002", filename, f"{share:.0%} of the file could not be parsed"))

    comments: Comments = {}
    for scanned, src in reversed(trees):  # the file as written last: its comments win
        comments.update(_cpp_comments(scanned, src))
    return hits, notes, comments


def _cpp_comments(scan, data: bytes) -> Comments:
    """Line -> its comments, each with whether it stands alone on its line, from a tree's
    :class:`~.cuda.Scan`; a comment over several lines counts on its first and its last."""
    from .cuda import text
    comments: Comments = {}
    for m in scan["comment"]:
        node = m["c"]
        line_start = data.rfind(b"\n", 0, node.start_byte) + 1
        standalone = not data[line_start:node.start_byte].strip()
        for line in sorted({node.start_point[0] + 1, node.end_point[0] + 1}):
            comments.setdefault(line, []).append((text(node, data), standalone))
    return comments


def _suppressed(code: str, line: int, comments: Comments) -> bool:
    for ln, must_stand_alone in ((line, False), (line - 1, True)):
        for comment, standalone in comments.get(ln, ()):
            if must_stand_alone and not standalone:
                continue
            m = _SUPPRESS.search(comment)
            if m and (m.group(1) is None or code in {c.strip().upper() for c in m.group(1).split(",")}):
                return True
    return False
