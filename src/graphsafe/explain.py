"""``graphsafe explain CODE``: the long form of a finding code, with its bad and good example."""
from __future__ import annotations

import inspect

from rich.console import Console
from rich.markup import escape


def example_source(spec: str, label: str) -> str:
    """The source to show for an example: the case module's own pick, else the target function."""
    import importlib

    from .doctor.target import resolve_object

    mod = importlib.import_module(spec.partition(":")[0])
    if hasattr(mod, "example_source"):
        return mod.example_source(label)
    obj = resolve_object(spec)
    fn = getattr(obj, "fn", obj)
    try:
        return inspect.getsource(getattr(fn, "forward", fn))
    except (OSError, TypeError):
        return ""


def reflow(text: str) -> str:
    """Join each paragraph's lines (so the terminal wraps them); keep indented code lines as they are."""
    out: list[str] = []
    for para in text.split("\n\n"):
        lines = para.splitlines()
        if any(ln.startswith("    ") for ln in lines):
            out.append(para)
        else:
            out.append(" ".join(ln.strip() for ln in lines))
    return "\n\n".join(out)


def explain(code: str, console: Console) -> int:
    from .doctor.codes import CODES
    from .lint.codes import RULES

    given, code = code, code.strip().upper()
    if code in RULES:
        return explain_rule(RULES[code], console)
    if code not in CODES:
        raise KeyError(f"unknown code {given!r}; the doctor's codes are {_span(CODES)} (graphsafe check, run), "
                       f"lint's are {', '.join(sorted(RULES))}")
    c = CODES[code]
    console.print(f"[bold]{c.code}[/] ({c.name}, {c.severity}): {escape(c.summary)}\n")
    console.print(escape(reflow(c.explanation)) + "\n")
    for label, spec in (("bad", c.bad), ("good", c.good)):
        if not spec:
            continue
        console.print(f"[bold]{label} example[/]: graphsafe check {spec}")
        src = example_source(spec, label)
        if src:
            console.print("[dim]" + escape(src.rstrip()) + "[/]\n")
    return 0


def _span(codes) -> str:
    """``GSD001–GSD029`` for a run of consecutive codes, else the list."""
    names = sorted(codes)
    nums = [int(n[3:]) for n in names]
    if nums == list(range(nums[0], nums[0] + len(nums))):
        return f"{names[0]}–{names[-1]}"
    return ", ".join(names)


def explain_rule(rule, console: Console) -> int:
    """A lint rule's long form; its bad example is linted live, so what it shows is what the rule says."""
    from .doctor.render import render_finding
    from .lint.engine import lint_source

    console.print(f"[bold]{rule.code}[/] ({rule.name}, {rule.severity}): {escape(rule.summary)}\n")
    console.print(escape(reflow(rule.explanation)) + "\n")
    if rule.bad:
        console.print(f"[bold]bad example[/] (example{rule.suffix}):")
        console.print("[dim]" + escape(rule.bad.rstrip()) + "[/]\n")
        for f in lint_source(rule.bad.encode(), f"example{rule.suffix}")[0]:
            if f.code == rule.code:
                render_finding(console, f)
        console.print(f"[bold]good example[/] (example{rule.suffix}):")
        console.print("[dim]" + escape(rule.good.rstrip()) + "[/]\n")
    return 0
