import os

pytest_plugins = ["gpu_switch", "pytester"]

# Without a GPU, Triton kernels run in Triton's interpreter on CPU tensors (graphsafe.quant's CPU
# tests). The variable must be set before any kernel is defined, i.e. before graphsafe.quant imports.
try:
    import torch

    if not torch.cuda.is_available():
        os.environ.setdefault("TRITON_INTERPRET", "1")
except ImportError:  # no torch: the tests that need it skip themselves
    pass


def pytest_collection_modifyitems(config, items):
    """The capture sentinel's GPU tests run first: CUDA 13's CUPTI takes one subscriber, and once torch.profiler
    has run in the process (every `graphsafe check` traces with it) kineto keeps that place, so a sentinel made
    later can only say that it is not watching (which test_sentinel_says_when_cupti_is_taken checks)."""
    first = [i for i in items if i.path.name == "test_gpu_runner.py"]
    if first:
        rest = [i for i in items if i.path.name != "test_gpu_runner.py"]
        items[:] = first + rest
