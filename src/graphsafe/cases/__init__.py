"""Bundled cases: the seed (a real user report) and small cases, each a buggy target and its fixed twin.

Every case module exposes ``bad`` and ``good`` targets (``graphsafe check graphsafe.cases.X:bad``).
"""
