"""Lint output: rustc-style text (rich), JSON, and SARIF 2.1.0 for code-scanning UIs."""
from __future__ import annotations

import json
from urllib.parse import quote
from pathlib import Path

from rich.console import Console

from .. import __version__
from ..diagnostics import display_path
from .codes import RULES
from .engine import LintResult

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
_LEVEL = {"error": "error", "warning": "warning", "note": "note"}


def render_text(result: LintResult, console: Console) -> None:
    from ..doctor.render import render_finding

    for f in sorted(result.findings, key=_order):
        render_finding(console, f)
    errors = sum(f.severity == "error" for f in result.findings)
    warnings = sum(f.severity == "warning" for f in result.findings)
    notes = len(result.findings) - errors - warnings
    if result.findings:
        console.print(f"Found {errors} error{'s' * (errors != 1)}, {warnings} warning{'s' * (warnings != 1)}"
                      f"{f', {notes} note' + 's' * (notes != 1) if notes else ''} "
                      f"in {result.files} file{'s' * (result.files != 1)} ({result.lines} lines).")
    else:
        console.print(f"All checks passed: {result.files} file{'s' * (result.files != 1)} ({result.lines} lines).")


def _order(f):
    loc = f.location
    return (loc.file or "", loc.line or 0, loc.column or 0, f.code) if loc else ("", 0, 0, f.code)


def to_json(result: LintResult) -> str:
    return json.dumps({"schema": "graphsafe.lint/1", "files": result.files, "lines": result.lines,
                       "exit_status": result.exit_status,
                       "findings": [f.to_dict() for f in sorted(result.findings, key=_order)]}, indent=2)


def to_sarif(result: LintResult) -> str:
    used = sorted({f.code for f in result.findings} | set(RULES))
    rules = [{
        "id": code, "name": RULES[code].name,
        "shortDescription": {"text": RULES[code].summary},
        "fullDescription": {"text": " ".join(RULES[code].explanation.split())},
        "help": {"text": f"graphsafe explain {code}"},
        "defaultConfiguration": {"level": _LEVEL[RULES[code].severity]},
    } for code in used]
    index = {code: i for i, code in enumerate(used)}
    results = []
    for f in sorted(result.findings, key=_order):
        loc = f.location
        region = {}
        if loc and loc.line:
            region = {"startLine": loc.line, **({"startColumn": loc.column} if loc.column else {}),
                      **({"endColumn": loc.column + loc.span} if loc.column and loc.span else {})}
        uri = quote(Path(display_path(loc.file)).as_posix(), safe="/:") if loc and loc.file else ""
        phys = {"artifactLocation": {"uri": uri}}
        if region:
            phys["region"] = region
        msg = f.message + (f"\nhelp: {f.help}" if f.help else "")
        results.append({"ruleId": f.code, "ruleIndex": index[f.code], "level": _LEVEL[f.severity],
                        "message": {"text": msg}, "locations": [{"physicalLocation": phys}]})
    return json.dumps({"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": [{
        "tool": {"driver": {"name": "graphsafe", "version": __version__, "rules": rules}},
        "columnKind": "unicodeCodePoints", "results": results}]}, indent=2)
