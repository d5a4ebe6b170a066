"""The check's report: verdict, per-output error statistics, findings and the evidence behind them."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from ..diagnostics import Finding
from .evidence import Evidence, _build

EXIT_STATUS = {"match": 0, "benign": 0, "mismatch": 1, "inconclusive": 2}
SCHEMA = "graphsafe.check/1"


@dataclass
class Report:
    target: str
    verdict: str
    findings: list[Finding] = field(default_factory=list)
    evidence: Evidence | None = None
    environment: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    ranks: list[dict[str, Any]] = field(default_factory=list)  # under torchrun: each rank's verdict, codes, collectives

    @property
    def exit_status(self) -> int:
        return EXIT_STATUS[self.verdict]

    @property
    def codes(self) -> list[str]:
        return [f.code for f in self.findings]

    def output_summary(self) -> list[dict[str, Any]]:
        """Per output: the worst replay-vs-eager error over the verification inputs."""
        out = []
        for o in self.evidence.outputs if self.evidence else []:
            cs = o.comparisons
            out.append({
                "output": o.index, "shape": o.shape, "dtype": o.dtype,
                "max_abs": max((c.max_abs for c in cs), default=0.0),
                "max_rel": max((c.max_rel for c in cs), default=0.0),
                "mismatched_inputs": sum(not c.close for c in cs), "inputs": len(cs),
                "bitwise_equal_inputs": sum(c.bitwise_equal for c in cs),
            })
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "target": self.target,
            "verdict": self.verdict,
            "exit_status": self.exit_status,
            "outputs": self.output_summary(),
            "findings": [f.to_dict() for f in self.findings],
            "environment": self.environment,
            "timings": self.timings,
            "evidence": self.evidence.to_dict() if self.evidence else None,
            **({"ranks": self.ranks} if self.ranks else {}),
        }

    def to_json(self, indent: int | None = 2) -> str:
        """Strict JSON: a NaN or infinite number (a diverging output's error) is written as the string
        ``"nan"``, ``"inf"`` or ``"-inf"``; :meth:`from_json` reads it back as the number where the schema
        has one (the evidence's statistics), and leaves it a string in free-form ``data``."""
        return json.dumps(finite(self.to_dict()), indent=indent, default=_json_default, allow_nan=False)

    @classmethod
    def from_dict(cls, d: Any) -> Report:
        """Rebuild a report; one that is not a graphsafe check report, or does not fit its schema, raises
        ``ValueError`` saying what is wrong where."""
        if not isinstance(d, dict):
            raise ValueError(f"not a graphsafe check report: expected a JSON object, got {type(d).__name__}")
        if d.get("schema") != SCHEMA:
            raise ValueError(f"not a graphsafe check report (schema {d.get('schema')!r}, expected {SCHEMA!r})")
        try:
            for key in ("target", "verdict"):
                if key not in d:
                    raise ValueError(f"missing {key!r}")
            target = _build(str, d.get("target"), "target")
            verdict = _build(str, d.get("verdict"), "verdict")
            if verdict not in EXIT_STATUS:
                raise ValueError(f"verdict: expected one of {', '.join(EXIT_STATUS)}, got {verdict!r}")
            return cls(
                target=target, verdict=verdict,
                findings=_build(list[Finding], d.get("findings", []), "findings"),
                evidence=_build(Evidence | None, d.get("evidence"), "evidence"),
                environment=_build(dict[str, Any], d.get("environment", {}), "environment"),
                timings=_build(dict[str, float], d.get("timings", {}), "timings"),
                ranks=_build(list[dict[str, Any]], d.get("ranks", []), "ranks"),
            )
        except (ValueError, TypeError) as exc:
            raise ValueError(f"malformed graphsafe check report: {exc}") from None

    @classmethod
    def from_json(cls, text: str) -> Report:
        return cls.from_dict(json.loads(text))


def finite(o: Any) -> Any:
    """``o`` with every NaN or infinite float replaced by ``"nan"``, ``"inf"`` or ``"-inf"`` (strict JSON)."""
    if isinstance(o, float) and not math.isfinite(o):
        return "nan" if o != o else ("inf" if o > 0 else "-inf")
    if isinstance(o, dict):
        return {k: finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [finite(v) for v in o]
    return o


def _json_default(o: Any) -> Any:
    return str(o)
