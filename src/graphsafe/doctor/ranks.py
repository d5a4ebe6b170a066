"""Checks under ``torchrun``: every rank checks its own graph, and rank 0 merges the reports into one.

Each rank runs the ordinary check on its own GPU. The reports then travel to rank 0 as JSON through
torch.distributed (a gloo group made for this, so the user's NCCL group is left alone). Rank 0 merges them:
one verdict (the worst over the ranks), every finding tagged with the ranks that reported it (identical
findings are merged), and the cross-rank findings that no single rank can see. Those findings compare the
NCCL kernels each rank's graph replayed:

* GSD028: the ranks' graphs hold different collectives, in kind, number or order. Replays then pair
  mismatched collectives across ranks, which hangs or corrupts results.
* GSD029: a collective is in some ranks' graphs only.

A collective issued on a stream that is not captured is escaped work (GSD002, with a collective's help).
A replay that hangs on one rank is bounded by the check's timeout (GSD021), and the merged report names the
rank and the last operation it finished.
"""
from __future__ import annotations

import copy
import os
from dataclasses import dataclass

from ..diagnostics import Finding
from .report import Report

VERDICT_ORDER = ("match", "benign", "inconclusive", "mismatch")  # later is worse


@dataclass(frozen=True)
class RankInfo:
    rank: int
    world_size: int
    local_rank: int


def rank_info(environ=None) -> RankInfo | None:
    """This process's place under torchrun (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``), or None alone."""
    env = os.environ if environ is None else environ
    try:
        world = int(env.get("WORLD_SIZE", "1"))
        rank = int(env.get("RANK", "0"))
        local = int(env.get("LOCAL_RANK", str(rank)))
    except ValueError as exc:
        raise ValueError(f"torchrun's RANK/WORLD_SIZE/LOCAL_RANK are not integers: {exc}") from None
    if world <= 1:
        return None
    if not 0 <= rank < world:
        raise ValueError(f"RANK={rank} is outside WORLD_SIZE={world}")
    return RankInfo(rank, world, local)


def collectives(names: list[str]) -> list[str]:
    """The NCCL kernels among kernel names, in order, by their short name (``ncclDevKernel_AllReduce_Sum_f32_RING_LL``)."""
    from .locate.cugraph import demangle

    out = []
    for n in names:
        head = demangle(n).split("(")[0].split("<")[0].split()
        short = head[-1].split("::")[-1] if head else n
        if short.lower().startswith("nccl"):
            out.append(short)
    return out


def _kind(kernel: str) -> str:
    """``ncclDevKernel_AllReduce_Sum_f32_RING_LL`` -> ``AllReduce``: what the collective does, not how."""
    parts = kernel.split("_")
    return parts[1] if len(parts) > 1 and parts[0].lower().startswith("nccl") else kernel


def graph_collectives(report: Report) -> list[str] | None:
    """The NCCL kernels of a rank's graph: read from the graph right after capture where the check did (it does
    under torchrun), else from the kernels its first replay ran; None if neither was seen."""
    return evidence_collectives(report.evidence) if report.evidence is not None else None


def evidence_collectives(ev) -> list[str] | None:
    """The NCCL kernels of the graph ``ev`` (an Evidence) saw, as ``graph_collectives`` says."""
    if ev.graph_kernels is not None:
        return collectives(ev.graph_kernels)
    return collectives(ev.census.graph) if ev.census is not None else None


def merge(reports: list[Report]) -> Report:
    """One report for the ranks' reports (``reports[r]`` is rank r's)."""
    if not reports:
        raise ValueError("no rank reports to merge")
    n = len(reports)
    verdict = max((r.verdict for r in reports), key=VERDICT_ORDER.index)
    findings = tag_findings([(rank, f) for rank, report in enumerate(reports) for f in report.findings], n)
    cross = cross_rank_findings(reports)
    if cross and verdict in ("match", "benign"):
        verdict = "mismatch"
    out = Report(target=f"{reports[0].target} ({n} ranks)", verdict=verdict, findings=cross + findings,
                 evidence=reports[0].evidence, environment=dict(reports[0].environment), timings={
                     "total_s": max((r.timings.get("total_s", 0.0) for r in reports), default=0.0)})
    out.environment["ranks"] = str(n)
    out.ranks = [{"rank": i, "verdict": r.verdict, "codes": r.codes, "collectives": graph_collectives(r),
                  "device": r.environment.get("device"), "last_step": r.evidence.last_step if r.evidence else None,
                  "stopped": _stopped(r)} for i, r in enumerate(reports)]
    return out


def _stopped(report: Report) -> str | None:
    """What ended a rank's check early: a hang (with its bound) or a failure, in a few words."""
    f = report.evidence.failure if report.evidence else None
    if f is None:
        return None
    if f.timed_out_after_s is not None:
        return f"hung in the {f.phase}, stopped after {f.timed_out_after_s:g} s"
    return f"{f.exc_type} in the {f.phase}"


def tag_findings(pairs: list[tuple[int, Finding]], n: int) -> list[Finding]:
    """(rank, finding) pairs -> the distinct findings (same code, message and place), in first-seen order, each
    a copy with ``data["ranks"]`` and a first evidence line saying on which of the ``n`` ranks it was seen."""
    merged: dict[tuple, Finding] = {}
    for rank, f in pairs:
        loc = f.location
        key = (f.code, f.message, loc.file if loc else None, loc.line if loc else None)
        if key not in merged:
            merged[key] = copy.deepcopy(f)
            merged[key].data["ranks"] = []
        merged[key].data["ranks"].append(rank)
    for f in merged.values():
        f.evidence.insert(0, f"on {_ranks_words(f.data['ranks'], n)}")
    return list(merged.values())


def cross_rank_findings(reports: list[Report]) -> list[Finding]:
    seqs = [graph_collectives(r) for r in reports]
    known = [(i, s) for i, s in enumerate(seqs) if s is not None]
    if len(known) < 2 or all(s == known[0][1] for _, s in known):
        return []
    n = len(reports)
    per_rank = [f"rank {i}: {_sequence(s)}" for i, s in known]
    kinds = {i: {_kind(k) for k in s} for i, s in known}
    every = set.intersection(*kinds.values())
    partial = sorted(set.union(*kinds.values()) - every)
    out = []
    if partial:
        for kind in partial:
            having = [i for i, k in kinds.items() if kind in k]
            lacking = [i for i, k in kinds.items() if kind not in k]
            out.append(Finding(
                "GSD029", "error", f"collective `{kind}` is in the graphs of {_ranks_words(having, n)} only",
                evidence=[f"{_ranks_words(lacking, n)} captured no `{kind}`", *per_rank,
                          "a replay on the other ranks waits for a partner that never comes (or pairs it with "
                          "another collective)"],
                help="capture the same collectives on every rank: keep rank-dependent branches (`if rank == 0:`) "
                     "and rank-dependent shapes out of the captured region",
                data={"collective": kind, "ranks": having, "missing_on": lacking}))
    else:
        out.append(Finding(
            "GSD028", "error", "the ranks' graphs hold different sequences of collectives",
            evidence=[*per_rank, "replays pair collectives by position across ranks: a different number or order "
                      "hangs or mixes up data"],
            help="capture the same collectives in the same order on every rank (same code path, same shapes "
                 "and dtypes per collective)",
            data={"sequences": {str(i): s for i, s in known}}))
    return out


def _sequence(s: list[str], limit: int = 6) -> str:
    if not s:
        return "no collectives"
    shown = ", ".join(s[:limit]) + (f", … ({len(s)} in all)" if len(s) > limit else "")
    return shown


def _ranks_words(ranks: list[int], n: int) -> str:
    if len(ranks) == n:
        return f"all {n} ranks"
    return ("rank " if len(ranks) == 1 else "ranks ") + ", ".join(map(str, ranks)) + f" of {n}"


_GROUP = None  # the gloo group gather() made


# -- torch.distributed plumbing --------------------------------------------------------------------------------
def gather_texts(text: str, info: RankInfo, timeout_s: float = 600.0) -> list[str] | None:
    """Every rank's ``text`` on rank 0 (None elsewhere), through a gloo group (made, and the default process
    group initialized from torchrun's environment if the target did not, or if the script destroyed it)."""
    from datetime import timedelta

    import torch.distributed as dist

    if not dist.is_initialized():
        # torchrun's store, under a prefix of graphsafe's own: a script that destroyed its default group left
        # that group's keys (its ranks' old addresses) under the prefix a plain re-init would use again
        store, rank, world = next(dist.rendezvous("env://", timeout=timedelta(seconds=timeout_s)))
        dist.init_process_group("gloo", store=dist.PrefixStore("graphsafe-merge", store), rank=rank,
                                world_size=world, timeout=timedelta(seconds=timeout_s))
    global _GROUP
    group = _GROUP = dist.new_group(backend="gloo", timeout=timedelta(seconds=timeout_s))
    texts = [None] * info.world_size if info.rank == 0 else None
    dist.gather_object(text, texts, dst=0, group=group)
    return texts if info.rank == 0 else None


def gather(report: Report, info: RankInfo, timeout_s: float = 600.0) -> list[Report] | None:
    """Every rank's report on rank 0 (None elsewhere)."""
    texts = gather_texts(report.to_json(indent=None), info, timeout_s)
    return None if texts is None else [Report.from_json(t) for t in texts]


def share_status(status: int, info: RankInfo) -> int:
    """Rank 0's exit status on every rank, so torchrun's result is the merged verdict."""
    import torch.distributed as dist

    box = [status if info.rank == 0 else None]
    dist.broadcast_object_list(box, src=0, group=_GROUP)  # gloo: not behind a hung NCCL stream
    return int(box[0])
