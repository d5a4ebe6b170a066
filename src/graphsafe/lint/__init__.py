"""Static rules for code that runs under CUDA graphs: CUDA C++/C++ with tree-sitter-cuda, Python with ``ast``.

``lint_paths(paths, config)`` and ``lint_source(bytes, filename)`` return findings with stable codes
(``graphsafe.lint.codes.RULES``); ``graphsafe lint`` is the command line, with text, JSON and SARIF
output. Rule modules: :mod:`~graphsafe.lint.cpp_rules` (GSC), :mod:`~graphsafe.lint.py_rules` (GSP).
"""
from .engine import LintConfig, LintResult, lint_paths, lint_source, load_config

__all__ = ["LintConfig", "LintResult", "lint_paths", "lint_source", "load_config"]
