"""``graphsafe run SCRIPT``: run an unmodified script and report every capture that had escaped work.

The monitor wraps ``torch.cuda.CUDAGraph.capture_begin``/``capture_end`` (which ``torch.cuda.graph``,
``make_graphed_callables`` and hand-written runners all go through): around each capture it traces
with torch.profiler, exactly as ``graphsafe check`` does, and keeps the findings.
"""
from __future__ import annotations

import json
import runpy
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..diagnostics import Finding, Location
from . import frames
from .classify import _escaped, _failure
from .evidence import Evidence, Failure
from .trace import CaptureTracer, EscapedOp

SCHEMA = "graphsafe.run/1"


@dataclass
class CaptureRecord:
    index: int
    site: Location | None
    stack: list[Location] = field(default_factory=list)
    escaped: list[EscapedOp] = field(default_factory=list)
    stream_ids: dict[str, int] = field(default_factory=dict)
    trace_error: str | None = None
    failure: Failure | None = None
    reported: list[Finding] = field(default_factory=list)  # the sentinel's, as they happened

    def findings(self) -> list[Finding]:
        ev = Evidence(target=f"capture #{self.index}", escaped=self.escaped, stream_ids=self.stream_ids,
                      failure=self.failure)
        out = list(self.reported) + [_escaped(op, ev) for op in self.escaped]
        if self.failure is not None:
            out.append(_failure(ev))
        if self.trace_error:
            out.append(Finding("GSD002", "note", "the capture could not be traced, so escaped work was not looked for",
                               evidence=[self.trace_error], help="stop other profilers while graphsafe runs"))
        return out


class CaptureMonitor:
    """Installs the capture hooks; ``records`` holds one CaptureRecord per capture."""

    def __init__(self) -> None:
        self.records: list[CaptureRecord] = []
        self._live: dict[int, tuple[CaptureTracer, CaptureRecord]] = {}
        self._orig = None

    def install(self) -> None:
        import torch

        cls = torch.cuda.CUDAGraph
        self._orig = (cls.capture_begin, cls.capture_end)
        orig_begin, orig_end = self._orig
        monitor = self

        def capture_begin(graph, *args, **kwargs):
            site = frames.caller_frames(skip=1)
            rec = CaptureRecord(index=len(monitor.records) + 1, site=site[0] if site else None, stack=site[1:6])
            tracer = CaptureTracer()
            if tracer.start():
                tracer.calibrate(torch.cuda.current_stream())
            try:
                orig_begin(graph, *args, **kwargs)
            except Exception:
                monitor._finish(tracer, rec)
                raise
            tracer.open_window()
            monitor._live[id(graph)] = (tracer, rec)

        def capture_end(graph, *args, **kwargs):
            tracer, rec = monitor._live.pop(id(graph), (None, None))
            if tracer is not None:
                tracer.close_window()
            try:
                return orig_end(graph, *args, **kwargs)
            except Exception as exc:
                if rec is not None:
                    from .check import _failure as failure_of
                    rec.failure = failure_of("capture", exc)
                raise
            finally:
                if tracer is not None:
                    monitor._finish(tracer, rec)

        cls.capture_begin, cls.capture_end = capture_begin, capture_end

    def _finish(self, tracer: CaptureTracer, rec: CaptureRecord) -> None:
        tr = tracer.stop()
        rec.escaped, rec.stream_ids, rec.trace_error = tr.escaped, tr.stream_ids, tr.error
        if rec.failure is not None:
            rec.failure.last_entered, rec.failure.last_entered_at = tr.last_entered, tr.last_entered_at
        self.records.append(rec)

    def uninstall(self) -> None:
        if self._orig is not None:
            import torch

            torch.cuda.CUDAGraph.capture_begin, torch.cuda.CUDAGraph.capture_end = self._orig
            self._orig = None


@dataclass
class RunResult:
    script: str
    records: list[CaptureRecord]
    script_error: str | None = None
    script_exit: int = 0
    no_cuda: bool = False
    sentinel_note: str | None = None  # why the sentinel could not watch (CUPTI held by another tool, say)

    @property
    def exit_status(self) -> int:
        if any(r.findings() and any(f.severity == "error" for f in r.findings()) for r in self.records):
            return 1
        if self.no_cuda or self.script_error or self.script_exit:
            return 2
        return 0

    def to_dict(self) -> dict:
        import dataclasses
        return {
            "schema": SCHEMA, "script": self.script, "exit_status": self.exit_status,
            "script_error": self.script_error, "script_exit": self.script_exit, "no_cuda": self.no_cuda,
            "sentinel_note": self.sentinel_note,
            "captures": [{
                "index": r.index, "site": dataclasses.asdict(r.site) if r.site else None,
                "findings": [f.to_dict() for f in r.findings()],
                "escaped": [op.to_dict() for op in r.escaped], "stream_ids": r.stream_ids,
            } for r in self.records],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=str)


def run_script(path: str, args: list[str], sentinel: str | None = None) -> RunResult:
    """Run ``path`` with every capture watched: traced with torch.profiler after the fact (default), or by the
    sentinel (``sentinel="warn"|"strict"``), which reports as it happens and costs far less capture time."""
    import torch

    script = Path(path)
    if script.is_dir():
        raise ValueError(f"{path} is a directory; graphsafe run takes a Python script")
    if not script.is_file():
        raise FileNotFoundError(f"no such script: {path}")
    result = RunResult(script=str(script), records=[])
    if not torch.cuda.is_available():
        result.no_cuda = True
    if sentinel:
        from ..runner.sentinel import Sentinel

        monitor = Sentinel(sentinel)
    else:
        monitor = CaptureMonitor()
    monitor.install()
    old_argv, old_path0 = sys.argv, sys.path[0]
    sys.argv = [str(script), *args]
    sys.path[0] = str(script.resolve().parent)
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as exc:
        code = exc.code
        result.script_exit = int(code) if isinstance(code, int) else (0 if code is None else 1)  # exit(True): 1
        if not isinstance(code, int) and code is not None:  # sys.exit("message"): Python prints it
            print(code, file=sys.stderr)
    except BaseException as exc:  # noqa: BLE001 - reported, with what was gathered before it
        user = frames.user_frames(exc.__traceback__)
        where = f" at {user[0].short()}" if user else ""
        result.script_error = f"{type(exc).__name__}: {exc}{where}"
    finally:
        sys.argv, sys.path[0] = old_argv, old_path0
        monitor.uninstall()
    if sentinel:
        result.records = [CaptureRecord(index=c.index, site=c.site, reported=list(c.findings))
                          for c in monitor.captures]
        result.sentinel_note = monitor.unavailable
    else:
        result.records = monitor.records
    return result


def render_run(result: RunResult, console) -> None:
    from rich.markup import escape

    from .render import render_finding

    console.print(f"[bold]graphsafe run[/] {escape(result.script)}")
    if result.no_cuda:
        console.print("[bold yellow]no CUDA GPU: the script cannot capture CUDA graphs here[/]")
    for r in result.records:
        fs = r.findings()
        site = f" at {r.site.short()}" + (f" ({r.site.function})" if r.site and r.site.function else "") \
            if r.site else ""
        errors = [f for f in fs if f.severity == "error"]
        status = "[bold red]escaped work[/]" if r.escaped or any(f.code == "GSD002" for f in errors) else \
            "[bold red]failed[/]" if r.failure or errors else "[green]clean[/]"
        console.print(f"capture #{r.index}{escape(site)}: {status}")
        for f in fs:
            render_finding(console, f)
    if result.script_error:
        console.print(f"[bold red]the script raised[/]: {escape(result.script_error)}")
    elif result.script_exit:
        console.print(f"[bold yellow]the script exited with status {result.script_exit}[/]")
    if result.sentinel_note:
        console.print(f"[bold yellow]the sentinel could not watch every capture[/]: {escape(result.sentinel_note)}")
    bad = sum(any(f.severity == "error" for f in r.findings()) for r in result.records)
    console.print(f"{len(result.records)} capture{'s' * (len(result.records) != 1)}, {bad} with findings")
