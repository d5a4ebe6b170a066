"""Static rules for CUDA C++/C++ (tree-sitter) and Python (ast).

Today: the CUDA parser and the kernel-launch finder (:mod:`graphsafe.lint.cuda`) that the demo uses
to point at the seed's launch. The rule set, ``graphsafe lint`` and SARIF output arrive with issue 3.
"""
