"""``graphsafe demo``: the bundled seed case, diagnosed end to end.

With a CUDA GPU: check the seed's model as reported (expect escaped work and a stale replay), then
its fixed twin (expect `match`, no findings). Without one: say what needs a GPU, point at the
seed's launch line from the source, and show the diagnosis recorded on a GPU.
"""
from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from .diagnostics import Location

RECORDED = Path(__file__).parent / "cases" / "seed" / "recorded_report.json"


def seed_launch(fixed: bool = False) -> tuple[Location, list[str]] | None:
    """The seed kernel's launch site, found in the CUDA source with tree-sitter."""
    from .cases.seed import FIXED_KERNEL_SOURCE, KERNEL_SOURCE
    from .lint.cuda import launches

    path = FIXED_KERNEL_SOURCE if fixed else KERNEL_SOURCE
    found = [ln for ln in launches(path.read_bytes()) if ln.kernel == "scale_andquant_kernel"]
    if not found:
        return None
    ln = found[0]
    stream = "names no stream, so it runs on the legacy default stream" if ln.stream is None \
        else f"runs on `{ln.stream}`"
    return Location(str(path), ln.line, ln.column, ln.function, f"this launch {stream}", ln.span), ln.config


def demo(console: Console) -> int:
    import torch

    console.print("[bold]graphsafe demo[/]: the seed case, a user's fused INT4 quantization kernel "
                  "(`scale_andquant_kernel`) whose results differ under CUDA-graph replay\n")
    if not torch.cuda.is_available():
        return _demo_cpu(console, torch)
    return _demo_gpu(console)


def _demo_cpu(console: Console, torch) -> int:
    from .cases import seed
    from .diagnostics import display_path
    from .doctor.render import render_report
    from .doctor.report import Report
    from .lint.engine import lint_paths
    from .lint.output import render_text

    console.print(f"[bold yellow]No CUDA GPU here[/] (torch {torch.__version__}, CUDA build "
                  f"{torch.version.cuda or 'none'}). These steps need one and were skipped: building the "
                  "seed's CUDA extension, capturing and replaying it, tracing the capture, and comparing "
                  "replay with eager. Run `graphsafe demo` on a machine with a CUDA GPU to do them.\n")
    console.print("[bold]1. What graphsafe finds without a GPU[/]: `graphsafe lint` on the seed's kernel "
                  "file and script\n")
    render_text(lint_paths([str(seed.KERNEL_SOURCE), str(seed.SCRIPT)]), console)
    fixed = lint_paths([str(seed.FIXED_KERNEL_SOURCE)])
    good = seed_launch(fixed=True)
    where = f" (its launch at line {good[0].line} runs on `{good[1][3]}`)" if good and len(good[1]) > 3 else ""
    console.print(f"\nThe fixed twin, {display_path(str(seed.FIXED_KERNEL_SOURCE))}: "
                  f"{len(fixed.findings)} findings{where}.\n")
    if RECORDED.is_file():
        # the recorded paths are relative to the package ({graphsafe}), so they resolve on this machine
        rec = json.loads(RECORDED.read_text().replace("{graphsafe}", str(Path(__file__).parent)))
        report = Report.from_dict(rec["report"])
        console.print(f"[bold]2. What `graphsafe check graphsafe.cases.seed:buggy` found on a GPU[/] "
                      f"[dim](recorded {escape(rec['recorded'])})[/]\n")
        render_report(report, console)
    return 0


def _demo_gpu(console: Console) -> int:
    from .cases import seed
    from .doctor.check import check
    from .doctor.render import render_report

    console.print("[dim]building the seed's CUDA extensions on first use (about a minute; cached after)…[/]")
    seed.ext.load("buggy"), seed.ext.load("fixed")
    console.print("[bold]1. The seed as reported[/]: graphsafe check graphsafe.cases.seed:buggy\n")
    bad = check(seed.buggy())
    render_report(bad, console)
    console.print("\n[bold]2. The fixed twin[/]: graphsafe check graphsafe.cases.seed:fixed\n")
    good = check(seed.fixed())
    render_report(good, console)
    diagnosed = any(f.code == "GSD002" and f.data.get("short_name") == "scale_andquant_kernel"
                    for f in bad.findings) and bad.verdict == "mismatch"
    clean = good.verdict == "match" and not good.findings
    console.print()
    if diagnosed and clean:
        console.print("[bold green]demo ok[/]: the seed's escaped launch was found and the fixed twin is clean")
        where = next((f for f in bad.findings if f.code == "GSD023"), None)
        if where is not None and where.location is not None:
            console.print(f"the first divergent operation is `{escape(where.data.get('op', '?'))}` at "
                          f"{escape(where.location.short())}; `graphsafe check graphsafe.cases.seed:buggy --html "
                          "seed.html --repro seed_repro.py` draws the graph and writes it alone as a script")
        return 0
    console.print("[bold red]demo failed[/]: " + ("the seed was not diagnosed as expected; " if not diagnosed else "")
                  + ("the fixed twin was not clean" if not clean else ""))
    return 1
