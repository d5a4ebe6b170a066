"""``GraphRunner``: the seed's ``ModelRunner`` done right.

One CUDA graph per batch bucket, captured largest first into one shared memory pool after a warm-up on the
capture stream. A call copies its inputs into the bucket's static buffers (a smaller batch is padded to the
next bucket; the padding rows keep whatever valid rows they held), replays, and returns the outputs sliced
back to the call's batch, copied by default. Batches above the largest bucket, and buckets whose capture
failed, run eagerly, with the reason logged once. ``verify=True`` compares the first replay of each bucket
with an eager run on the same inputs and, on a mismatch, raises the doctor's diagnosis.

Arguments: every tensor with at least one dimension is batched along dimension 0 (all with the same batch
size), except those of the arguments named in ``static=`` (positions or keyword names, e.g. a decode step's
``cache_position``), which are copied in whole like 0-dimensional tensors; other values (ints, flags, None)
are frozen into the graph at capture, so a call that passes a different value is refused instead of silently
replaying the old one. Nested lists, tuples and dicts are flattened with torch's pytree.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
from torch.utils import _pytree as pytree

from ..diagnostics import Finding

log = logging.getLogger("graphsafe.runner")
DEFAULT_BATCH_SIZES = (1, 2, 4, 8, 16, 32)


class GraphMismatchError(RuntimeError):
    """``verify=True``: a bucket's first replay differed from eager. ``report`` is the doctor's report."""

    def __init__(self, message: str, report=None):
        super().__init__(message)
        self.report = report


@dataclass
class _Leaf:
    kind: str                  # "batched" | "static" | "value"
    dtype: torch.dtype | None = None
    device: torch.device | None = None
    shape: tuple = ()          # without the batch dimension for "batched"
    value: Any = None          # "value": what was frozen into the graph


@dataclass
class Bucket:
    size: int
    graph: torch.cuda.CUDAGraph | None = None
    inputs: list = field(default_factory=list)   # static buffers, one per leaf (None for values)
    output: Any = None                           # the graph's output tree
    failure: Finding | None = None               # why this bucket runs eagerly
    verified: bool = False


class GraphRunner:
    """Replay ``model`` from CUDA graphs, one per batch bucket.

    Parameters
    ----------
    model : callable
        An ``nn.Module`` or function of tensors; its outputs may be any pytree of tensors.
    batch_sizes : sequence of int
        The buckets to capture; a call is padded to the smallest bucket that holds it.
    copy_outputs : bool
        Return copies (default). ``False`` returns views of the graph's static outputs: no copy, but the
        next call of the same bucket overwrites them.
    verify : bool
        Compare each bucket's first replay with eager and raise :class:`GraphMismatchError` with the
        doctor's diagnosis on a mismatch.
    warmup : int
        Eager calls per bucket on the capture stream before its capture (autotuners, lazy init, workspaces).
    static : iterable of int or str
        Arguments (positions or keyword names) whose tensors have no batch dimension: copied in whole.
    """

    def __init__(self, model: Callable[..., Any], batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES, *,
                 copy_outputs: bool = True, verify: bool = False, warmup: int = 2, rtol: float | None = None,
                 atol: float | None = None, name: str | None = None, static=()) -> None:
        if not callable(model):
            raise TypeError(f"model must be callable, got {type(model).__name__}")
        sizes = sorted({int(b) for b in batch_sizes}) if batch_sizes is not None else []
        if not sizes or any(b < 1 for b in sizes) or any(isinstance(b, bool) for b in batch_sizes):
            raise ValueError(f"batch_sizes must be positive integers, got {list(batch_sizes or [])}")
        if warmup < 1:
            raise ValueError(f"warmup must be at least 1 (a capture needs a warmed-up model), got {warmup}")
        self.model, self.batch_sizes = model, tuple(sizes)
        self.copy_outputs, self.verify, self.warmup, self.rtol, self.atol = copy_outputs, verify, warmup, rtol, atol
        self.name = name or getattr(model, "__qualname__", None) or type(model).__name__
        self.static = frozenset(static)
        self.buckets: dict[int, Bucket] = {}
        self.stats = {"replays": 0, "eager": 0}
        self._spec = None
        self._leaves: list[_Leaf] = []
        self._device: torch.device | None = None
        self._told: set = set()
        self._pool = None
        self._stream: torch.cuda.Stream | None = None

    # -- capture -----------------------------------------------------------------------------------------
    @property
    def captured(self) -> bool:
        return self._spec is not None

    def capture(self, *args, **kwargs) -> GraphRunner:
        """Capture every bucket, with these arguments (any batch size) as the example of what calls pass."""
        if self.captured:
            raise RuntimeError("this GraphRunner has captured already; make a new one for other inputs")
        flat, spec = pytree.tree_flatten((args, kwargs))
        owners = [i for i, a in enumerate(args) for _ in pytree.tree_leaves(a)] + \
            [k for k, v in kwargs.items() for _ in pytree.tree_leaves(v)]
        leaves = [_describe(x, owner in self.static) for x, owner in zip(flat, owners)]
        batch = _batch_of(flat, leaves)
        for i, (x, leaf) in enumerate(zip(flat, leaves)):
            if leaf.kind == "value":
                continue
            if not x.is_cuda:
                raise ValueError(f"argument leaf {i} is on {x.device}; GraphRunner inputs must be CUDA tensors"
                                 + ("" if torch.cuda.is_available() else " (and torch.cuda.is_available() is False)"))
            if self._device is not None and x.device != self._device:
                raise ValueError(f"argument leaf {i} is on {x.device}, others on {self._device}")
            self._device = x.device
        self._spec, self._leaves = spec, leaves
        self._pool = torch.cuda.graph_pool_handle()
        self._stream = torch.cuda.Stream(self._device)
        log.debug("capturing %s for batch sizes %s (example batch %d)", self.name, self.batch_sizes, batch)
        for size in reversed(self.batch_sizes):  # largest first: smaller graphs reuse its pool's blocks
            self.buckets[size] = self._capture_bucket(size, flat, batch)
        return self

    def _capture_bucket(self, size: int, flat: list, batch: int) -> Bucket:
        bucket = Bucket(size)
        for x, leaf in zip(flat, self._leaves):
            if leaf.kind == "batched":
                rows = torch.arange(size, device=x.device) % batch  # valid rows, cycled
                bucket.inputs.append(x.index_select(0, rows).contiguous())
            elif leaf.kind == "static":
                bucket.inputs.append(x.clone())
            else:
                bucket.inputs.append(None)
        args, kwargs = self._tree(bucket)
        stream = self._stream
        try:
            stream.wait_stream(torch.cuda.current_stream(self._device))
            with torch.cuda.stream(stream):
                for _ in range(self.warmup):
                    self.model(*args, **kwargs)
            torch.cuda.current_stream(self._device).wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=self._pool, stream=stream):
                bucket.output = self.model(*args, **kwargs)
            bucket.graph = graph
        except Exception as exc:  # noqa: BLE001 - diagnosed and reported; the bucket runs eagerly
            from .sentinel import CaptureViolationError

            if isinstance(exc, CaptureViolationError):
                raise  # a strict sentinel asked for the program to stop here
            from ..doctor.check import failure_finding

            _, bucket.failure = failure_finding("capture", exc, f"{self.name} at batch {size}")
            bucket.graph, bucket.output = None, None
            self._recover()
            from ..doctor.render import finding_text

            log.warning("GraphRunner: the capture of %s at batch %d failed; that bucket runs eagerly.\n%s",
                        self.name, size, finding_text(bucket.failure))
        return bucket

    def _recover(self) -> None:
        """After a failed capture: stop routing this stream's allocations to the shared pool (capture_end did
        not get that far), put the RNG back out of capture mode, and give later buckets a fresh pool."""
        from ..doctor.check import _recover_from_failed_capture

        end = getattr(torch._C, "_cuda_endAllocateToPool", None)
        if end is not None:
            try:
                end(self._device.index if self._device.index is not None else torch.cuda.current_device(), self._pool)
            except RuntimeError as exc:
                log.debug("endAllocateToPool after a failed capture: %s", exc)
        _recover_from_failed_capture(self._device)
        self._pool = torch.cuda.graph_pool_handle()

    def _tree(self, bucket: Bucket):
        flat = [buf if leaf.kind != "value" else leaf.value for buf, leaf in zip(bucket.inputs, self._leaves)]
        return pytree.tree_unflatten(flat, self._spec)

    # -- calls ---------------------------------------------------------------------------------------------
    def __call__(self, *args, **kwargs) -> Any:
        flat, spec = pytree.tree_flatten((args, kwargs))
        if not self.captured:
            self.capture(*args, **kwargs)
        self._check(flat, spec)
        batch = _batch_of(flat, self._leaves)
        size = next((b for b in self.batch_sizes if b >= batch), None)
        if size is None:
            return self._eager("above", f"batch {batch} is above the largest captured batch size "
                                        f"{self.batch_sizes[-1]} (logged once)", args, kwargs)
        bucket = self.buckets[size]
        if bucket.graph is None:
            return self._eager(size, f"the capture for batch size {size} failed ({bucket.failure.code}: "
                                     f"{bucket.failure.message})", args, kwargs)
        for x, buf, leaf in zip(flat, bucket.inputs, self._leaves):
            if leaf.kind == "batched":
                buf[:batch].copy_(x, non_blocking=True)
            elif leaf.kind == "static":
                buf.copy_(x, non_blocking=True)
        if self.verify and not bucket.verified:
            self._verify(bucket)
        else:
            bucket.graph.replay()
        self.stats["replays"] += 1
        return self._slice(bucket, batch)

    def _check(self, flat: list, spec) -> None:
        if spec != self._spec:
            raise TypeError(f"{self.name}: the arguments' structure differs from the captured one "
                            f"({pytree.tree_unflatten(['*'] * len(flat), spec)!r} vs "
                            f"{pytree.tree_unflatten(['*'] * len(self._leaves), self._spec)!r})")
        for i, (x, leaf) in enumerate(zip(flat, self._leaves)):
            if leaf.kind == "value":
                if isinstance(x, torch.Tensor) or not _same_value(x, leaf.value):
                    raise ValueError(f"{self.name}: argument leaf {i} is {x!r} but {leaf.value!r} was frozen into "
                                     "the graphs at capture; pass values that change as tensors")
                continue
            if not isinstance(x, torch.Tensor):
                raise TypeError(f"{self.name}: argument leaf {i} must be a tensor (as at capture), got "
                                f"{type(x).__name__}")
            if x.device != leaf.device:
                raise ValueError(f"{self.name}: argument leaf {i} is on {x.device}; the graphs read {leaf.device}")
            if x.dtype != leaf.dtype:
                raise TypeError(f"{self.name}: argument leaf {i} has dtype {x.dtype}; captured with {leaf.dtype}")
            want = leaf.shape if leaf.kind == "static" else ("batch", *leaf.shape)
            got = tuple(x.shape) if leaf.kind == "static" else ("batch", *x.shape[1:])
            if x.dim() != len(want) or got != want:
                raise ValueError(f"{self.name}: argument leaf {i} has shape {tuple(x.shape)}; captured with "
                                 f"{tuple(want)}")

    def _eager(self, key, reason: str, args, kwargs) -> Any:
        if key not in self._told:
            self._told.add(key)
            log.warning("GraphRunner(%s): running eagerly: %s", self.name, reason)
        self.stats["eager"] += 1
        return self.model(*args, **kwargs)

    def _slice(self, bucket: Bucket, batch: int) -> Any:
        def cut(t):
            if not isinstance(t, torch.Tensor):
                return t
            view = t[:batch] if t.dim() and t.shape[0] == bucket.size else t
            return view.clone() if self.copy_outputs else view

        return pytree.tree_map(cut, bucket.output)

    # -- verification ----------------------------------------------------------------------------------------
    def _eager_on(self, bucket: Bucket) -> Any:
        from ..doctor.compare import clone_tree

        args, kwargs = self._tree(bucket)
        self._stream.wait_stream(torch.cuda.current_stream(self._device))  # after the input copies
        with torch.cuda.stream(self._stream):
            out = clone_tree(self.model(*args, **kwargs))
        torch.cuda.current_stream(self._device).wait_stream(self._stream)
        return out

    def _verify(self, bucket: Bucket) -> None:
        """Replay vs eager on an input drawn like the call's (a graph that ignores its input can still match on
        the capture input itself, which the first call usually is), then on the call's input, which leaves the
        call's result in the static outputs."""
        call = [buf.clone() if buf is not None else None for buf in bucket.inputs]
        gen = torch.Generator(device=self._device).manual_seed(20261125)
        for buf, leaf in zip(bucket.inputs, self._leaves):
            if leaf.kind != "value":
                buf.copy_(_draw_like(buf, gen))
        self._compare(bucket, "an input drawn like the call's")
        for buf, saved in zip(bucket.inputs, call):
            if saved is not None:
                buf.copy_(saved)
        self._compare(bucket, "the call's input")
        bucket.verified = True

    def _compare(self, bucket: Bucket, what: str) -> None:
        from ..doctor.compare import all_close

        expected = self._eager_on(bucket)
        bucket.graph.replay()
        torch.cuda.synchronize(self._device)
        if all_close(bucket.output, expected, self.rtol, self.atol):
            return
        report = self._diagnose(bucket)
        from ..doctor.render import report_text

        buf = report_text(report) if report is not None else ""
        raise GraphMismatchError(f"GraphRunner({self.name}): the first replay at batch {bucket.size} differs from "
                                 f"eager on {what}.\n{buf}", report)

    def _diagnose(self, bucket: Bucket):
        """The doctor's check of the model at this bucket, on inputs drawn like the call's."""
        from ..doctor.check import check
        from ..doctor.target import Target

        like, leaves, spec, model = list(bucket.inputs), self._leaves, self._spec, self.model
        args0, kwargs0 = pytree.tree_unflatten(list(like), spec)
        mixed = bool(args0) and bool(kwargs0)

        def make_inputs(seed: int):
            gen = torch.Generator(device=self._device).manual_seed(1000 + seed)
            out = [_draw_like(buf, gen) if leaf.kind != "value" else leaf.value for buf, leaf in zip(like, leaves)]
            args, kwargs = pytree.tree_unflatten(out, spec)
            return ((tuple(args), kwargs),) if mixed else (kwargs if kwargs else tuple(args))

        def both(call):  # positional and keyword arguments together, as one argument
            return model(*call[0], **call[1])

        fn = both if mixed else model
        try:
            return check(Target(fn, make_inputs, name=f"{self.name} at batch {bucket.size}"))
        except Exception as exc:  # noqa: BLE001 - the mismatch is still raised, with why there is no diagnosis
            log.warning("GraphRunner: the doctor could not check %s: %s", self.name, exc)
            return None


# -- helpers ----------------------------------------------------------------------------------------------
def _describe(x: Any, static: bool) -> _Leaf:
    if isinstance(x, torch.Tensor):
        if x.dim() == 0 or static:
            return _Leaf("static", x.dtype, x.device, tuple(x.shape))
        return _Leaf("batched", x.dtype, x.device, tuple(x.shape[1:]))
    return _Leaf("value", value=x)


def _batch_of(flat: list, leaves: list[_Leaf]) -> int:
    sizes = {x.shape[0] for x, leaf in zip(flat, leaves) if leaf.kind == "batched" and isinstance(x, torch.Tensor)}
    if not sizes:
        raise ValueError("GraphRunner needs at least one tensor argument with a batch dimension (dimension 0)")
    if len(sizes) > 1:
        raise ValueError(f"the batched arguments disagree on the batch size (dimension 0): {sorted(sizes)}; name "
                         "the arguments without a batch dimension in GraphRunner(..., static=...)")
    batch = sizes.pop()
    if batch == 0:
        raise ValueError("batch size 0: there is nothing to run (GraphRunner needs at least one row)")
    return batch


def _same_value(a: Any, b: Any) -> bool:
    try:
        return type(a) is type(b) and bool(a == b)
    except Exception:  # noqa: BLE001 - values that cannot be compared are not the same
        return a is b


def _draw_like(t: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    if t.dtype == torch.bool:
        return torch.rand(t.shape, generator=gen, device=t.device) < 0.5
    if t.is_floating_point():
        std = float(t.float().std()) if t.numel() > 1 else 1.0
        mean = float(t.float().mean())
        return (torch.randn(t.shape, generator=gen, device=t.device) * (std or 1.0) + mean).to(t.dtype)
    lo, hi = int(t.min()), int(t.max())
    return torch.randint(lo, hi + 1, t.shape, generator=gen, device=t.device, dtype=t.dtype)
