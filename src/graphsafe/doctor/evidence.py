"""What a check observed, as plain data: recorded on a GPU, classified anywhere (also in CPU tests).

Every field is JSON-friendly; ``Evidence.from_dict`` rebuilds the nested dataclasses from their type
hints, so a report written on a GPU machine classifies the same way on a laptop.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from ..diagnostics import Location
from .locate.model import Localization
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
    # padded inputs (a smaller leading dimension than the capture input, padded like a bucketed runner)
    padded_from: int | None = None    # the real leading dimension; the graph ran the captured one
    close_to_eager_padded: bool | None = None  # replay vs eager on the padded input
    bitwise_equal_to_eager_padded: bool | None = None
    noise_floor: float | None = None  # a few units in the last place of the largest eager value
    # replay vs eager with the capture-time host values (Python scalars, CPU tensors, attributes)
    close_to_eager_capture_host: bool | None = None


@dataclass
class OutputEvidence:
    index: int
    shape: list[int]
    dtype: str
    comparisons: list[Comparison] = field(default_factory=list)
    replays_identical: bool | None = None  # every replay gave the same bytes, whatever the input


@dataclass
class Failure:
    """An exception raised by the target (eagerly, in make_inputs, or during capture)."""

    phase: str                 # "setup" | "make_inputs" | "eager" | "capture" | "replay" | "process"
    exc_type: str
    message: str
    location: Location | None = None
    stack: list[Location] = field(default_factory=list)
    cuda_error: int | None = None     # 900-908 when CUDA rejected a capture; 700/710/... for faults
    last_entered: str | None = None   # last op entered before the failure
    last_entered_at: Location | None = None
    cuda_usable_after: bool | None = None
    timed_out_after_s: float | None = None  # the call did not finish within this bound


@dataclass
class HostValue:
    """A host-side value the graph cannot see change: a non-tensor argument, a CPU tensor argument, or
    a Python attribute of the target's objects set between steps."""

    path: str                      # "temperature", "args[1]", "model.scale"
    kind: str                      # "argument" | "cpu_tensor" | "attribute"
    capture_value: str
    values: dict[str, str] = field(default_factory=dict)  # seed -> value, where it differs


@dataclass
class AttrChange:
    """A Python-visible attribute that an eager call changed (the graph never runs Python)."""

    path: str
    before: str
    after: str
    writes: list[Location] = field(default_factory=list)  # where the code assigns it


@dataclass
class TensorState:
    """A persistent tensor (parameter, buffer, tensor attribute) that an eager call changed."""

    path: str
    role: str                  # "parameter" | "buffer" | "attribute" | "input"
    change: str                # "mutated" | "rebound"
    pattern: str = "changes"   # "accumulates" | "compounds" | "changes" (from three calls)
    detail: str = ""
    writes: list[Location] = field(default_factory=list)


@dataclass
class Rebinding:
    """A tensor attribute that points to different memory now than when the graph was captured."""

    path: str
    at_capture: str
    now: str
    writes: list[Location] = field(default_factory=list)


@dataclass
class Race:
    """Two accesses to one tensor on different streams with no event between them (CUDA Sanitizer)."""

    tensor: str
    access: str
    stream: int
    previous: str
    previous_stream: int
    location: Location | None = None
    previous_location: Location | None = None


@dataclass
class Census:
    """GPU kernels that eager ran and that the graph ran, on the same verification input."""

    seed: int
    eager: list[str] = field(default_factory=list)
    graph: list[str] = field(default_factory=list)
    eager_only: list[str] = field(default_factory=list)
    graph_only: list[str] = field(default_factory=list)

    @property
    def differs(self) -> bool:
        return bool(self.eager_only or self.graph_only)


@dataclass
class Overwrite:
    """A tensor the target returned changed when a later call ran."""

    output: int
    call: int                 # the earlier call whose output changed
    by_call: int              # the call that changed it
    same_buffer: bool         # the later call returned the same memory
    max_abs: float


@dataclass
class Probes:
    """Behavioural probes beyond replay-vs-eager; ``None`` means the probe did not run."""

    eager_calls_differ: bool | None = None       # eager twice on one input (after the first call)
    replay_drift: float | None = None            # max abs change between two replays on one input
    replay_drift_output: int | None = None
    uninitialized: dict[str, Any] | None = None  # {"outputs": [...], "nonfinite": n} when poisoning moved them
    rng_eager_sensitive: bool | None = None      # eager output moves with the RNG seed
    rng_replay_sensitive: bool | None = None     # replay output moves with the RNG seed
    rng_replay_matches_eager: bool | None = None
    input_compounds: bool | None = None          # replay writes its static input and compounds on it
    graph_backed: bool = False                   # the target replays CUDA graphs itself
    errors: list[str] = field(default_factory=list)  # probes that could not run, and why


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
    host_values: list[HostValue] = field(default_factory=list)
    side_effects: list[AttrChange] = field(default_factory=list)
    tensor_state: list[TensorState] = field(default_factory=list)
    rebound: list[Rebinding] = field(default_factory=list)
    races: list[Race] = field(default_factory=list)
    census: Census | None = None
    overwrites: list[Overwrite] = field(default_factory=list)
    probes: Probes = field(default_factory=Probes)
    locate: Localization | None = None  # after the verdict: where replay and eager part (never changes it)
    graph_kernels: list[str] | None = None  # the captured kernel nodes, read before any replay (under torchrun)
    last_step: str | None = None  # the last eager call, capture or replay that finished (what a hang followed)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Evidence:
        return _build(cls, d)


_NONFINITE = {"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf")}  # how strict JSON carries them


def _build(tp: Any, value: Any, path: str = "evidence") -> Any:
    """Rebuild a value of type ``tp`` (dataclasses, lists, dicts, optionals) from ``asdict`` output; a value
    that does not fit its type raises ``ValueError`` naming where it is (``evidence.outputs[0].comparisons``)."""
    origin = typing.get_origin(tp)
    if value is None:
        if tp is Any or (origin in (typing.Union, types.UnionType) and type(None) in typing.get_args(tp)):
            return None
        raise ValueError(f"{path}: null where {_name(tp)} is expected")
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        return _build(inner[0], value, path) if len(inner) == 1 else value
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ValueError(f"{path}: expected a list, got {_kind(value)}")
        return [_build(item, v, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        _, item = typing.get_args(tp)
        if not isinstance(value, dict):
            raise ValueError(f"{path}: expected an object, got {_kind(value)}")
        return {k: _build(item, v, f"{path}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ValueError(f"{path}: expected an object ({tp.__name__}), got {_kind(value)}")
        hints = typing.get_type_hints(tp)
        fields = dataclasses.fields(tp)
        missing = [f.name for f in fields if f.name not in value and f.default is dataclasses.MISSING
                   and f.default_factory is dataclasses.MISSING]
        if missing:
            raise ValueError(f"{path}: missing {', '.join(map(repr, missing))}")
        return tp(**{f.name: _build(hints[f.name], value[f.name], f"{path}.{f.name}") for f in fields
                     if f.name in value})
    return _leaf(tp, value, path)


def _leaf(tp: Any, value: Any, path: str) -> Any:
    if tp is float:
        if isinstance(value, str) and value in _NONFINITE:
            return _NONFINITE[value]
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return float(value) if ok else _wrong(tp, value, path)
    if tp is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else _wrong(tp, value, path)
    if tp in (bool, str):
        return value if isinstance(value, tp) else _wrong(tp, value, path)
    return value


def _wrong(tp: Any, value: Any, path: str) -> Any:
    raise ValueError(f"{path}: expected {_name(tp)}, got {_kind(value)} {value!r:.60}")


def _name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp)


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(type(value), type(value).__name__)
