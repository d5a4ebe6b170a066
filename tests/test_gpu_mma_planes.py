"""The tensor-core GEMV on MMA planes (``graphsafe.quant.mma_planes``, ``csrc/w4a4_planes.cu``) on a GPU:
every configuration exact against the reference on ragged shapes (a last partial chunk of K, N not a
multiple of the block's rows, 1-16 rows), the quantizer writing its planes and sums with PDL before it,
extreme codes, the largest K, and its refusals. The quantizer's planes and the GEMV's arithmetic are
checked on the CPU (test_quant_cpu.py), its compile and instruction order in test_quant_planes_cpu.py."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.gpu

from graphsafe import quant  # noqa: E402
from graphsafe.quant import ops  # noqa: E402
from graphsafe.quant import reference as ref  # noqa: E402
from quant_gpu_data import randn_cuda as _x, strided_weights  # noqa: E402


def _planes(x, pdl=False, sums=True):
    """The quantizer's MMA planes, even-code sums (None for planes without sums) and scales of ``x``."""
    from graphsafe.quant import triton_kernels as tk
    m, k = x.shape
    planes = torch.full((m, tk.mma_planes_width(k)), 99, dtype=torch.int8, device="cuda")
    xsum = torch.empty(m, dtype=torch.int32, device="cuda") if sums else None
    scale = torch.empty(m, 1, dtype=x.dtype, device="cuda")
    tk.sym_quant_into(x, 1.0, planes, scale, trigger=pdl, wait=pdl, xsum=xsum, mma_planes=True)
    return planes, xsum, scale


def _configs():
    from graphsafe.quant.mma_planes import PlanesConfig
    return [PlanesConfig(w, t, r) for w in (1, 4, 8) for t in (1, 2) for r in (1, 2, 4)] + [PlanesConfig(12, 1, 2)]


@pytest.mark.parametrize("sums", [True, False], ids=["sums", "bare"])
@pytest.mark.parametrize("cfg", _configs(), ids=lambda c: f"w{c.warps}t{c.tiles}r{c.ring}")
@pytest.mark.parametrize("m", [1, 4, 8, 9, 16])
def test_planes_gemv_every_config_is_exact(cfg, m, sums):
    """K = 32 x 83 (20 whole chunks of 128 columns and a partial one of 96) and N = 50, both scale
    dtypes, bias, a float32 output; then the exact int32 sums with unit scales. On planes with the
    quantizer's row sums and without (PlanesConfig.xsum)."""
    import dataclasses

    from graphsafe.quant import mma_planes
    k, n = 32 * 83, 50
    x = _x(m, k, torch.bfloat16)
    q, s = quant.sym_quant(x)
    planes, xsum, scale = _planes(x, sums=sums)
    assert torch.equal(scale, s)
    assert torch.equal(planes.cpu(), ref.mma_planes_reference(q.cpu(), sums)[0])
    cfg = dataclasses.replace(cfg, xsum=sums)
    qw, ws = quant.pack_int4_weights(_x(n, k, seed=1, scale=0.05))
    bias = _x(1, n, seed=2).flatten().float()
    y = torch.full((m, n), float("nan"), device="cuda")
    mma_planes.planes_into(planes, xsum, s, qw, ws, bias, y, cfg)
    assert torch.equal(y, ref.w4a4_linear_reference(q, s, qw, ws, bias, torch.float32))
    ones_m, ones_n = torch.ones(m, 1, device="cuda"), torch.ones(n, 1, device="cuda")
    mma_planes.planes_into(planes, xsum, ones_m, qw, ones_n, None, y, cfg)
    assert torch.equal(y, ref.int4_matmul_reference(q, qw).to(torch.float32))


@pytest.mark.parametrize("m, k, n", [(1, 32, 1), (16, 32, 17), (5, 64, 3000), (4, 3584, 4608), (2, 4096 + 32, 4608),
                                     (3, 18944, 40), (3, 416, 40), (12, 28672, 64)])
@pytest.mark.parametrize("out_dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("prefetch", [0, 100, 50], ids=["no-prefetch", "prefetch", "prefetch-half"])
@pytest.mark.parametrize("sums", [True, False], ids=["sums", "bare"])
def test_planes_gemv_after_its_quantizer_with_pdl(m, k, n, out_dtype, prefetch, sums):
    """The quantizer writes the planes and sums, then the GEMV launches with PDL (as quant_linear runs
    them), with a weight row stride wider than the row; every output dtype; without the weight rows
    prefetched into L2, with them prefetched before the wait, and with half of each before it and the
    rest after (PlanesConfig.head). K = 416: 3 whole chunks, the partial one on warp 3; K = 28672: the
    quantizer's row in one tile of 32768 columns."""
    from graphsafe.quant import mma_planes
    from graphsafe.quant.triton_gemv import pdl_available
    x = _x(m, k, out_dtype)
    qw, qw_, ws = strided_weights(n, k, out_dtype)
    assert mma_planes.supports(qw, m)
    y = torch.empty(m, n, dtype=out_dtype, device="cuda")
    pdl = pdl_available(x.device)
    planes, xsum, s = _planes(x, pdl, sums)
    cfg = mma_planes.PlanesConfig(8, 1, 3, True, xsum=sums, head=prefetch) if prefetch else None
    mma_planes.planes_into(planes, xsum, s, qw, ws, None, y, cfg, after_quantizer=pdl)
    q_ref, s_ref = ref.sym_quant_reference(x, 1.0)
    assert torch.equal(y, ref.w4a4_linear_reference(q_ref, s_ref, qw_, ws, None, out_dtype))


@pytest.mark.parametrize("m, k, n", [(4, 3584, 4608), (1, 32 * 83, 50), (4, 416, 2000), (3, 4096 + 32, 4607),
                                     (9, 18944, 3584), (2, 3584, 18944)])
@pytest.mark.parametrize("variant", ["bare", "sums", "prefetch", "tiles2"])
def test_balanced_planes_gemv_is_exact_on_every_share_of_rows(m, k, n, variant):
    """PlanesConfig.balance 2: the rows shared out over as many blocks as fit at once, after the quantizer
    with PDL, with a bias; bit-equal to the reference, every output written (the buffer starts as NaN).
    The shares: 11-12 rows a block (3584->4608; 17-18 with two tiles), one row a block (N = 50), 5-8 (N =
    2000: the second half of each MMA tile has no row of its own), a ragged 11-12 (N = 4607), long rows
    with the prefetch (18944->3584); and a layer wider than a wave (3584->18944), where ``plan`` keeps the
    tiles and the program without BALANCE. The test checks that the launch it asked for is the one that
    ran: BALANCE on more blocks than tiles, at most 16 tiles rows each."""
    import dataclasses

    from graphsafe.quant import mma_planes
    from graphsafe.quant.triton_gemv import pdl_available
    x = _x(m, k)
    qw, ws = quant.pack_int4_weights(_x(n, k, seed=5, scale=0.1))
    bias = _x(1, n, seed=6).flatten()
    pdl = pdl_available(x.device)
    planes, xsum, s = _planes(x, pdl, sums=variant == "sums")
    cfg = dataclasses.replace(mma_planes.PlanesConfig(10, 2 if variant == "tiles2" else 1, 2), xsum=variant == "sums",
                              prefetch=variant == "prefetch", balance=2)
    y = torch.full((m, n), float("nan"), dtype=torch.float16, device="cuda")
    mma_planes.planes_into(planes, xsum, s, qw, ws, bias, y, cfg, after_quantizer=pdl)
    q_ref, s_ref = ref.sym_quant_reference(x, 1.0)
    assert torch.equal(y, ref.w4a4_linear_reference(q_ref, s_ref, qw, ws, bias, torch.float16))
    ran, blocks = mma_planes.plan(m, n, cfg, (s.dtype, ws.dtype, bias.dtype, y.dtype), pdl, x.device)
    tiled = mma_planes.tile_blocks(n, cfg)
    if n == 18944:
        assert ran.balance == 0 and blocks == tiled
    else:
        assert ran == cfg and blocks > tiled and -(-n // blocks) <= 16 * cfg.tiles, (ran, blocks)
    if (m, k, n) == (4, 3584, 4608) and variant == "bare":  # at most 64 registers a thread: three blocks an SM
        assert blocks == 3 * torch.cuda.get_device_properties(x.device).multi_processor_count - m


def test_planes_gemv_extreme_codes_largest_k_and_refusals():
    """Activation codes -8 and weight codes 7 at the largest K: the accumulator's largest magnitude (each
    pair of columns adds 15 x 16 x -8 + 16 x 7 x -8 = -2816, 1408 K in all); then codes -8 on both sides;
    then each refusal: misaligned weights, 17 rows, planes of the wrong width."""
    from graphsafe.quant import mma_planes, triton_kernels
    k = ops.MAX_K // 32 * 32
    planes, xsum = ref.mma_planes_reference(torch.full((16, k // 2), 0x88, dtype=torch.uint8))
    planes, xsum = planes.cuda(), xsum.cuda()
    y = torch.empty(16, 3, device="cuda")
    for byte, dot in ((0x77, -56.0 * k), (0x88, 64.0 * k)):
        qw = torch.full((3, k // 2), byte, dtype=torch.uint8, device="cuda")
        mma_planes.planes_into(planes, xsum, torch.ones(16, 1, device="cuda"), qw, torch.ones(3, 1, device="cuda"),
                               None, y)
        assert torch.equal(y, torch.full((16, 3), dot, device="cuda"))
        bare = ref.mma_planes_reference(torch.full((16, k // 2), 0x88, dtype=torch.uint8), sums=False)[0].cuda()
        mma_planes.planes_into(bare, None, torch.ones(16, 1, device="cuda"), qw, torch.ones(3, 1, device="cuda"),
                               None, y)  # without sums: each pair of columns adds 2 x 16 x 7 x -8 = -1792
        assert torch.equal(y, torch.full((16, 3), dot, device="cuda"))
    ones = torch.ones(3, 1, device="cuda")
    with pytest.raises(ValueError, match="takes 1-16 rows"):
        mma_planes.planes_into(planes, xsum, torch.ones(16, 1, device="cuda"), qw[:, 8:], ones, None, y)
    big = torch.zeros(17, triton_kernels.mma_planes_width(k), dtype=torch.int8, device="cuda")
    with pytest.raises(ValueError, match="takes 1-16 rows"):
        mma_planes.planes_into(big, torch.zeros(17, dtype=torch.int32, device="cuda"),
                               torch.ones(17, 1, device="cuda"), qw, ones, None, torch.empty(17, 3, device="cuda"))
    with pytest.raises(ValueError, match="planes must be int8"):
        mma_planes.planes_into(planes[:, :-128], xsum, torch.ones(16, 1, device="cuda"), qw, ones, None, y)
    with pytest.raises(ValueError, match="needs xsum"):
        mma_planes.planes_into(planes, None, torch.ones(16, 1, device="cuda"), qw, ones, None, y,
                               mma_planes.PlanesConfig(8, 1, 2))


@pytest.mark.parametrize("m, k, n", [(1, 3584, 4608), (6, 3584, 4608), (2, 3584, 18944), (4, 3584, 18944),
                                     (12, 18944, 3584)])
def test_quant_linear_runs_the_planes_gemv_where_it_is_routed(monkeypatch, m, k, n):
    """quant_linear's few-row GEMM: the GEMV on planes where ops.planes_wanted says so (without sums),
    exact, inside a CUDA graph whose replays follow new inputs."""
    from graphsafe.quant import mma_planes
    ran = []
    real = mma_planes.planes_into
    monkeypatch.setattr(mma_planes, "planes_into",
                        lambda *a, **k: ran.append((a[0].shape[0], a[1] is not None)) or real(*a, **k))
    assert ops.planes_wanted(m, n, k // 2)
    sums = mma_planes.planes_config(m, n, k // 8).xsum
    assert not sums
    x = _x(m, k)
    qw, ws = quant.pack_int4_weights(_x(n, k, seed=5, scale=0.1))
    bias = _x(1, n, seed=6).flatten()
    y = torch.empty(m, n, dtype=torch.float16, device="cuda")
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        quant.quant_linear(x, qw, ws, bias, out=y)
    stream.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g, stream=stream):
        quant.quant_linear(x, qw, ws, bias, out=y)
    assert ran == [(m, sums), (m, sums)]
    for seed in (1, 2):
        x.copy_(_x(m, k, seed=seed))
        g.replay()
        torch.cuda.synchronize()
        q, s = ref.sym_quant_reference(x)
        assert torch.equal(y, ref.w4a4_linear_reference(q, s, qw, ws, bias, torch.float16))


def test_planes_gemv_timeline_records_every_block():
    """A configuration with a timeline keeps, for each block of its latest launch, a start, a wait
    release and an end in that order, and its SM; the result stays exact."""
    from graphsafe.quant import mma_planes
    from graphsafe.quant.triton_gemv import pdl_available
    m, k, n = 4, 3584, 4608
    x = _x(m, k)
    qw, ws = quant.pack_int4_weights(_x(n, k, seed=7, scale=0.1))
    y = torch.empty(m, n, dtype=torch.float16, device="cuda")
    pdl = pdl_available(x.device)
    planes, xsum, s = _planes(x, pdl)
    cfg = mma_planes.PlanesConfig(8, 1, 2, timeline=n // 16)
    mma_planes.planes_into(planes, xsum, s, qw, ws, None, y, cfg, after_quantizer=pdl)
    t = mma_planes.timeline(cfg, m, (s.dtype, ws.dtype, None, y.dtype), pdl, x.device).cpu()
    assert t.shape == (n // 16, 4)
    assert bool(((t[:, 0] > 0) & (t[:, 0] <= t[:, 1]) & (t[:, 1] <= t[:, 2])).all())
    assert int(t[:, 3].max()) < torch.cuda.get_device_properties(x.device).multi_processor_count
    q_ref, s_ref = ref.sym_quant_reference(x, 1.0)
    assert torch.equal(y, ref.w4a4_linear_reference(q_ref, s_ref, qw, ws, None, torch.float16))


def test_quantizer_and_dp4a_timelines_record_every_program():
    """The Triton kernels' timelines (what benchmarks/chain_timeline.py compares the planes GEMV with):
    one row per program, start <= wait release <= end, and the results unchanged."""
    from graphsafe.quant import triton_gemv, triton_kernels
    m, k, n = 4, 3584, 4608
    x = _x(m, k)
    qw, ws = quant.pack_int4_weights(_x(n, k, seed=8, scale=0.1))
    pdl = triton_gemv.pdl_available(x.device)
    q = torch.empty(m, k // 2, dtype=torch.uint8, device="cuda")
    s = torch.empty(m, 1, dtype=x.dtype, device="cuda")
    y = torch.empty(m, n, dtype=torch.float16, device="cuda")
    cfg = triton_gemv.dp4a_config(m, n, k // 2)
    q_t = torch.zeros(m, 4, dtype=torch.int64, device="cuda")
    d_t = torch.zeros(-(-n // cfg.bn), 4, dtype=torch.int64, device="cuda")
    triton_kernels.sym_quant_into(x, 1.0, q, s, trigger=pdl, wait=pdl, timeline=q_t)
    triton_gemv.dp4a_into(q, s, qw, ws, None, y, cfg, after_quantizer=pdl, timeline=d_t)
    torch.cuda.synchronize()
    for t in (q_t.cpu(), d_t.cpu()):
        assert bool(((t[:, 0] > 0) & (t[:, 0] <= t[:, 1]) & (t[:, 1] <= t[:, 2])).all()), t
    q_ref, s_ref = ref.sym_quant_reference(x, 1.0)
    assert torch.equal(q, q_ref)
    assert torch.equal(y, ref.w4a4_linear_reference(q_ref, s_ref, qw, ws, None, torch.float16))
    with pytest.raises(ValueError, match="timeline must be int64"):
        triton_kernels.sym_quant_into(x, 1.0, q, s, timeline=torch.zeros(m, 3, dtype=torch.int64, device="cuda"))
