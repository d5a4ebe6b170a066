"""Inputs the quant GPU tests share (imported by test_gpu_quant.py, test_gpu_mma_gemv.py and
test_gpu_mma_planes.py; needs torch and a CUDA device at call time)."""
from __future__ import annotations

import torch


def randn_cuda(m, n, dtype=torch.float16, seed=0, scale=3.0):
    """A reproducible (m, n) normal sample times ``scale`` on the GPU, one stream per (seed, m, n)."""
    g = torch.Generator(device="cuda").manual_seed(seed * 7919 + m * 31 + n)
    return (torch.randn(m, n, device="cuda", generator=g) * scale).to(dtype)


def strided_weights(n, k, dtype=torch.float16, seed=3, scale=0.1):
    """INT4 weights for ``n`` outputs and ``k`` inputs packed by ``quant.pack_int4_weights``, as a view
    whose row stride is 16 bytes wider than its rows (a slice of a bigger buffer): (that view, the
    packed weights, their scales)."""
    from graphsafe import quant
    packed, w_scale = quant.pack_int4_weights(randn_cuda(n, k, dtype, seed=seed, scale=scale))
    buf = torch.zeros(n, k // 2 + 16, dtype=torch.uint8, device="cuda")
    buf[:, :k // 2] = packed
    return buf[:, :k // 2], packed, w_scale
