"""The warp-specialized Gluon GEMM (graphsafe.quant.gluon_ws) on a Hopper GPU: on each kind of round plan
bit-equal to the per-tile kernel (scales and a bias) and exact on the raw sums, twice in a row and
across graph replays; the largest K (with a bf16 output); refusals. Only where the routing takes it
(Hopper, Triton 3.6; elsewhere the tests skip, and a --require-gpu run fails)."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.gpu

from test_gpu_quant import assert_planes_gemm_exact  # noqa: E402

from graphsafe.quant import ops  # noqa: E402


@pytest.fixture(scope="module")
def gluon_ws():
    """The module where the routing takes it (Hopper, Triton 3.6); elsewhere a skip, which --require-gpu
    turns into a failure (test_gpu_quant.py checks that the routing leaves it out there)."""
    import triton

    from graphsafe.quant import triton_persist
    major, minor = torch.cuda.get_device_capability()
    if not triton_persist.gluon_wanted(1792, major * 10 + minor):
        pytest.skip(f"the Gluon GEMM runs on Hopper with Triton {triton_persist.GLUON_TRITON}x only; here "
                    f"sm_{major}{minor} and Triton {triton.__version__}")
    from graphsafe.quant import gluon_ws
    return gluon_ws


@pytest.mark.parametrize("m, k, n, sms, split, plan", [
    (2048, 3584, 4608, 132, (2, 2), (264, 48, 2, 2)),  # the H100 plan: the third round's 48 tiles in 4 pieces
    (2048, 3584, 4608, 132, (1, 1), (264, 0, 1, 1)),  # the same in whole rounds
    (300, 256, 1000, 5, (2, 2), (10, 4, 2, 1)),  # ragged in M and N, the last round's tiles in halves
    (200, 4096 + 64, 700, 4, (2, 2), (8, 4, 2, 1)),  # a ragged last K step
    (129, 512, 260, 1, (2, 2), (2, 0, 1, 1)),  # one SM (two programs), whole rounds, one row past a tile
    (1000, 1024, 200, 132, (2, 2), (264, 16, 2, 2)),  # everything in one cut round, ragged in N
    (530, 256, 128, 2, (2, 1), (4, 1, 2, 1)),  # halves along the weight rows only
    (150, 128, 300, 2, (2, 2), (4, 2, 2, 1)),  # one whole K step of 64 bytes, the last round in halves
    (40, 32, 130, 1, (2, 2), (2, 0, 1, 1)),  # one K step of 16 bytes, TMA zero-filling the rest
    (260, 192, 390, 5, (2, 2), (10, 2, 2, 2)),  # two K steps (the second ragged), a round cut in four
])
def test_gluon_gemm_is_exact_for_each_plan(gluon_ws, m, k, n, sms, split, plan):
    from graphsafe.quant import triton_persist
    assert triton_persist.plan(-(-n // 128) * -(-m // 128), 2 * sms, *split) == plan
    assert_planes_gemm_exact(lambda *a: gluon_ws.ws_into(*a, split_n=split[0], split_m=split[1], sms=sms), m, k, n)


@pytest.mark.parametrize("m", [3, 20])
def test_gluon_gemm_accumulates_the_largest_k_exactly(gluon_ws, m):
    """Every code -8 in both operands at the largest K (rounded down to TMA's 16-byte rows)."""
    k = ops.MAX_K // 32 * 32
    planes = torch.full((2, m, k // 2), -128, dtype=torch.int8, device="cuda")
    qw = torch.full((2, k // 2), 0x88, dtype=torch.uint8, device="cuda")
    for dtype in (torch.float32, torch.bfloat16):  # exact in float32; bf16 rounds the same on both sides
        y = torch.zeros(m, 2, device="cuda", dtype=dtype)
        gluon_ws.ws_into(planes, torch.ones(m, 1, device="cuda"), qw, torch.ones(2, 1, device="cuda"), None, y, sms=1)
        assert torch.equal(y, torch.full((m, 2), 64.0 * k, device="cuda", dtype=dtype)), dtype


def test_gluon_gemm_refuses_what_it_cannot_run(gluon_ws):
    planes = torch.zeros(2, 20, 50, dtype=torch.int8, device="cuda")
    qw = torch.zeros(8, 50, dtype=torch.uint8, device="cuda")
    y = torch.empty(20, 8, device="cuda")
    with pytest.raises(ValueError, match="16-byte aligned"):
        gluon_ws.ws_into(planes, torch.ones(20, 1, device="cuda"), qw, torch.ones(8, 1, device="cuda"), None, y)
    planes, qw = planes[:, :, :48].contiguous(), qw[:, :48].contiguous()
    with pytest.raises(ValueError, match="64 weight rows"):
        gluon_ws.ws_into(planes, torch.ones(20, 1, device="cuda"), qw, torch.ones(8, 1, device="cuda"), None, y,
                         split_n=4)
