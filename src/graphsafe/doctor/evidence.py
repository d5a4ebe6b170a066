"""What a check observed, as plain data: recorded on a GPU, classified anywhere (also in CPU tests)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..diagnostics import Location
from .trace import EscapedOp


@dataclass
class Comparison:
    """Replay vs eager for one output on one verification input."""

    seed: int
    max_abs: float
    max_rel: float
    mismatched: int
    numel: int
    close: bool
    bitwise_equal: bool
    replay_equals_capture_time: bool  # replay output is byte-identical to the capture-time output
    eager_moved: bool                 # eager output differs from eager on the capture input


@dataclass
class OutputEvidence:
    index: int
    shape: list[int]
    dtype: str
    comparisons: list[Comparison] = field(default_factory=list)


@dataclass
class Failure:
    """An exception raised by the target (eagerly, in make_inputs, or during capture)."""

    phase: str                 # "make_inputs" | "eager" | "capture" | "replay" | "process"
    exc_type: str
    message: str
    location: Location | None = None
    stack: list[Location] = field(default_factory=list)
    cuda_error: int | None = None     # 900-908 when CUDA rejected a capture
    last_entered: str | None = None   # last op entered before the failure
    last_entered_at: Location | None = None
    cuda_usable_after: bool | None = None


@dataclass
class Evidence:
    target: str
    capture_seed: int = 0
    seeds: list[int] = field(default_factory=list)
    outputs: list[OutputEvidence] = field(default_factory=list)
    escaped: list[EscapedOp] = field(default_factory=list)
    stream_ids: dict[str, int] = field(default_factory=dict)
    trace_error: str | None = None
    launches_in_window: int = 0
    capture_warnings: list[str] = field(default_factory=list)  # what PyTorch warned at capture
    failure: Failure | None = None
    indistinct_seeds: list[int] = field(default_factory=list)
    eager_unstable: bool = False
    no_cuda: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Evidence:
        d = dict(d)
        d["outputs"] = [OutputEvidence(**{**o, "comparisons": [Comparison(**c) for c in o["comparisons"]]})
                        for o in d.get("outputs", [])]
        d["escaped"] = [EscapedOp.from_dict(e) for e in d.get("escaped", [])]
        f = d.get("failure")
        if f is not None:
            f = dict(f)
            f["location"] = Location.from_dict(f.get("location"))
            f["last_entered_at"] = Location.from_dict(f.get("last_entered_at"))
            f["stack"] = [Location(**s) for s in f.get("stack", [])]
            d["failure"] = Failure(**f)
        return cls(**d)
