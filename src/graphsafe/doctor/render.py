"""Renders reports in rustc's style with rich: code, message, location, source excerpt, evidence, help."""
from __future__ import annotations

import linecache

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from ..diagnostics import Finding, Location
from .report import Report

_STYLE = {"error": "bold red", "warning": "bold yellow", "note": "bold cyan"}
_VERDICT = {"match": "bold green", "benign": "bold green", "mismatch": "bold red", "inconclusive": "bold yellow"}


def render_finding(console: Console, f: Finding) -> None:
    console.print(f"[{_STYLE[f.severity]}]{f.severity}[{escape(f.code)}][/]: [bold]{escape(f.message)}[/]")
    if f.location is not None:
        _excerpt(console, f.location)
    for loc in f.related:
        _excerpt(console, loc)
    for e in f.evidence:
        console.print(f"   [blue]=[/] [bold]evidence:[/] {escape(e)}")
    for loc in f.stack[:4]:
        fn = f" in {loc.function}" if loc.function else ""
        console.print(f"   [blue]=[/] [bold]called from:[/] {escape(loc.short())}{escape(fn)}")
    if len(f.stack) > 4:
        console.print(f"   [blue]=[/] … and {len(f.stack) - 4} more frames")
    if f.help:
        console.print(f"   [blue]=[/] [bold green]help:[/] {escape(f.help)}")
    console.print()


def _excerpt(console: Console, loc: Location) -> None:
    fn = f" ({escape(loc.function)})" if loc.function else ""
    console.print(f"  [blue]-->[/] {escape(loc.short())}{fn}", soft_wrap=True)
    if not (loc.file and loc.line):
        return
    text = linecache.getline(loc.file, loc.line).rstrip("\n")
    if not text:
        return
    pad = " " * len(str(loc.line))
    col = loc.column or (len(text) - len(text.lstrip()) + 1)
    span = loc.span or max(1, len(text.rstrip()) - col + 1)
    label = f" {escape(loc.label)}" if loc.label else ""
    console.print(f"  [blue]{pad} |[/]", soft_wrap=True)
    # the line as it is, never read as markup (escape() would double a trailing backslash)
    console.print(Text.assemble("  ", (f"{loc.line} |", "blue"), " ", text), soft_wrap=True)
    under = "".join("\t" if c == "\t" else " " for c in text[:col - 1])  # tabs kept: the caret lines up
    console.print(f"  [blue]{pad} |[/] {under}[bold red]{'^' * span}[/][red]{label}[/]", soft_wrap=True)


def plain_text(draw) -> str:
    """What ``draw(console)`` prints, as uncoloured text (for warnings and exception messages)."""
    import io

    buf = io.StringIO()
    draw(Console(file=buf, width=110, color_system=None, highlight=False, soft_wrap=True))
    return buf.getvalue().rstrip()


def finding_text(f: Finding) -> str:
    return plain_text(lambda console: render_finding(console, f))


def report_text(report: Report) -> str:
    return plain_text(lambda console: render_report(report, console))


def render_report(report: Report, console: Console | None = None) -> None:
    console = console or Console()
    console.print(f"[bold]graphsafe check[/] {escape(report.target)}")
    env = report.environment
    if env:
        console.print("[dim]" + escape(", ".join(f"{k} {v}" for k, v in env.items())) + "[/]")
    console.print()
    for f in report.findings:
        render_finding(console, f)
    rows = report.output_summary()
    if rows:
        t = Table(title="replay vs eager, worst over the verification inputs", title_justify="left")
        for col in ("output", "shape", "dtype", "max abs err", "max rel err", "inputs differing", "bit-identical"):
            t.add_column(col)
        for r in rows:
            t.add_row(str(r["output"]), "×".join(map(str, r["shape"])), r["dtype"], f"{r['max_abs']:.3g}",
                      f"{r['max_rel']:.3g}", f"{r['mismatched_inputs']}/{r['inputs']}",
                      f"{r['bitwise_equal_inputs']}/{r['inputs']}")
        console.print(t)
    if report.ranks:
        t = Table(title="ranks", title_justify="left")
        for col in ("rank", "verdict", "codes", "collectives in the graph", "last step finished"):
            t.add_column(col)
        for r in report.ranks:
            coll = r.get("collectives")
            t.add_row(str(r["rank"]), r["verdict"], ", ".join(sorted(set(r["codes"]))) or "-",
                      "not traced" if coll is None else (", ".join(coll[:4]) + (" …" if len(coll) > 4 else "")
                                                        if coll else "none"),
                      escape(r.get("last_step") or "-") + (f" [red](then: {escape(r['stopped'])})[/]"
                                                           if r.get("stopped") else ""))
        console.print(t)
    loc = report.evidence.locate if report.evidence else None
    if loc is not None:
        took = report.timings.get("locate_s")
        console.print(f"localized: {loc.steps} operations recorded, {loc.nodes} graph nodes read"
                      + (f", in {took:.2f} s" if took is not None else "") + " (a separate run: the verdict is "
                      "unaffected)")
        for what, path in (("picture", loc.html), ("repro", loc.repro)):
            if path:
                console.print(f"{what}: {escape(path)}")
    n_err = sum(f.severity == "error" for f in report.findings)
    n_warn = sum(f.severity == "warning" for f in report.findings)
    tail = f" ({n_err} error{'s' * (n_err != 1)}, {n_warn} warning{'s' * (n_warn != 1)})" if report.findings else \
        " (no findings)"
    console.print(f"verdict: [{_VERDICT[report.verdict]}]{report.verdict}[/]{tail}")
