"""Bundled cases: the seed (a real user report) and the bug zoo, each a buggy target and its fixed twin.

Every case module exposes ``bad`` and ``good`` targets (``graphsafe check graphsafe.cases.X:bad``) and
says in its docstring what goes wrong and what graphsafe is expected to report. ``ZOO`` lists one case
per class of graph-vs-eager bug (``../shared/reference/taxonomy.md``); ``VARIANTS`` lists further buggy
forms of some classes; ``BAD_INPUT`` lists targets that fault or hang.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ZooCase:
    number: int          # the class, as numbered in issue 4 and the README
    title: str
    bad: str             # spec of the buggy target
    code: str            # the finding code its check must report
    verdict: str         # the verdict its check must give
    good: str | None = None          # spec of the fixed twin
    good_verdict: str = "match"      # the twin's verdict (no findings unless "benign")
    language: str = "PyTorch"
    ranks: int = 1                   # processes under torchrun, one GPU each


_C = "graphsafe.cases."

ZOO = [
    ZooCase(1, "escaped work: legacy default stream", _C + "seed:buggy", "GSD002", "mismatch", _C + "seed:fixed",
            language="CUDA C++"),
    ZooCase(2, "escaped work: per-thread default stream", _C + "escaped_per_thread:bad", "GSD002", "mismatch",
            _C + "escaped_per_thread:good", language="CUDA C++"),
    ZooCase(3, "escaped work: a stream the code owns", _C + "escaped_owned_stream:bad", "GSD002", "mismatch",
            _C + "escaped_owned_stream:good"),
    ZooCase(4, "frozen host value", _C + "frozen_scalar:bad", "GSD010", "mismatch", _C + "frozen_scalar:good",
            language="Triton"),
    ZooCase(5, "CPU side effect only at capture", _C + "host_side_effect:bad", "GSD011", "mismatch",
            _C + "host_side_effect:good"),
    ZooCase(6, "stale pointer (rebound after capture)", _C + "stale_pointer:bad", "GSD012", "mismatch",
            _C + "stale_pointer:good"),
    ZooCase(7, "output overwritten by later replays", _C + "output_overwritten:bad", "GSD013", "mismatch",
            _C + "output_overwritten:good"),
    ZooCase(8, "uninitialized read", _C + "uninitialized:bad", "GSD014", "mismatch", _C + "uninitialized:good",
            language="Triton"),
    ZooCase(9, "accumulation not zeroed in the graph", _C + "accumulation:bad", "GSD015", "mismatch",
            _C + "accumulation:good"),
    ZooCase(10, "in-place mutation of a parameter", _C + "inplace_param:bad", "GSD016", "mismatch",
            _C + "inplace_param:good"),
    ZooCase(11, "side-stream race", _C + "stream_race:bad", "GSD017", "mismatch", _C + "stream_race:good"),
    ZooCase(12, "capture-breaking operation (.item())", _C + "capture_breaking:item", "GSD003", "inconclusive",
            _C + "capture_breaking:item_fixed"),
    ZooCase(13, "control flow frozen at capture", _C + "control_flow:bad", "GSD018", "mismatch",
            _C + "control_flow:good"),
    ZooCase(14, "RNG seeded from the host", _C + "host_rng:bad", "GSD019", "mismatch", _C + "host_rng:good",
            language="Triton"),
    ZooCase(15, "benign numeric noise (padded batch)", _C + "padded_gemm:bad", "GSD020", "benign",
            _C + "padded_gemm:good"),
]

VARIANTS = [
    ZooCase(1, "escaped work: legacy default stream (PyTorch)", _C + "escaped_legacy:bad", "GSD002", "mismatch",
            _C + "escaped_legacy:good"),
    ZooCase(2, "escaped work: per-thread default stream (PyTorch)", _C + "escaped_per_thread:bad_torch", "GSD002",
            "mismatch"),
    ZooCase(10, "in-place mutation of a static input", _C + "inplace_param:bad_input", "GSD016", "match",
            _C + "inplace_param:good_input"),
    ZooCase(13, "shape frozen at capture (branch on batch size)", _C + "control_flow:bad_batch", "GSD018",
            "mismatch", _C + "control_flow:good_batch", good_verdict="benign"),
] + [
    ZooCase(12, f"capture-breaking operation ({v})", f"{_C}capture_breaking:{v}", "GSD003", "inconclusive",
            f"{_C}capture_breaking:{v}_fixed", language="CUDA C++" if v == "cuda_malloc" else "PyTorch")
    for v in ("synchronize", "mask_index", "cuda_malloc", "pageable_copy", "dlpack")
]

BAD_INPUT = [
    ZooCase(0, "device-side assert", _C + "faults:device_assert", "GSD022", "inconclusive"),
    ZooCase(0, "illegal address", _C + "faults:illegal_address", "GSD022", "inconclusive", language="Triton"),
    ZooCase(0, "replay hangs (semaphore raised only at capture)", _C + "hang:replay_hangs", "GSD021",
            "inconclusive", language="Triton"),
]

# Collectives under torchrun (issue 8): ``torchrun --nproc-per-node 2 -m graphsafe check SPEC``, NVLink multicast
# off. `verdict` is the merged verdict; `code` is a finding the merged report must hold.
COLLECTIVES = [
    ZooCase(0, "collective on a stream that is not captured", _C + "tp_mlp:bad_side_stream", "GSD002", "mismatch",
            _C + "tp_mlp:good", ranks=2),
    ZooCase(0, "collective captured on some ranks only", _C + "tp_mlp:bad_some_ranks", "GSD029", "mismatch",
            _C + "tp_mlp:good", ranks=2),
    ZooCase(0, "replay hangs on a collective without partners", _C + "tp_mlp:bad_some_ranks", "GSD021",
            "mismatch", _C + "tp_mlp:good", ranks=2),
    ZooCase(0, "ranks' graphs hold collectives in different orders", _C + "tp_mlp:bad_order", "GSD028",
            "mismatch", _C + "tp_mlp:good_two_collectives", ranks=2),
]
