"""Targets for the CLI tests (imported by module name in child processes)."""
from graphsafe.doctor.target import target_factory

not_callable = 42


def plain(x):
    return x


def inputs(seed):
    import torch

    return (torch.full((2, 2), float(seed)),)


@target_factory
def raising_factory():
    raise RuntimeError("factory boom")


@target_factory
def wrong_factory():
    return 42
