"""The diagnostic model shared by the doctor and the linter (rustc's anatomy).

A diagnostic has a stable code, a severity, a one-line message (lowercase, no trailing period, the
problem only), a primary location, evidence lines, a ``help`` line with the fix, and machine-readable
``data``. Remedies live in ``help`` only.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

SEVERITIES = ("error", "warning", "note")


def display_path(path: str) -> str:
    """A path relative to the working directory when it lies under it, else as given."""
    import os

    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return rel if not rel.startswith("..") else path


@dataclass
class Location:
    """A place in source: a Python or C++ file and line, optionally a column and a function."""

    file: str | None = None
    line: int | None = None
    column: int | None = None
    function: str | None = None
    label: str | None = None  # what sits at this place, e.g. "call into the extension"
    span: int | None = None   # characters to underline from `column` (default: to the end of the line)

    def short(self) -> str:
        if not self.file:
            return self.function or "<unknown>"
        s = display_path(self.file)
        if self.line:
            s += f":{self.line}"
            if self.column:
                s += f":{self.column}"
        return s

    @classmethod
    def from_dict(cls, d: dict | None) -> Location | None:
        return None if d is None else cls(**d)


@dataclass
class Finding:
    code: str
    severity: str
    message: str
    location: Location | None = None
    evidence: list[str] = field(default_factory=list)
    help: str = ""
    stack: list[Location] = field(default_factory=list)  # outer frames, innermost first
    related: list[Location] = field(default_factory=list)  # other places that matter (e.g. a C++ launch)
    data: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}, got {self.severity!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Finding:
        d = dict(d)
        d["location"] = Location.from_dict(d.get("location"))
        d["stack"] = [Location(**s) for s in d.get("stack", [])]
        d["related"] = [Location(**s) for s in d.get("related", [])]
        return cls(**d)
