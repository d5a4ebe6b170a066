"""Targets for the CLI tests (imported by module name in child processes)."""
import os

from graphsafe.doctor.target import target_factory

not_callable = 42


def plain(x):
    return x


@target_factory
def crash():
    os.abort()  # the child dies by SIGABRT while building the target


def inputs(seed):
    import torch

    return (torch.full((2, 2), float(seed)),)
