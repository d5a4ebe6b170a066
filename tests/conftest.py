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
