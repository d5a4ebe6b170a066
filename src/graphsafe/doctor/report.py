"""The check's report: verdict, per-output error statistics, findings and the evidence behind them."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..diagnostics import Finding
from .evidence import Evidence

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
        return json.dumps(self.to_dict(), indent=indent, default=_json_default, allow_nan=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Report:
        if d.get("schema") != SCHEMA:
            raise ValueError(f"not a graphsafe check report (schema {d.get('schema')!r}, expected {SCHEMA!r})")
        return cls(
            target=d["target"], verdict=d["verdict"],
            findings=[Finding.from_dict(f) for f in d.get("findings", [])],
            evidence=Evidence.from_dict(d["evidence"]) if d.get("evidence") else None,
            environment=d.get("environment", {}), timings=d.get("timings", {}), ranks=d.get("ranks", []),
        )

    @classmethod
    def from_json(cls, text: str) -> Report:
        return cls.from_dict(json.loads(text))


def _json_default(o: Any) -> Any:
    return str(o)
