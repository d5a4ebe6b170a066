"""The CUDA C++ wgmma GEMM (graphsafe.quant.wgmma_gemm, what quant_linear runs beyond one round of tiles
on sm_90) on a Hopper GPU: bit-equal to the per-tile kernel (scales and a bias) and exact on the raw
sums, twice in a row and across graph replays, on each kind of round plan, ragged shapes, one to three K
steps, several ring depths and one SM, one and two consumer warpgroups, ldmatrix, PDL after the
quantizer; the largest K; refusals. Where it cannot run (not sm_90, or no cuda-bindings and NVRTC) the
tests skip, and a --require-gpu run fails."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.gpu

from test_gpu_quant import assert_planes_gemm_exact  # noqa: E402

from graphsafe import quant  # noqa: E402
from graphsafe.quant import ops  # noqa: E402


@pytest.fixture(scope="module")
def wgmma_gemm():
    from graphsafe.quant import mma_gemv, wgmma_gemm
    major, minor = torch.cuda.get_device_capability()
    if (major, minor) != (9, 0):
        pytest.skip(f"the CUDA wgmma GEMM runs on sm_90 only; here sm_{major}{minor}")
    try:
        mma_gemv.check(torch.device("cuda", torch.cuda.current_device()))
    except mma_gemv.MmaUnavailable as exc:
        pytest.skip(str(exc))
    return wgmma_gemm


@pytest.mark.parametrize("m, k, n, sms, split, stages, plan", [
    (2048, 3584, 4608, 132, (2, 2), 3, (264, 48, 2, 2)),  # the H100 plan: the third round's 48 tiles in 4 pieces
    (2048, 3584, 4608, 132, (1, 1), 3, (264, 0, 1, 1)),  # the same in whole rounds
    (300, 256, 1000, 5, (2, 2), 3, (10, 4, 2, 1)),  # ragged in M and N, the last round's tiles in halves
    (200, 4096 + 64, 700, 4, (2, 2), 3, (8, 4, 2, 1)),  # a ragged last K step
    (129, 512, 260, 1, (2, 2), 2, (2, 0, 1, 1)),  # one SM (two programs), whole rounds, two stages
    (1000, 1024, 200, 132, (2, 2), 3, (264, 16, 2, 2)),  # everything in one cut round, ragged in N
    (530, 256, 128, 2, (2, 1), 3, (4, 1, 2, 1)),  # halves along the weight rows only
    (530, 256, 128, 2, (1, 2), 3, (4, 1, 1, 2)),  # halves along the activation rows only
    (150, 128, 300, 2, (2, 2), 3, (4, 2, 2, 1)),  # one K step: the prologue and the drain only
    (40, 32, 130, 1, (2, 2), 3, (2, 0, 1, 1)),  # one K step of 16 bytes, TMA zero-filling the rest
    (260, 192, 390, 5, (2, 2), 3, (10, 2, 2, 2)),  # two K steps (the second ragged), a round cut in four
    (70, 320, 130, 1, (2, 2), 3, (2, 0, 1, 1)),  # three K steps, the last ragged
])
def test_cuda_wgmma_gemm_is_exact(wgmma_gemm, m, k, n, sms, split, stages, plan):
    from graphsafe.quant import triton_persist
    assert triton_persist.plan(-(-n // 128) * -(-m // 128), 2 * sms, *split) == plan
    assert_planes_gemm_exact(lambda *a: wgmma_gemm.wgmma_into(*a, stages=stages, split_n=split[0],
                                                              split_m=split[1], sms=sms), m, k, n)


@pytest.mark.parametrize("m, k, n, sms, split, stages, plan", [
    (2048, 3584, 4608, 132, (2, 2), 4, (132, 24, 2, 2)),  # the H100 plan: the third round's 24 tiles in 4 pieces
    (2048, 3584, 4608, 132, (1, 1), 3, (132, 0, 1, 1)),  # whole rounds, three stages
    (300, 256, 1000, 5, (2, 2), 3, (5, 2, 2, 1)),  # ragged in M and N, the last round's tiles in halves
    (200, 4096 + 64, 700, 4, (2, 2), 4, (4, 2, 2, 1)),  # a ragged last K step
    (129, 512, 260, 1, (2, 2), 2, (1, 0, 1, 1)),  # one SM, two stages, the second consumer's rows mostly past N
    (1000, 1024, 200, 132, (2, 2), 4, (132, 8, 2, 2)),  # everything in one cut round
    (530, 256, 300, 3, (2, 1), 3, (3, 1, 2, 1)),  # halves along the weight rows only
    (530, 256, 300, 3, (1, 2), 3, (3, 1, 1, 2)),  # halves along the activation rows only
    (260, 192, 390, 5, (2, 2), 3, (5, 1, 2, 2)),  # two K steps (the second ragged), a round cut in four
    (40, 32, 130, 1, (2, 2), 3, (1, 0, 1, 1)),  # one K step of 16 bytes
])
def test_cuda_wgmma_gemm_with_two_consumers_is_exact(wgmma_gemm, m, k, n, sms, split, stages, plan):
    """One CTA per SM, two MMA warpgroups on 256 weight rows sharing each stage's activation tiles; the
    weights read with ldmatrix where the ring is not three stages deep."""
    from graphsafe.quant import triton_persist
    assert triton_persist.plan(-(-n // 256) * -(-m // 128), sms, *split) == plan
    ldsm = stages != 3
    assert_planes_gemm_exact(lambda *a: wgmma_gemm.wgmma_into(*a, stages=stages, split_n=split[0], split_m=split[1],
                                                              sms=sms, consumers=2, ldsm=ldsm), m, k, n)


@pytest.mark.parametrize("m, k, n, sms", [(2048, 3584, 4608, 132), (300, 256, 1000, 5), (260, 192, 390, 5),
                                          (40, 32, 130, 1), (530, 256, 128, 2)])
def test_cuda_wgmma_gemm_reading_weights_with_ldmatrix_is_exact(wgmma_gemm, m, k, n, sms):
    assert_planes_gemm_exact(lambda *a: wgmma_gemm.wgmma_into(*a, sms=sms, ldsm=True), m, k, n)


@pytest.mark.parametrize("consumers", [1, 2])
def test_cuda_wgmma_gemm_after_the_quantizer_with_pdl_is_exact(wgmma_gemm, consumers):
    """Launched with PDL after the quantizer (which lets it start early): the weights' first stages load
    before the wait, the planes and scales after it. Inside a graph, replayed with new activations."""
    from graphsafe.quant import triton_kernels, triton_swap
    m, k, n = 1000, 1024, 700
    torch.manual_seed(0)
    x = torch.randn(m, k, device="cuda", dtype=torch.float16)
    qw, ws = quant.pack_int4_weights(torch.randn(n, k, device="cuda", dtype=torch.float16) * 0.05)
    planes = torch.empty(2, m, k // 2, dtype=torch.int8, device="cuda")
    scale = torch.empty(m, 1, device="cuda", dtype=torch.float16)
    out = torch.full((m, n), float("nan"), device="cuda", dtype=torch.float16)

    def chain():
        triton_kernels.sym_quant_into(x, 1.0, planes, scale, trigger=True)
        wgmma_gemm.wgmma_into(planes, scale, qw, ws, None, out, consumers=consumers, after_quantizer=True)

    def expected():
        p = torch.empty_like(planes)
        s = torch.empty_like(scale)
        triton_kernels.sym_quant_into(x, 1.0, p, s)
        y = torch.empty_like(out)
        triton_swap.big_into(p, s, qw, ws, None, y)
        return y

    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())  # its inputs were made on this one
    with torch.cuda.stream(stream):
        chain()
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g, stream=stream):
            chain()
    torch.cuda.synchronize()
    assert torch.equal(out, expected())
    for _ in range(2):
        x.copy_(torch.randn_like(x))
        out.fill_(float("nan"))
        g.replay()
        torch.cuda.synchronize()
        assert torch.equal(out, expected())


@pytest.mark.parametrize("m", [3, 20])
@pytest.mark.parametrize("routed", [False, True])
def test_cuda_wgmma_gemm_accumulates_the_largest_k_exactly(wgmma_gemm, m, routed):
    """Every code -8 in both operands at the largest K (rounded down to TMA's 16-byte rows), with the
    defaults and with what quant_linear runs (``MANY_ROWS``), each output dtype."""
    k = ops.MAX_K // 32 * 32
    planes = torch.full((2, m, k // 2), -128, dtype=torch.int8, device="cuda")
    qw = torch.full((2, k // 2), 0x88, dtype=torch.uint8, device="cuda")
    kw = wgmma_gemm.MANY_ROWS if routed else {}
    w_scale = torch.full((2, 1), 2.0 ** -8, device="cuda")  # keeps the float16 output finite
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        y = torch.zeros(m, 2, device="cuda", dtype=dtype)
        wgmma_gemm.wgmma_into(planes, torch.ones(m, 1, device="cuda"), qw, w_scale, None, y, sms=1, **kw)
        assert torch.equal(y, torch.full((m, 2), 64.0 * k * 2.0 ** -8, device="cuda").to(dtype)), dtype


def test_cuda_wgmma_gemm_refuses_a_ring_that_does_not_fit(wgmma_gemm):
    """Four stages of one consumer with a float32 output need more than half an SM's shared memory: a
    clear error before anything is launched (the other refusals are checked on the CPU)."""
    planes = torch.zeros(2, 256, 64, dtype=torch.int8, device="cuda")
    qw = torch.zeros(256, 64, dtype=torch.uint8, device="cuda")
    out = torch.full((256, 256), 7.0, device="cuda")
    with pytest.raises(ValueError, match="2 CTAs of 134400 bytes .* do not fit"):
        wgmma_gemm.wgmma_into(planes, torch.ones(256, 1, device="cuda"), qw, torch.ones(256, 1, device="cuda"), None,
                              out, stages=4)
    assert torch.equal(out, torch.full_like(out, 7.0))
