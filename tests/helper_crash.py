"""A target module whose import kills the process (SIGABRT), as a faulting extension's load would: the
isolated check must report it (GSD009), with or without a GPU."""
import os

os.abort()


def target():  # never reached
    raise AssertionError("unreachable")
