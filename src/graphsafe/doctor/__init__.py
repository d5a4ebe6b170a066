"""The doctor: differential eager-vs-replay checks, root-cause classification, reports.

Entry points: :func:`graphsafe.check` (API), ``graphsafe check MODULE:NAME`` and
``graphsafe run SCRIPT`` (CLI). The code table is :mod:`graphsafe.doctor.codes`.
"""
