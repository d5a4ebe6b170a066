"""graphsafe: check CUDA-graph replay against eager (check, run), lint sources (lint), explain codes.

Exit status: 0 match or benign / clean, 1 mismatch / findings, 2 inconclusive, usage error or no GPU.
"""
from __future__ import annotations

import argparse
import os
import sys

from rich.console import Console
from rich.markup import escape

from . import __version__


def _add_check(sub) -> None:
    p = sub.add_parser("check", help="check a target: eager vs CUDA-graph replay",
                       description="Run MODULE:NAME eagerly and replayed from a CUDA graph on several inputs, "
                                   "compare, and explain any difference.")
    p.add_argument("spec", metavar="MODULE:NAME",
                   help="a graphsafe.Target, a @target_factory, or a callable (then give --inputs)")
    p.add_argument("--inputs", metavar="MODULE:FUNC", help="FUNC(seed) returns the call arguments")
    p.add_argument("--n-inputs", type=_positive(int), default=3, help="verification inputs (default 3)")
    p.add_argument("--capture-seed", type=int, default=0, help="seed of the capture input (default 0)")
    p.add_argument("--rtol", type=float)
    p.add_argument("--atol", type=float)
    p.add_argument("--no-trace", action="store_true", help="do not trace the capture (no escaped-work search)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--no-isolate", action="store_true", help="check in this process (default: a child process)")
    p.add_argument("--timeout", type=_positive(float), default=600.0,
                   help="seconds before an isolated check is stopped (default 600)")
    p.add_argument("--call-timeout", type=_positive(float), default=60.0,
                   help="seconds one eager call or replay may take before it counts as hung, GSD021 (default 60)")
    p.add_argument("--verbose", action="store_true", help="also show what the target printed")
    p.add_argument("--locate", choices=("auto", "always", "never"), default="auto",
                   help="find the first divergent op, census the graph, look for frozen arguments and races "
                        "(auto: on a mismatch; it never changes the verdict; under torchrun auto means never, "
                        "because every rank must localize or none)")
    p.add_argument("--html", metavar="FILE", help="write the captured graph beside the eager kernels as HTML")
    p.add_argument("--repro", metavar="FILE.py", help="write a script that reproduces the first divergent op alone")


def _add_run(sub) -> None:
    p = sub.add_parser("run", help="run a script and report every capture that had escaped work",
                       description="Run SCRIPT unmodified; report each CUDA-graph capture in it that had "
                                   "escaped work or failed.")
    p.add_argument("--json", action="store_true", help="print the result as JSON after the script's output")
    p.add_argument("--sentinel", action="store_const", const="warn", default=None,
                   help="watch captures with the sentinel instead of the profiler: each problem is reported the "
                        "moment it happens, at a few percent of capture time")
    p.add_argument("--strict", dest="sentinel", action="store_const", const="strict",
                   help="the sentinel, raising CaptureViolationError at the offending call")
    p.add_argument("script", help="the script; graphsafe's own options go before it")
    p.add_argument("args", nargs=argparse.REMAINDER, help="arguments passed to the script")


def _add_lint(sub) -> None:
    p = sub.add_parser("lint", help="find capture-unsafe code in CUDA C++/C++/Python sources (no GPU needed)",
                       description="Static rules for code that runs under CUDA graphs. Exit status 1 when "
                                   "errors or warnings remain, 0 otherwise, 2 for bad arguments.")
    p.add_argument("paths", nargs="*", default=["."], metavar="PATH")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="findings as JSON")
    fmt.add_argument("--sarif", action="store_true", help="findings as SARIF 2.1.0")
    p.add_argument("--select", help="comma-separated codes or prefixes to check (default: all)")
    p.add_argument("--ignore", help="comma-separated codes or prefixes to skip")
    p.add_argument("--config", help="a pyproject.toml to read [tool.graphsafe] from (default: the nearest)")
    p.add_argument("--exit-zero", action="store_true", help="exit 0 even when findings remain")


def _positive(kind):
    """An argparse type: a number of ``kind`` above zero."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__}, got {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
        return value
    parse.__name__ = f"positive {kind.__name__}"
    return parse


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="graphsafe", description=__doc__.splitlines()[0])
    p.add_argument("--version", action="version", version=f"graphsafe {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    _add_check(sub)
    _add_run(sub)
    _add_lint(sub)
    sub.add_parser("demo", help="the bundled seed case, diagnosed end to end")
    e = sub.add_parser("explain", help="the long explanation of a finding code")
    e.add_argument("code")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = Console(highlight=False)
    err = Console(stderr=True, highlight=False)
    try:
        return {"check": _check, "run": _run, "demo": _demo, "explain": _explain, "lint": _lint}[args.command](
            args, console)
    except (ValueError, FileNotFoundError, KeyError) as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc.args[0] if exc.args else exc))}")
        return 2


def _check(args, console: Console) -> int:
    from .doctor.render import render_report

    opts = {"n_inputs": args.n_inputs, "capture_seed": args.capture_seed, "rtol": args.rtol, "atol": args.atol,
            "trace": not args.no_trace, "locate": args.locate, "timeout_s": args.call_timeout,
            "html": os.path.abspath(args.html) if args.html else None,
            "repro": os.path.abspath(args.repro) if args.repro else None}
    from .doctor.ranks import rank_info

    _cwd_importable()
    info = rank_info()
    if info is not None:
        return _check_ranks(args, opts, info, console)
    if args.no_isolate:
        from .doctor.worker import check_spec

        report = check_spec(args.spec, args.inputs, opts)
        printed = ""
    else:
        from .doctor.isolate import check_in_subprocess

        # the child validates the spec (importing the target here too would cost a second torch import)
        report, printed = check_in_subprocess(args.spec, inputs=args.inputs, timeout=args.timeout, options=opts)
    if args.verbose and printed.strip():
        console.print("[dim]--- what the target printed ---[/]")
        console.out(printed.rstrip())
    if args.json:
        console.out(report.to_json())
    else:
        render_report(report, console)
    return report.exit_status


def _cwd_importable() -> None:
    """MODULE resolves from the working directory in this process as in the isolated child (``python -m``
    puts it first on ``sys.path``; the ``graphsafe`` script does not)."""
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())


def _check_ranks(args, opts: dict, info, console: Console) -> int:
    """Under torchrun: each rank checks in its own process (no child: the ranks' process group lives here) on
    its LOCAL_RANK GPU, and rank 0 prints the merged report; every rank exits with its status."""
    import torch

    from .doctor import ranks
    from .doctor.check import check
    from .doctor.render import render_report
    from .doctor.target import resolve

    if torch.cuda.is_available() and info.local_rank < torch.cuda.device_count():
        torch.cuda.set_device(info.local_rank)
    opts = rank_options(opts, info.rank)
    # the graph's collectives are read before any replay, so they are compared even when a replay hangs
    report = check(resolve(args.spec, args.inputs), read_graph=True, **opts)
    reports = ranks.gather(report, info, timeout_s=args.timeout)
    status = 0
    if reports is not None:
        merged = ranks.merge(reports)
        status = merged.exit_status
        if args.json:
            console.out(merged.to_json())
        else:
            render_report(merged, console)
    status = ranks.share_status(status, info)
    return _leave_if_hung(report, status)


def rank_options(opts: dict, rank: int) -> dict:
    """A rank's check options. Localizing re-runs the target, collectives included, so every rank does it or
    none: "auto" (on a mismatch, which may be one rank's) becomes "never", and a picture or repro (rank 0
    writes them) makes every rank localize."""
    if opts.get("html") or opts.get("repro"):
        opts = {**opts, "locate": "always"}
    elif opts.get("locate") == "auto":
        opts = {**opts, "locate": "never"}
    if rank != 0:  # one picture and one repro, rank 0's
        opts = {**opts, "html": None, "repro": None}
    return opts


def _leave_if_hung(report, status: int) -> int:
    """After a hung replay the GPU still runs the stuck kernel (a collective waiting for its partners): exit
    without the interpreter's and NCCL's teardown, which would wait for it."""
    ev = report.evidence
    hung = ev is not None and ev.failure is not None and ev.failure.timed_out_after_s is not None
    hung = hung or (ev is not None and ev.locate is not None and any("CallTimeout" in e for e in ev.locate.errors))
    if hung:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    return status


def _run(args, console: Console) -> int:
    from .doctor.ranks import rank_info
    from .doctor.runscript import render_run, run_script

    info = rank_info()
    result = run_script(args.script, args.args, sentinel=args.sentinel)
    if info is not None:  # under torchrun: rank 0 merges the ranks' results and prints them
        import json

        from .doctor import ranks
        from .doctor.run_ranks import merge_runs, render_merged_run

        texts = ranks.gather_texts(result.to_json(), info)
        status = 0
        if texts is not None:
            merged = merge_runs([json.loads(t) for t in texts])
            status = merged.exit_status
            if args.json:
                console.out(merged.to_json())
            else:
                render_merged_run(merged, console)
        return ranks.share_status(status, info)
    if args.json:
        console.out(result.to_json())
    else:
        render_run(result, console)
    return result.exit_status


def _lint(args, console: Console) -> int:
    from pathlib import Path

    from .lint.engine import codes, lint_paths, load_config
    from .lint.output import render_text, to_json, to_sarif

    config = load_config(start=_common_dir(args.paths), explicit=Path(args.config) if args.config else None)
    if args.select is not None:
        config.select = codes(args.select.split(","), "--select")
        if not config.select:
            raise ValueError("--select names no code")
    if args.ignore is not None:
        config.ignore += codes(args.ignore.split(","), "--ignore")
    result = lint_paths(args.paths, config)
    if args.json:
        console.out(to_json(result))
    elif args.sarif:
        console.out(to_sarif(result))
    else:
        render_text(result, console)
    return 0 if args.exit_zero else result.exit_status


def _common_dir(paths: list[str]):
    """Where to look for the pyproject.toml: the directory the linted paths share (the project linted from
    outside it still gets its configuration)."""
    from pathlib import Path

    dirs = [p if p.is_dir() else p.parent for p in (Path(x).absolute() for x in paths)]
    try:
        return Path(os.path.commonpath([str(d) for d in dirs])) if dirs else None
    except ValueError:  # different drives
        return None


def _demo(args, console: Console) -> int:
    from .demo import demo

    return demo(console)


def _explain(args, console: Console) -> int:
    from .explain import explain

    return explain(args.code, console)


if __name__ == "__main__":
    sys.exit(main())
