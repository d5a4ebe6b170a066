"""graphsafe.quant on a GPU: both backends against the reference on the benchmark shapes and edge cases,
under CUDA graphs and torch.compile, and `graphsafe check` clean on every kernel."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.gpu

from graphsafe import quant  # noqa: E402
from graphsafe.doctor.check import check  # noqa: E402
from graphsafe.quant import ops  # noqa: E402
from graphsafe.quant import reference as ref  # noqa: E402
from quant_gpu_data import randn_cuda as _x  # noqa: E402

SHAPES = [(3584, 4608), (3584, 18944), (18944, 3584)]
MS = [1, 2, 4, 8, 16, 512, 2048, 8192]


def _same_scale(a, b):
    return torch.equal(a.isnan(), b.isnan()) and torch.equal(a.nan_to_num(0), b.nan_to_num(0))


def _eager_and_replays(step, out, expected, refill):
    """``step()`` run eagerly on a side stream, then captured there and replayed four times; before each
    run ``refill(seed)`` sets the inputs on the current stream, and after it ``out`` equals ``expected()``."""
    refill(99)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())  # the inputs were made on this one
    with torch.cuda.stream(stream):
        step()
    torch.cuda.synchronize()
    assert _same_scale(out, expected()), "eager"
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g, stream=stream):
        step()
    for seed in range(4):
        refill(seed)
        g.replay()
        torch.cuda.synchronize()
        assert _same_scale(out, expected()), seed


def _assert_quant(x, backend, clip=1.0):
    q, s = quant.sym_quant(x, clip, backend=backend)
    q_ref, s_ref = ref.sym_quant_reference(x, clip)
    assert _same_scale(s, s_ref), (s.flatten()[:8], s_ref.flatten()[:8])
    assert torch.equal(q, q_ref), int((q != q_ref).sum())


@pytest.mark.parametrize("backend", ["triton", "cuda"])
@pytest.mark.parametrize("n", [3584, 18944])
@pytest.mark.parametrize("m", MS)
def test_sym_quant_matches_reference_on_benchmark_shapes(backend, m, n):
    _assert_quant(_x(m, n), backend)


@pytest.mark.parametrize("backend", ["triton", "cuda"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("m, n", [(1, 1), (3, 7), (5, 4097), (2, 8191), (2, 8193), (9, 12001), (16, 18945), (7, 65536),
                                  (4, 100003)])
def test_sym_quant_edge_shapes_and_dtypes(backend, dtype, m, n):
    _assert_quant(_x(m, n, dtype), backend, clip=0.9)


@pytest.mark.parametrize("backend", ["triton", "cuda"])
def test_sym_quant_non_finite_policy(backend):
    x = _x(6, 300)
    x[0] = 0  # all-zero row: scale 0, codes 0
    x[1, 5] = float("nan")
    x[2, 7] = float("inf")
    x[3, 0] = float("-inf")
    x[4, 299] = float("nan")
    x[4, 0] = float("inf")
    _assert_quant(x, backend)
    q, s = quant.sym_quant(x, backend=backend)
    assert s[0].item() == 0 and int(q[0].sum()) == 0
    assert s[1].isnan().item() and s[2].isinf().item() and int(q[1:5].sum()) == 0


@pytest.mark.parametrize("backend", ["triton", "cuda"])
def test_sym_quant_zero_rows_and_64bit_offsets(backend):
    q, s = quant.sym_quant(torch.empty(0, 3584, dtype=torch.float16, device="cuda"), backend=backend)
    assert q.shape == (0, 1792) and s.shape == (0, 1)
    x = _x(65536, 65536, scale=1.0)  # 2**32 elements: offsets past 32 bits
    q, s = quant.sym_quant(x, backend=backend)
    rows = torch.tensor([0, 1, 32767, 32768, 65534, 65535], device="cuda")
    q_ref, s_ref = ref.sym_quant_reference(x[rows])
    assert torch.equal(q[rows], q_ref) and torch.equal(s[rows], s_ref)


@pytest.mark.parametrize("block", [1, 31, 33, 96, 1000, 1024])
def test_cuda_backend_any_block_size(block):
    from graphsafe.quant import cuda_backend
    x = _x(9, 2051)
    x[3, 17] = float("nan")
    q = torch.empty(9, 1026, dtype=torch.uint8, device="cuda")
    s = torch.empty(9, 1, dtype=torch.float16, device="cuda")
    cuda_backend.sym_quant_into(x, 1.0, q, s, block=block)
    q_ref, s_ref = ref.sym_quant_reference(x)
    assert torch.equal(q, q_ref) and _same_scale(s, s_ref)


@pytest.mark.parametrize("k, n", SHAPES)
@pytest.mark.parametrize("m", MS)
def test_w4a4_linear_matches_reference_on_benchmark_shapes(k, n, m):
    q, s = quant.sym_quant(_x(m, k))
    qw, ws = quant.pack_int4_weights(_x(n, k, seed=1, scale=0.05))
    bias = _x(1, n, seed=2).flatten()
    y = quant.w4a4_linear(q, s, qw, ws, bias, torch.float32)
    y_ref = ref.w4a4_linear_reference(q, s, qw, ws, bias, torch.float32)
    torch.testing.assert_close(y, y_ref, rtol=1e-6, atol=1e-6)  # float32 epilogue rounding only
    # the integer accumulation itself is exact: unit scales give the int32 sums
    ones_m = torch.ones(m, 1, dtype=torch.float32, device="cuda")
    ones_n = torch.ones(n, 1, dtype=torch.float32, device="cuda")
    acc = quant.w4a4_linear(q, ones_m, qw, ones_n, None, torch.float32)
    assert torch.equal(acc, ref.int4_matmul_reference(q, qw).to(torch.float32))


@pytest.mark.parametrize("m, k, n", [(1, 1, 1), (3, 7, 5), (17, 130, 33), (5, 4097, 77), (300, 96, 260),
                                     (129, 65536, 16), (0, 64, 8), (4, 0, 8)])
@pytest.mark.parametrize("out_dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_w4a4_linear_edge_shapes(m, k, n, out_dtype):
    q, s = quant.sym_quant(_x(m, k, torch.bfloat16 if out_dtype == torch.bfloat16 else torch.float16))
    qw, ws = quant.pack_int4_weights(_x(n, k, seed=3, scale=0.1).to(s.dtype))
    y = quant.w4a4_linear(q, s, qw, ws, None, out_dtype)
    y_ref = ref.w4a4_linear_reference(q, s, qw, ws, None, out_dtype)
    assert y.shape == (m, n) and y.dtype == out_dtype
    torch.testing.assert_close(y.float(), y_ref.float(), rtol=1e-2 if out_dtype != torch.float32 else 1e-6,
                               atol=1e-6)


@pytest.mark.parametrize("k, n", SHAPES)
@pytest.mark.parametrize("m", [1, 2, 3, 4, 5, 8, 16, 17, 512, 2048])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_quant_linear_equals_quantize_then_linear_on_benchmark_shapes(k, n, m, dtype):
    x = _x(m, k, dtype)
    x[0, :100] = 0.0
    if m > 1:
        x[1] = 0.0
    qw, ws = quant.pack_int4_weights(_x(n, k, dtype, seed=1, scale=0.05))
    bias = _x(1, n, dtype, seed=2).flatten()
    y = quant.quant_linear(x, qw, ws, bias, torch.float32, clip_ratio=0.9)
    q, s = ref.sym_quant_reference(x, 0.9)
    y_ref = ref.w4a4_linear_reference(q, s, qw, ws, bias, torch.float32)
    torch.testing.assert_close(y, y_ref, rtol=1e-6, atol=1e-6)  # float32 epilogue rounding only
    # quant_linear's own paths (PDL after the quantizer; INT8 planes beyond 16 rows) give w4a4_linear's bits
    assert torch.equal(y, quant.w4a4_linear(q, s, qw, ws, bias, torch.float32))


@pytest.mark.parametrize("m, k, n", [(1, 18944, 3584), (2, 18944, 3584), (4, 18944, 3584), (16, 18944, 3584),
                                     (40, 18944, 3584), (2048, 18944, 3584), (2048, 3584, 4608)])
def test_quant_linear_is_exact_across_graph_replays(m, k, n):
    """Each of quant_linear's paths in a graph (dp4a GEMV or the few-row GEMM launched with PDL after the
    quantizer; the many-row GEMM on INT8 planes, per tile at 40 rows, persistent at 2048 on Hopper: on an
    H100 or H200 the CUDA wgmma GEMM launched with PDL, in whole rounds for 18944->3584 and with its last
    round cut for 3584->4608): replay after replay with new inputs, against the exact sums."""
    from graphsafe.quant import triton_gemv
    if torch.cuda.get_device_capability()[0] >= 9:
        assert triton_gemv.pdl_available(torch.device("cuda")), "PDL should be on for Hopper and newer"
    x = torch.zeros(m, k, device="cuda", dtype=torch.float16)
    qw, ws = quant.pack_int4_weights(_x(n, k, seed=7, scale=0.05))
    ones = torch.ones(n, 1, device="cuda", dtype=torch.float32)
    y = torch.empty(m, n, device="cuda", dtype=torch.float32)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())  # its inputs were made on this one
    with torch.cuda.stream(stream):
        quant.quant_linear(x, qw, ones, out=y, clip_ratio=0.8)
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g, stream=stream):
        quant.quant_linear(x, qw, ones, out=y, clip_ratio=0.8)
    for seed in range(4):
        x.copy_(_x(m, k, seed=seed))
        g.replay()
        qr, sr = ref.sym_quant_reference(x, 0.8)
        assert torch.equal(y, ref.int4_matmul_reference(qr, qw).float() * sr.float()), seed


@pytest.mark.parametrize("before", ["kernel", "copy", "other_stream"])
@pytest.mark.parametrize("m", [1, 2, 3, 4, 8, 16, 2048])
def test_chained_quant_linears_wait_for_their_inputs_in_a_graph(m, before):
    """quant_linear's kernels launch early (PDL) and let the next kernel launch early too; each waits for
    its input first (at 2048 rows only the many-row GEMM launches early, after its quantizer). x is
    written just before by a torch kernel, by a copy, or on another stream, and the second layer reads
    the first's output, which its quantizer may start before: eager and every replay must match the
    reference."""
    k, h = 3584, 4608
    src = torch.zeros(m, k, device="cuda", dtype=torch.float16)
    x = torch.empty_like(src)
    w1 = quant.pack_int4_weights(_x(h, k, seed=11, scale=0.05))
    w2 = quant.pack_int4_weights(_x(k, h, seed=12, scale=0.05))
    y1 = torch.empty(m, h, device="cuda", dtype=torch.float16)
    y2 = torch.empty(m, k, device="cuda", dtype=torch.float16)
    side = torch.cuda.Stream()

    def step():
        if before == "kernel":
            torch.mul(src, 2.0, out=x)
        elif before == "copy":
            x.copy_(src * 2.0)
            x.copy_(x.clone())  # a device-to-device copy is the last thing before the quantizer
        else:
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                torch.mul(src, 2.0, out=x)
            torch.cuda.current_stream().wait_stream(side)
        quant.quant_linear(x, *w1, out=y1)
        quant.quant_linear(y1, *w2, out=y2)

    def expected():
        r1 = ref.w4a4_linear_reference(*ref.sym_quant_reference(src * 2.0), *w1, None, torch.float16)
        return ref.w4a4_linear_reference(*ref.sym_quant_reference(r1), *w2, None, torch.float16)

    _eager_and_replays(step, y2, expected, lambda seed: src.copy_(_x(m, k, seed=seed)))


@pytest.mark.parametrize("m, k, n, sms, plan", [
    (2048, 3584, 4608, 132, (264, 48, 2, 2)),  # the H100 plan of 3584->4608 at M = 2048
    (300, 256, 1000, 5, (10, 4, 2, 1)),  # ragged in M and N, the last round's 4 tiles in halves
    (200, 4096 + 64, 700, 4, (8, 4, 2, 1)),
    (129, 512, 260, 1, (2, 0, 1, 1)),  # whole rounds, one row past a tile
    (1000, 1024, 200, 132, (264, 16, 2, 2)),  # one round, cut in 4, ragged in N
])
def test_persistent_gemm_is_exact_for_each_plan(m, k, n, sms, plan):
    """triton_persist with its default tiles on each kind of plan (the SM count given, to force it):
    the exact sums, and with scales and a bias the same bits as the per-tile kernel (one epilogue)
    within float32 rounding of the reference; twice in a row and in a graph."""
    from graphsafe.quant import triton_persist
    cfg = triton_persist.persist_config(m, n, k // 2)
    assert triton_persist.plan(-(-n // cfg.bn) * -(-m // cfg.bm), sms * cfg.per_sm, cfg.split_n, cfg.split_m) == plan
    assert_planes_gemm_exact(lambda *a: triton_persist.persist_into(*a, sms=sms), m, k, n)


def assert_planes_gemm_exact(gemm, m, k, n):
    """``gemm(planes, scale, qw, w_scale, bias, out)``, a many-row GEMM on INT8 planes: the exact sums
    with unit scales, and with scales and a bias the per-tile kernel's bits (within float32 rounding of
    the reference), twice in a row and across graph replays."""
    from graphsafe.quant import triton_kernels, triton_swap
    x = _x(m, k)
    qw, ws = quant.pack_int4_weights(_x(n, k, seed=1, scale=0.05))
    bias = _x(1, n, seed=2).flatten()
    planes = torch.empty(2, m, k // 2, dtype=torch.int8, device="cuda")
    scale = torch.empty(m, 1, device="cuda", dtype=torch.float16)
    triton_kernels.sym_quant_into(x, 0.8, planes, scale)
    q, s = ref.sym_quant_reference(x, 0.8)
    y = torch.full((m, n), float("nan"), device="cuda")
    gemm(planes, torch.ones(m, 1, device="cuda"), qw, torch.ones(n, 1, device="cuda"), None, y)
    assert torch.equal(y, ref.int4_matmul_reference(q, qw).float())
    expected = torch.empty(m, n, device="cuda", dtype=torch.float16)
    triton_swap.big_into(planes, scale, qw, ws, bias, expected)
    torch.testing.assert_close(expected, ref.w4a4_linear_reference(q, s, qw, ws, bias, torch.float16))
    out = torch.empty(m, n, device="cuda", dtype=torch.float16)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())  # its inputs were made on this one
    with torch.cuda.stream(stream):
        for _ in range(2):
            out.fill_(float("nan"))
            gemm(planes, scale, qw, ws, bias, out)
            assert torch.equal(out, expected)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g, stream=stream):
            gemm(planes, scale, qw, ws, bias, out)
    for _ in range(2):
        out.fill_(float("nan"))
        g.replay()
        torch.cuda.synchronize()
        assert torch.equal(out, expected)


@pytest.mark.parametrize("m", [1, 2, 4, 8, 16, 2048])
def test_bias_written_by_the_layer_before_is_read_after_it(m):
    """The GEMMs request weights, weight scales and bias before they wait for their quantizer (PDL).
    Here the second layer's bias is the first layer's output row 0, so a GEMM that read its bias while
    the GEMM before it still ran (a quantizer letting it launch before its own wait would allow that)
    adds a stale bias: eager and every replay must give the bits the same kernels give with the bias
    read long after it was written, close to the reference (a bias's epilogue is not bit-exact: float32
    rounding, as in the tests above), and no NaN (the first layer's output is NaN until it is written)."""
    k, n = 3584, 4608
    x1, x2 = torch.empty(m, k, device="cuda", dtype=torch.float16), _x(m, k, seed=5)
    w1 = quant.pack_int4_weights(_x(n, k, seed=21, scale=0.05))
    w2 = quant.pack_int4_weights(_x(n, k, seed=22, scale=0.05))
    y1 = torch.empty(m, n, device="cuda", dtype=torch.float16)
    y2 = torch.empty(m, n, device="cuda", dtype=torch.float16)

    def step():
        quant.quant_linear(x1, *w1, out=y1)
        quant.quant_linear(x2, *w2, y1[0], out=y2)

    def expected():
        r1 = ref.w4a4_linear_reference(*ref.sym_quant_reference(x1), *w1, None, torch.float16)
        late = quant.quant_linear(x2, *w2, y1[0].clone())  # after a synchronize: the bias long written
        assert not late.isnan().any()
        torch.testing.assert_close(late, ref.w4a4_linear_reference(*ref.sym_quant_reference(x2), *w2, r1[0],
                                                                  torch.float16), rtol=2e-3, atol=1e-2)
        return late

    def refill(seed):
        x1.copy_(_x(m, k, seed=seed))
        y1.fill_(float("nan"))  # a bias read before the first layer wrote it would be NaN

    _eager_and_replays(step, y2, expected, refill)


@pytest.mark.parametrize("cuda_gemm", [True, False], ids=["cuda-gemm", "without-cuda-gemm"])
def test_quant_linear_routes_many_rows_by_rounds_of_tiles(monkeypatch, cuda_gemm):
    """Beyond 16 rows quant_linear runs a persistent GEMM from one full round of 128 x 128 tiles on Hopper
    (on sm_90 the CUDA wgmma GEMM, launched with PDL after a quantizer that triggers it; where it cannot
    run, here made so, the Gluon one on short rows with Triton 3.6, else the Triton one, after a
    quantizer that triggers nothing) and the per-tile kernel below it (or off Hopper)."""
    import triton

    from graphsafe.quant import triton_gemv, triton_kernels, triton_persist, triton_swap, wgmma_gemm
    ran, triggers = [], []

    def spy(module, name, label):
        real = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *a, **k: ran.append(label) or real(*a, **k))
    spy(triton_persist, "persist_into", "persist")
    spy(triton_swap, "big_into", "per-tile")
    real_wgmma, real_quant = wgmma_gemm.wgmma_into, triton_kernels.sym_quant_into
    monkeypatch.setattr(wgmma_gemm, "wgmma_into", lambda *a, **k: ran.append(
        "wgmma" + ("+pdl" if k["after_quantizer"] else "")) or real_wgmma(*a, **k))
    monkeypatch.setattr(triton_kernels, "sym_quant_into", lambda *a, **k: triggers.append(
        k.get("trigger", False)) or real_quant(*a, **k))
    capability = torch.cuda.get_device_capability()
    hopper = capability[0] == 9
    gluon = hopper and triton.__version__.startswith("3.6.")
    if gluon:  # gluon_ws imports Triton's experimental Gluon, which other Triton releases lay out differently
        from graphsafe.quant import gluon_ws
        spy(gluon_ws, "ws_into", "gluon")
    if cuda_gemm:
        cuda = capability == (9, 0) and wgmma_gemm.available(torch.device("cuda", torch.cuda.current_device()))
        if capability == (9, 0):
            assert cuda, "the CUDA wgmma GEMM should run on an H100 or H200 (cuda-bindings and NVRTC installed)"
    else:
        cuda = False
        monkeypatch.setattr(wgmma_gemm, "available", lambda device: False)
    pdl = triton_gemv.pdl_available(torch.device("cuda"))
    wgmma = "wgmma+pdl" if pdl else "wgmma"
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    for k, n, many in ((3584, 4608, wgmma if cuda else "gluon" if gluon else "persist"),
                       (18944, 3584, wgmma if cuda else "persist")):
        qw, ws = quant.pack_int4_weights(_x(n, k, seed=1, scale=0.05))
        for m in (17, 512, 2048):
            ran.clear()
            triggers.clear()
            x = _x(m, k)
            y = quant.quant_linear(x, qw, ws)
            q, s = ref.sym_quant_reference(x)
            torch.testing.assert_close(y, ref.w4a4_linear_reference(q, s, qw, ws))
            full_round = -(-n // 128) * -(-m // 128) >= 2 * sms
            expected = many if hopper and full_round else "per-tile"
            assert ran == [expected], (k, n, m, sms)
            assert triggers == [expected == "wgmma+pdl"], (k, n, m, triggers)


@pytest.mark.parametrize("m, k", [(1, ops.MAX_K - 6), (3, ops.MAX_K), (20, ops.MAX_K)])
def test_the_largest_k_accumulates_exactly(m, k):
    """Every code -8 in both operands at the largest K each kernel takes (dp4a, K % 8 == 0; the few-row
    and the tile GEMM; the many-row GEMMs on INT8 planes, per tile and persistent)."""
    from graphsafe.quant import triton_swap
    q = torch.full((m, k // 2), 0x88, dtype=torch.uint8, device="cuda")
    qw = torch.full((2, k // 2), 0x88, dtype=torch.uint8, device="cuda")
    ones_m = torch.ones(m, 1, device="cuda")
    y = quant.w4a4_linear(q, ones_m, qw, torch.ones(2, 1, device="cuda"), None, torch.float32)
    assert torch.equal(y, torch.full((m, 2), 64.0 * k, device="cuda"))
    planes = torch.full((2, m, k // 2), -128, dtype=torch.int8, device="cuda")
    triton_swap.big_into(planes, ones_m, qw, torch.ones(2, 1, device="cuda"), None, y)
    assert torch.equal(y, torch.full((m, 2), 64.0 * k, device="cuda"))
    from graphsafe.quant import triton_persist  # on K rounded down to TMA's 16-byte rows
    kt = k // 32 * 32
    planes = torch.full((2, m, kt // 2), -128, dtype=torch.int8, device="cuda")
    qw = torch.full((2, kt // 2), 0x88, dtype=torch.uint8, device="cuda")
    for cfg in (triton_persist.PersistConfig(), triton_persist.PersistConfig(split_n=1, split_m=1)):  # cut, whole
        y.zero_()
        triton_persist.persist_into(planes, ones_m, qw, torch.ones(2, 1, device="cuda"), None, y, cfg, sms=1)
        assert torch.equal(y, torch.full((m, 2), 64.0 * kt, device="cuda")), cfg


def test_non_finite_row_gives_nan_output_row():
    x = _x(3, 256)
    x[1, 3] = float("inf")
    lin = torch.nn.Linear(256, 64, device="cuda", dtype=torch.float16)
    y = quant.W4A4Linear.from_float(lin)(x)
    assert y[1].isnan().all() and y[[0, 2]].isfinite().all()


def test_w4a4_linear_module_is_close_to_fp16_linear():
    torch.manual_seed(0)
    lin = torch.nn.Linear(3584, 4608, device="cuda", dtype=torch.float16)
    mod = quant.W4A4Linear.from_float(lin)
    x = torch.randn(8, 3584, device="cuda", dtype=torch.float16)
    y, y16 = mod(x).float(), lin(x).float()
    rel = ((y - y16).norm() / y16.norm()).item()
    assert rel < 0.25, rel  # INT4 x INT4 error: noisy but correlated
    y_ref = ref.w4a4_linear_reference(*ref.sym_quant_reference(x), mod.qweight, mod.weight_scale, mod.bias,
                                      torch.float16)
    torch.testing.assert_close(mod(x), y_ref, rtol=1e-2, atol=1e-3)


def _model():
    torch.manual_seed(0)
    seq = torch.nn.Sequential(torch.nn.Linear(512, 1024), torch.nn.GELU(), torch.nn.Linear(1024, 512))
    seq = seq.to("cuda", torch.float16)
    return torch.nn.Sequential(quant.W4A4Linear.from_float(seq[0]), seq[1], quant.W4A4Linear.from_float(seq[2]))


def test_cuda_graph_replay_follows_new_inputs_with_out_buffers():
    x = torch.zeros(4, 3584, device="cuda", dtype=torch.float16)
    q = torch.empty(4, 1792, dtype=torch.uint8, device="cuda")
    s = torch.empty(4, 1, dtype=torch.float16, device="cuda")
    qw, ws = quant.pack_int4_weights(_x(4608, 3584, seed=5, scale=0.05))
    y = torch.empty(4, 4608, dtype=torch.float16, device="cuda")
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())  # its inputs were made on this one
    with torch.cuda.stream(stream):
        for backend in ("triton", "cuda"):  # warm-up compiles and loads every kernel before capture
            quant.sym_quant(x, out=q, scale_out=s, backend=backend)
        quant.w4a4_linear(q, s, qw, ws, out=y)
    torch.cuda.synchronize()
    for backend in ("triton", "cuda"):
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g, stream=stream):
            quant.sym_quant(x, out=q, scale_out=s, backend=backend)
            quant.w4a4_linear(q, s, qw, ws, out=y)
        for seed in range(3):
            x.copy_(_x(4, 3584, seed=seed))
            g.replay()
            torch.cuda.synchronize()
            q_ref, s_ref = ref.sym_quant_reference(x)
            assert torch.equal(q, q_ref) and torch.equal(s, s_ref), (backend, seed)
            torch.testing.assert_close(y, ref.w4a4_linear_reference(q_ref, s_ref, qw, ws), rtol=1e-2, atol=1e-3)


def test_torch_compile_fullgraph_and_reduce_overhead():
    model = _model()
    x = _x(8, 512)
    eager = model(x)
    compiled = torch.compile(model, fullgraph=True)
    torch.testing.assert_close(compiled(x), eager, rtol=0, atol=0)
    torch._dynamo.reset()
    graphed = torch.compile(model, mode="reduce-overhead", fullgraph=True)
    for seed in range(3):
        xi = _x(8, 512, seed=seed)
        torch.testing.assert_close(graphed(xi).clone(), model(xi), rtol=0, atol=0)


@pytest.mark.parametrize("backend", ["triton", "cuda"])
def test_doctor_check_sym_quant_is_clean(backend):
    report = check(lambda x: quant.sym_quant(x, backend=backend), lambda seed: (_x(4, 3584, seed=seed),),
                   name=f"sym_quant[{backend}]")
    assert report.verdict == "match" and report.findings == [], [(f.code, f.message) for f in report.findings]


def test_doctor_check_w4a4_linear_and_model_are_clean():
    qw, ws = quant.pack_int4_weights(_x(4608, 3584, seed=5, scale=0.05))
    report = check(lambda q, s: quant.w4a4_linear(q, s, qw, ws),
                   lambda seed: quant.sym_quant(_x(4, 3584, seed=seed)), name="w4a4_linear")
    assert report.verdict == "match" and report.findings == [], [(f.code, f.message) for f in report.findings]
    report = check(lambda x: quant.quant_linear(x, qw, ws), lambda seed: (_x(2, 3584, seed=seed),),
                   name="quant_linear")
    assert report.verdict == "match" and report.findings == [], [(f.code, f.message) for f in report.findings]
    model = _model()
    report = check(model, lambda seed: (_x(8, 512, seed=seed),), name="W4A4 MLP")
    assert report.verdict == "match" and report.findings == [], [(f.code, f.message) for f in report.findings]


@pytest.mark.parametrize("m, k", [(6, 3584), (3, 18944), (40, 3584), (2048, 3584)])
def test_doctor_check_quant_linear_is_clean_on_every_gemm(m, k):
    """The GEMMs the few-row check above does not reach: 6 rows take the tensor-core GEMV on MMA planes,
    3 rows of 18944 the one on packed codes, 40 the per-tile kernel, 2048 the many-row persistent GEMM
    (on sm_90 the CUDA wgmma GEMM, launched with PDL after its quantizer)."""
    qw, ws = quant.pack_int4_weights(_x(4608, k, seed=5, scale=0.05))
    report = check(lambda x: quant.quant_linear(x, qw, ws), lambda seed: (_x(m, k, seed=seed),),
                   name=f"quant_linear[{m} rows of {k}]")
    assert report.verdict == "match" and report.findings == [], [(f.code, f.message) for f in report.findings]


def test_w4a4_example_captures_verifies_and_times_every_bucket():
    import subprocess
    import sys
    from pathlib import Path
    script = Path(__file__).parent.parent / "examples" / "w4a4_mlp.py"
    p = subprocess.run([sys.executable, str(script), "--hidden", "512", "--inter", "1536", "--buckets", "1,4,8",
                        "--steps", "3"], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr[-3000:]
    rows = [line for line in p.stdout.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [r.split("|")[1].strip() for r in rows] == ["1", "4", "8"], p.stdout
    assert all(float(v) > 0 for r in rows for v in r.strip("| ").split("|")[1:]), rows
    assert "buckets [1, 4, 8] captured; first replays verified against eager: True" in p.stdout
