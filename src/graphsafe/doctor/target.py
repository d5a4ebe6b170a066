"""What the doctor checks: a callable and a ``make_inputs(seed)`` that returns its arguments."""
from __future__ import annotations

import importlib
import importlib.util
import inspect
from dataclasses import dataclass
from typing import Any, Callable

from ..diagnostics import Location


class TargetError(ValueError):
    """A target spec that cannot be resolved into something checkable."""


class ImportFailed(TargetError):
    """The target's module exists but raised while importing (``__cause__``: what it raised)."""


@dataclass
class Target:
    """What to check.

    ``fn(*make_inputs(seed))`` is one step of the program. Optional parts describe the program around it:

    * ``prepare(seed)``: host-side work the program does before each step, outside the captured region
      (reload weights, set a temperature, reset statistics). The doctor calls it before every eager
      call and before every replay, as a runner's loop would.
    * ``reference``: an eager oracle for a target that replays CUDA graphs itself (a runner): its
      outputs are compared with the target's.
    * ``state``: extra objects whose attributes the doctor should watch (named), beyond the ones it
      finds through ``self``, closures and the globals the code names.
    """

    fn: Callable[..., Any]
    make_inputs: Callable[[int], Any]
    name: str = ""
    prepare: Callable[[int], Any] | None = None
    reference: Callable[..., Any] | None = None
    state: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if not callable(self.fn):
            raise TargetError(f"the target is not callable: {self.fn!r}")
        if not callable(self.make_inputs):
            raise TargetError(f"make_inputs is not callable: {self.make_inputs!r}")
        for part in ("prepare", "reference"):
            if getattr(self, part) is not None and not callable(getattr(self, part)):
                raise TargetError(f"{part} is not callable: {getattr(self, part)!r}")
        if not self.name:
            self.name = getattr(self.fn, "__qualname__", None) or type(self.fn).__name__


def target_factory(fn: Callable[[], Target]) -> Callable[[], Target]:
    """Marks a zero-argument function that builds a Target, so ``graphsafe check MOD:NAME`` calls it."""
    fn.__graphsafe_target_factory__ = True  # type: ignore[attr-defined]
    return fn


def split_call_args(inputs: Any) -> tuple[tuple, dict]:
    """``make_inputs`` may return a tuple/list (positional), a dict (keywords), or one argument."""
    if isinstance(inputs, dict):
        return (), inputs
    if isinstance(inputs, (tuple, list)) and not hasattr(inputs, "_fields"):
        return tuple(inputs), {}
    return (inputs,), {}


def call(fn: Callable[..., Any], inputs: Any) -> Any:
    args, kwargs = split_call_args(inputs)
    return fn(*args, **kwargs)


def resolve_object(spec: str) -> Any:
    mod_name, sep, attr = spec.partition(":")
    if not sep or not mod_name or not attr:
        raise TargetError(f"expected MODULE:NAME (e.g. graphsafe.cases.seed:buggy), got {spec!r}")
    try:
        obj: Any = importlib.import_module(mod_name)
    except ModuleNotFoundError as exc:
        raise TargetError(f"cannot import module {mod_name!r}: {exc}") from None
    except Exception as exc:  # the module itself fails: a syntax error, or its import-time code raises
        raise ImportFailed(f"cannot import module {mod_name!r}: importing it raised {type(exc).__name__}: {exc}"
                           f"{_where(exc, mod_name)}") from exc
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise TargetError(f"module {mod_name!r} has no attribute {attr!r}") from None
    return obj


def _where(exc: BaseException, mod_name: str) -> str:
    """`` (at FILE:LINE)``: the line of the target's module that raised (the last frame in it, not inside the
    library it called), else the innermost frame; nothing for a SyntaxError, whose message has it."""
    if isinstance(exc, SyntaxError):
        return ""
    try:
        spec = importlib.util.find_spec(mod_name)
        origin = spec.origin if spec is not None else None
    except (ImportError, ValueError):
        origin = None
    frames, tb = [], exc.__traceback__
    while tb is not None:
        frames.append((tb.tb_frame.f_code.co_filename, tb.tb_lineno))
        tb = tb.tb_next
    own = [f for f in frames if origin and f[0] == origin]
    where = (own or frames)[-1] if frames else None
    return f" (at {where[0]}:{where[1]})" if where else ""


def validate_spec(spec: str, inputs_spec: str | None = None) -> None:
    """Raise TargetError for a spec that cannot work, without building anything (no GPU needed)."""
    obj = resolve_object(spec)
    if inputs_spec is not None:
        make_inputs = resolve_object(inputs_spec)
        if not callable(make_inputs):
            raise TargetError(f"--inputs {inputs_spec} is not callable (it is a {type(make_inputs).__name__})")
    if isinstance(obj, Target) or getattr(obj, "__graphsafe_target_factory__", False):
        return
    if not callable(obj):
        raise TargetError(f"{spec} is not callable (it is a {type(obj).__name__})")
    if inputs_spec is None:
        raise TargetError(f"{spec} is a plain callable: say how to build its inputs with "
                          f"--inputs MODULE:FUNC (FUNC(seed) returns the arguments)")


def resolve(spec: str, inputs_spec: str | None = None) -> Target:
    """Resolve ``MODULE:NAME`` (a Target, a target factory, or a callable with ``inputs_spec``)."""
    obj = resolve_object(spec)
    if isinstance(obj, Target):
        target = obj
    elif getattr(obj, "__graphsafe_target_factory__", False):
        target = obj()
        if not isinstance(target, Target):
            raise TargetError(f"{spec} is a target factory but returned {type(target).__name__}, not a Target")
    elif callable(obj):
        if inputs_spec is None:
            raise TargetError(f"{spec} is a plain callable: say how to build its inputs with "
                              f"--inputs MODULE:FUNC (FUNC(seed) returns the arguments)")
        target = Target(obj, resolve_object(inputs_spec), name=spec)
    else:
        raise TargetError(f"{spec} is not callable (it is a {type(obj).__name__})")
    if inputs_spec is not None and target.make_inputs is not resolve_object(inputs_spec):
        target = Target(target.fn, resolve_object(inputs_spec), name=target.name, prepare=target.prepare,
                        reference=target.reference, state=target.state)
    target.name = target.name or spec
    return target


def definition_site(fn: Any) -> Location | None:
    """Where the target's code lives: ``forward`` for modules, the function itself otherwise."""
    code_owner = getattr(fn, "forward", fn)
    try:
        code_owner = inspect.unwrap(code_owner)
        file = inspect.getsourcefile(code_owner)
        _, line = inspect.getsourcelines(code_owner)
    except (TypeError, OSError):
        return None
    return Location(file=file, line=line, function=getattr(code_owner, "__qualname__", None))
