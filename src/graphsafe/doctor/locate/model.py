"""What localization found, as plain data (JSON-friendly, rebuilt by ``Evidence.from_dict``).

A *step* is one operation the target ran, as graphsafe's instrumentation saw it: an aten or custom op
(through a ``TorchDispatchMode``), or an *opaque* call, the user's Python function that entered native
code PyTorch cannot see into (a pybind extension function, a Triton launcher, cuda-python). A *node* is
one node of the captured CUDA graph, attributed to the step whose execution added it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ...diagnostics import Location


@dataclass
class StepInfo:
    index: int
    kind: str                       # "aten" | "custom" | "opaque"
    op: str                         # "aten::mul.Tensor", "graphsafe::quant_linear", "sym_quant_fuse"
    module: str = ""                # "model.layers.3.mlp.down_proj" ("" outside any module)
    location: Location | None = None
    stack: list[Location] = field(default_factory=list)  # user frames, innermost first
    kernels: list[str] = field(default_factory=list)     # kernel nodes it added to the graph


@dataclass
class Divergence:
    """The first step (in execution order) whose output differs between replay and eager."""

    step: StepInfo
    output: int                     # which output of the step (mutated arguments count as outputs)
    shape: list[int]
    dtype: str
    max_abs: float
    max_rel: float
    mismatched: int
    numel: int
    seed: int                       # the verification input it was found on
    steps_compared: int = 0
    inputs_agree: bool | None = None  # its tensor inputs agree, so the step itself introduced the error
    replay_equals_capture: bool | None = None  # the replayed value is the one computed at capture
    reason: str = "values"          # "values" differ, or "not-captured": eager ran a step the capture did not


@dataclass
class GraphNodeInfo:
    """One node of a captured graph (child-graph and conditional bodies are flattened, with ``parent``)."""

    id: int
    kind: str                       # kernel, memcpy, memset, host, graph, empty, event_record, event_wait,
    #                                 mem_alloc, mem_free, conditional, ..., or "unknown(N)"
    name: str = ""                  # demangled kernel name, or a description
    deps: list[int] = field(default_factory=list)
    parent: int | None = None       # the child-graph / conditional node whose body holds it
    grid: list[int] | None = None
    block: list[int] | None = None
    smem: int | None = None
    step: int | None = None         # the step that added it (None: unattributed)
    instrumentation: bool = False   # added by graphsafe's own snapshots
    reads: list[list[int]] = field(default_factory=list)   # [start, end) device byte ranges
    writes: list[list[int]] = field(default_factory=list)
    may_write: list[list[int]] = field(default_factory=list)  # written or not: nothing says which
    note: str = ""


@dataclass
class CensusDiff:
    """The graph's kernels against the kernels eager ran on one input (same order expected)."""

    eager_kernels: int = 0
    graph_kernels: int = 0
    missing: list[str] = field(default_factory=list)      # eager ran them, the graph lacks them
    extra: list[str] = field(default_factory=list)        # in the graph, eager did not run them
    reordered: list[str] = field(default_factory=list)
    config: list[str] = field(default_factory=list)       # same kernel, other grid/block: "k: eager .. graph .."
    node_kinds: dict[str, int] = field(default_factory=dict)
    streams: int = 0                                      # distinct streams eager used
    eager: list[str] = field(default_factory=list)        # short names, in order (for the picture)
    missing_at: list[int] = field(default_factory=list)   # indices into ``eager`` of the missing ones


@dataclass
class FrozenArg:
    """A kernel argument whose value differs between two captures: it was baked in at capture."""

    kernel: str
    node: int
    param: int
    name: str | None
    offset: int
    size: int
    value_a: str
    value_b: str
    step: StepInfo | None = None


@dataclass
class GraphRace:
    """Two graph nodes with no path between them that touch overlapping memory, one writing."""

    a: int
    b: int
    a_name: str
    b_name: str
    a_step: StepInfo | None
    b_step: StepInfo | None
    start: int
    end: int
    access: str                     # "write/write" | "write/read" | "may-write/read" ...
    tensor: str = ""


@dataclass
class Localization:
    divergence: Divergence | None = None
    no_divergence: str | None = None      # why no first divergent step was named
    census: CensusDiff | None = None
    frozen: list[FrozenArg] = field(default_factory=list)
    races: list[GraphRace] = field(default_factory=list)
    nodes: int = 0
    steps: int = 0
    html: str | None = None
    repro: str | None = None
    errors: list[str] = field(default_factory=list)       # parts that could not run, and why
    timings: dict[str, float] = field(default_factory=dict)
