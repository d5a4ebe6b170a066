"""``graphsafe run`` under ``torchrun``: every rank runs the script with its captures watched, and rank 0 merges
the ranks' results into one (findings tagged with the ranks that reported them, one exit status).

A rank-specific finding is the interesting one: NCCL requires that a collective is captured on every rank or on
none, so a collective that escaped the capture on some ranks only (GSD029) means that the other ranks' graphs
hold a collective whose partners never launch it again: their replays hang.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

from ..diagnostics import Finding, Location
from .ranks import _kind, _ranks_words, collectives, tag_findings

SCHEMA = "graphsafe.run.ranks/1"


@dataclass
class MergedCapture:
    index: int
    site: Location | None
    ranks: list[int] = field(default_factory=list)  # the ranks that made this capture
    findings: list[Finding] = field(default_factory=list)


@dataclass
class MergedRun:
    script: str
    world: int
    captures: list[MergedCapture]
    rows: list[dict]  # per rank: rank, captures, with_findings, exit_status, script_error, sentinel_note
    cross: list[Finding] = field(default_factory=list)

    @property
    def exit_status(self) -> int:
        codes = [r["exit_status"] for r in self.rows]
        if self.cross or 1 in codes:
            return 1
        return 2 if 2 in codes else 0

    def to_dict(self) -> dict:
        return {"schema": SCHEMA, "script": self.script, "ranks": self.world, "exit_status": self.exit_status,
                "cross_rank": [f.to_dict() for f in self.cross], "per_rank": self.rows,
                "captures": [{"index": c.index, "site": dataclasses.asdict(c.site) if c.site else None, "ranks": c.ranks,
                              "findings": [f.to_dict() for f in c.findings]} for c in self.captures]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=str)


def merge_runs(results: list[dict]) -> MergedRun:
    """One result for the ranks' ``RunResult.to_dict()`` (``results[r]`` is rank r's)."""
    if not results:
        raise ValueError("no rank results to merge")
    n = len(results)
    by_index: dict[int, MergedCapture] = {}
    found: dict[int, list[tuple[int, Finding]]] = {}  # capture -> (rank, finding)
    escaped: dict[int, dict[int, set[str]]] = {}  # capture -> rank -> escaped collectives
    for rank, res in enumerate(results):
        for c in res.get("captures", []):
            cap = by_index.setdefault(c["index"], MergedCapture(c["index"], Location.from_dict(c.get("site"))))
            cap.ranks.append(rank)
            names = [op.get("name", "") for op in c.get("escaped", [])]  # traced runs
            names += [fd.get("data", {}).get("kernel") or "" for fd in c.get("findings", [])  # sentinel runs
                      if fd.get("code") == "GSD002"]
            escaped.setdefault(c["index"], {})[rank] = {_kind(k) for k in collectives(names)}
            found.setdefault(c["index"], []).extend((rank, Finding.from_dict(fd)) for fd in c.get("findings", []))
    for index, cap in by_index.items():
        cap.findings = tag_findings(found.get(index, []), n)
    captures = sorted(by_index.values(), key=lambda c: c.index)
    rows = [{"rank": r, "captures": len(res.get("captures", [])),
             "with_findings": sum(any(f.get("severity") == "error" for f in c.get("findings", []))
                                  for c in res.get("captures", [])),
             "exit_status": res.get("exit_status", 2), "script_error": res.get("script_error"),
             "script_exit": res.get("script_exit", 0),
             "sentinel_note": res.get("sentinel_note")} for r, res in enumerate(results)]
    return MergedRun(str(results[0].get("script", "?")), n, captures, rows, _cross(captures, escaped, rows, n))


def _cross(captures: list[MergedCapture], escaped: dict, rows: list[dict], n: int) -> list[Finding]:
    out = []
    # a rank whose script raised or exited early made fewer captures for that reason: its exit says so
    counts = {r["rank"]: r["captures"] for r in rows if not r["script_error"] and not r.get("script_exit")}
    if len(set(counts.values())) > 1:
        out.append(Finding(
            "GSD029", "error", "the ranks made different numbers of captures",
            evidence=[", ".join(f"rank {r}: {c}" for r, c in counts.items()),
                      "a capture with collectives made on some ranks only gives graphs whose replays wait for "
                      "partners that never launch"],
            help="capture the same graphs on every rank: no rank-dependent branches around the captures",
            data={"captures": counts}))
    for cap in captures:
        per_rank = escaped.get(cap.index, {})
        kinds = set().union(*per_rank.values()) if per_rank else set()
        for kind in sorted(kinds):
            esc = [r for r, k in per_rank.items() if kind in k]
            kept = [r for r in cap.ranks if r not in esc]
            if not kept:
                continue  # escaped everywhere: each rank's GSD002 says it, with the collective's help
            out.append(Finding(
                "GSD029", "error", f"collective `{kind}` escaped capture #{cap.index} on {_ranks_words(esc, n)} only",
                location=cap.site,
                evidence=[f"{_ranks_words(kept, n)} captured it into the graph",
                          "NCCL requires a collective to be captured on every rank or on none: the replays of the "
                          "ranks that captured it wait for partners that never launch it again"],
                help="issue the collective on the capturing stream (or a stream joined to it) on every rank",
                data={"collective": kind, "escaped_on": esc, "captured_on": kept, "capture": cap.index}))
    return out


def render_merged_run(run: MergedRun, console) -> None:
    from rich.markup import escape
    from rich.table import Table

    from .render import render_finding

    console.print(f"[bold]graphsafe run[/] {escape(run.script)} ({run.world} ranks)")
    for f in run.cross:
        render_finding(console, f)
    for c in run.captures:
        site = f" at {c.site.short()}" if c.site else ""
        errors = any(f.severity == "error" for f in c.findings)
        status = "[bold red]findings[/]" if errors else "[green]clean[/]"
        console.print(f"capture #{c.index}{escape(site)} on {_ranks_words(c.ranks, run.world)}: {status}")
        for f in c.findings:
            render_finding(console, f)
    t = Table(title="ranks", title_justify="left")
    for col in ("rank", "captures", "with findings", "exit", "the script raised"):
        t.add_column(col)
    for r in run.rows:
        t.add_row(str(r["rank"]), str(r["captures"]), str(r["with_findings"]), str(r["exit_status"]),
                  escape(r["script_error"] or "-"))
    console.print(t)
    notes = {r["sentinel_note"] for r in run.rows if r["sentinel_note"]}
    for note in sorted(notes):
        console.print(f"[bold yellow]the sentinel could not watch every capture[/]: {escape(note)}")
    bad = sum(any(f.severity == "error" for f in c.findings) for c in run.captures)
    console.print(f"{len(run.captures)} capture{'s' * (len(run.captures) != 1)}, {bad} with findings, "
                  f"{len(run.cross)} cross-rank finding{'s' * (len(run.cross) != 1)}")
