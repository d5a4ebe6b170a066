"""The tensor-core GEMV for few rows (``graphsafe.quant.mma_gemv``, ``csrc/w4a4_mma.cu``) on a GPU: every
configuration exact against the reference on ragged shapes, strided operands, the launch after the
quantizer with PDL, the largest K and the refusals, and a configuration met for the first time inside a
CUDA graph capture. Its routing and NVRTC compile are checked on the CPU (test_quant_routing_cpu.py)."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.gpu

from graphsafe import quant  # noqa: E402
from graphsafe.quant import ops  # noqa: E402
from graphsafe.quant import reference as ref  # noqa: E402
from quant_gpu_data import randn_cuda as _x, strided_weights  # noqa: E402


def _mma_configs():
    from graphsafe.quant.mma_gemv import MmaConfig
    grid = [MmaConfig(w, t, u, st) for w in (1, 2, 8) for t in (1, 2) for u in (1, 4) for st in (1, 3)]
    grid += [c for c in (MmaConfig(w, t, u, st, 1, True) for w in (1, 8) for t in (1, 2) for u in (1, 4)
                         for st in (1, 4)) if c.ring_bytes(16) <= 160 * 1024]
    return grid + [MmaConfig(w, 1, 2, 2, cl, w == 4) for w in (1, 4, 16) for cl in (2, 4)] + [MmaConfig(16, 2, 2, 2, 8)]


@pytest.mark.parametrize("cfg", _mma_configs(),
                         ids=lambda c: (f"w{c.warps}t{c.tiles}u{c.unroll}s{c.stages}c{c.cluster}"
                                        f"{'smem' if c.smem else ''}"))
@pytest.mark.parametrize("m", [1, 3, 8, 9, 16])
def test_mma_gemv_every_config_is_exact(cfg, m):
    """Ragged N (not a multiple of 16 or 32 rows) and K (not a multiple of any step), both scale
    dtypes, bias, a float32 output; then the exact int32 sums with unit scales."""
    from graphsafe.quant import mma_gemv
    k, n = 32 * 83, 50
    q, s = quant.sym_quant(_x(m, k, torch.bfloat16))
    qw, ws = quant.pack_int4_weights(_x(n, k, seed=1, scale=0.05))
    bias = _x(1, n, seed=2).flatten().float()
    y = torch.full((m, n), float("nan"), device="cuda")
    mma_gemv.mma_into(q, s, qw, ws, bias, y, cfg)
    assert torch.equal(y, ref.w4a4_linear_reference(q, s, qw, ws, bias, torch.float32))
    ones_m, ones_n = torch.ones(m, 1, device="cuda"), torch.ones(n, 1, device="cuda")
    mma_gemv.mma_into(q, ones_m, qw, ones_n, None, y, cfg)
    assert torch.equal(y, ref.int4_matmul_reference(q, qw).to(torch.float32))


@pytest.mark.parametrize("m, k, n", [(1, 32, 1), (16, 32, 17), (5, 64, 3000), (2, 4096 + 32, 4608)])
@pytest.mark.parametrize("out_dtype", [torch.float16, torch.bfloat16])
def test_mma_gemv_shapes_strides_and_pdl(m, k, n, out_dtype):
    """Row strides wider than the rows (slices of bigger buffers, 16-byte multiples), each output
    dtype, and the launch after the quantizer with PDL (what quant_linear does)."""
    from graphsafe.quant import mma_gemv, triton_kernels
    from graphsafe.quant.triton_gemv import pdl_available
    x = _x(m, k, out_dtype)
    qbuf = torch.zeros(m, k // 2 + 48, dtype=torch.uint8, device="cuda")
    q, s = qbuf[:, :k // 2], torch.empty(m, 1, dtype=out_dtype, device="cuda")
    qw, qw_, ws = strided_weights(n, k, out_dtype)
    assert mma_gemv.supports(q, qw)
    y = torch.empty(m, n, dtype=out_dtype, device="cuda")
    pdl = pdl_available(x.device)
    triton_kernels.sym_quant_into(x, 1.0, q, s, trigger=pdl, wait=pdl)
    mma_gemv.mma_into(q, s, qw, ws, None, y, after_quantizer=pdl)
    q_ref, s_ref = ref.sym_quant_reference(x, 1.0)
    assert torch.equal(y, ref.w4a4_linear_reference(q_ref, s_ref, qw_, ws, None, out_dtype))


def test_mma_gemv_largest_k_and_refusals():
    from graphsafe.quant import mma_gemv
    k = ops.MAX_K // 32 * 32
    q = torch.full((16, k // 2), 0x88, dtype=torch.uint8, device="cuda")
    qw = torch.full((3, k // 2), 0x88, dtype=torch.uint8, device="cuda")
    y = torch.empty(16, 3, device="cuda")
    mma_gemv.mma_into(q, torch.ones(16, 1, device="cuda"), qw, torch.ones(3, 1, device="cuda"), None, y)
    assert torch.equal(y, torch.full((16, 3), 64.0 * k, device="cuda"))
    for bad_q in (q[:, :-8], q[:, 8:], torch.zeros(17, 64, dtype=torch.uint8, device="cuda")):
        with pytest.raises(ValueError, match="tensor-core GEMV takes"):
            mma_gemv.mma_into(bad_q, torch.ones(bad_q.shape[0], 1, device="cuda"), qw[:, :bad_q.shape[1]],
                              torch.ones(3, 1, device="cuda"), None, torch.empty(bad_q.shape[0], 3, device="cuda"))


def test_mma_gemv_first_use_inside_a_graph_capture():
    """A GEMV configuration met for the first time while a CUDA graph is being captured (NVRTC compiles
    it and the driver loads its module in the middle of the capture) is captured like any kernel, and
    replays follow new inputs."""
    from graphsafe.quant import mma_gemv
    mma_gemv.compile_cubin.cache_clear()
    mma_gemv._function.cache_clear()
    m, k, n = 6, 640, 96
    x = _x(m, k, torch.bfloat16)
    qw, ws = quant.pack_int4_weights(_x(n, k, torch.bfloat16, seed=5, scale=0.1))
    bias = _x(1, n, torch.bfloat16, seed=6).flatten()
    assert ops.mma_wanted(m, n, k // 2)
    quant.quant_linear(x, qw, ws, bias)  # the quantizer's Triton kernel and a bfloat16-output GEMV, eagerly
    assert mma_gemv._function.cache_info().currsize == 1
    y = torch.empty(m, n, dtype=torch.float32, device="cuda")
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g, stream=stream):
        quant.quant_linear(x, qw, ws, bias, out=y)
    assert mma_gemv._function.cache_info().currsize == 2  # the float32-output GEMV, loaded in the capture
    for seed in (1, 2):
        x.copy_(_x(m, k, torch.bfloat16, seed=seed))
        g.replay()
        torch.cuda.synchronize()
        q_ref, s_ref = ref.sym_quant_reference(x, 1.0)
        assert torch.equal(y, ref.w4a4_linear_reference(q_ref, s_ref, qw, ws, bias, torch.float32)), seed
