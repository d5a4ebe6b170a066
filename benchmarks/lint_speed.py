"""Lines per second of `graphsafe lint` on a large C++/CUDA tree, on one core (goal: >= 50,000).

    python benchmarks/lint_speed.py [PATH]      # default: the headers shipped inside the installed torch

Prints one table: files, lines, seconds, lines/s, and the findings by code.
"""
from __future__ import annotations

import collections
import sys
import time
from pathlib import Path


def main() -> None:
    if len(sys.argv) > 1:
        root = Path(sys.argv[1])
    else:
        import torch
        root = Path(torch.__file__).parent / "include"
    from graphsafe.lint.engine import LintConfig, lint_paths

    t = time.perf_counter()
    result = lint_paths([str(root)], LintConfig())
    dt = time.perf_counter() - t
    counts = collections.Counter(f.code for f in result.findings)
    print(f"tree: {root}")
    print(f"{'files':>7} {'lines':>9} {'seconds':>8} {'lines/s':>9}")
    print(f"{result.files:>7} {result.lines:>9} {dt:>8.2f} {result.lines / dt:>9,.0f}")
    print("findings: " + (", ".join(f"{c} {n}" for c, n in sorted(counts.items())) or "none"))


if __name__ == "__main__":
    main()
