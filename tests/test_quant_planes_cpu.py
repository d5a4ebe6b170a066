"""The tensor-core GEMV on MMA planes (``graphsafe.quant.mma_planes``, ``csrc/w4a4_planes.cu``) on the CPU:
NVRTC compiles every configuration for sm_90 and sm_80 without spills, its K loop stays lean (no guard,
no unpacking of activations), with PDL it requests weights before it waits and releases after, and its
host side refuses what it cannot run and routes quant_linear. Needs cuda-bindings and the NVRTC library,
not a GPU; the kernel runs in test_gpu_mma_planes.py."""
from __future__ import annotations

import re

import pytest

torch = pytest.importorskip("torch")

from graphsafe.quant import ops  # noqa: E402


@pytest.fixture
def nvrtc():
    pytest.importorskip("cuda.bindings.nvrtc", reason="cuda-bindings is not installed")
    from graphsafe.quant import mma_gemv
    try:
        mma_gemv.nvrtc_version()
    except Exception as exc:  # noqa: BLE001 - cuda-pathfinder's error when libnvrtc is missing
        pytest.skip(f"no NVRTC library: {exc}")
    return mma_gemv


def _configs():
    from graphsafe.quant.mma_planes import PlanesConfig
    grid = [PlanesConfig(w, t, r, r == 3, xsum=r != 2) for w in (1, 4, 8, 12) for t in (1, 2) for r in (1, 2, 3, 4)
            if w < 12 or t == 1 and r <= 3]
    # the defaults and the swept configurations without sums that the grid above has only with them
    return grid + [PlanesConfig(8, 1, 2, True), PlanesConfig(10, 1, 2, xsum=False), PlanesConfig(8, 1, 3, xsum=False),
                   PlanesConfig(8, 1, 1, xsum=False), PlanesConfig(4, 1, 3, xsum=False),
                   PlanesConfig(10, 1, 2, xsum=False, balance=1), PlanesConfig(10, 1, 2, True, xsum=False, balance=1),
                   PlanesConfig(8, 2, 2, balance=1)]


@pytest.mark.parametrize("cfg", _configs(),
                         ids=lambda c: f"w{c.warps}t{c.tiles}r{c.ring}{'p' if c.prefetch else ''}{'' if c.xsum else 'bare'}"
                                      f"{'bal' if c.balance else ''}")
@pytest.mark.parametrize("m", [4, 16])
def test_planes_gemv_compiles_without_spilling(nvrtc, cfg, m):
    """Every configuration compiles for sm_90 with no spills; for sm_80 (no PDL) it compiles, where ptxas
    spills a few bytes in two configurations that are never the default (8 warps and two tiles, with a
    ring of 4 at 4 rows or of 1 at 16 rows)."""
    from graphsafe.quant import mma_planes
    for arch, pdl in ((90, True), (80, False)):
        for types in ((torch.float16, torch.float16, None, torch.float16),
                      (torch.bfloat16, torch.float32, torch.bfloat16, torch.float32)):
            log = nvrtc.compile_log(arch, mma_planes.macros(m, cfg, types, pdl), mma_planes.SOURCE)
            assert "0 bytes spill stores" in log or (arch == 80 and cfg.warps == 8 and cfg.tiles == 2), log


@pytest.mark.parametrize("sums", [True, False], ids=["sums", "bare"])
def test_planes_gemv_loop_is_loads_mma_and_one_instruction_per_weight_register(nvrtc, sums):
    """The default configuration's K loop at M = 4 in 3584->4608, disassembled: per weight word, two
    LOP3 (its even and odd columns) and nothing that unpacks activations; under 5 instructions a word
    (the GEMV on packed codes needs 10.2), and no predicated zeroing of words past K (CS2R). Without
    sums, one shift more for the even columns (an IMAD.SHL or SHF a register): under 6 a word."""
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    gemv_sass = pytest.importorskip("gemv_sass")
    pytest.importorskip("triton", reason="nvdisasm comes with triton")
    from graphsafe.quant import mma_planes
    h = torch.float16
    import dataclasses
    cfg = dataclasses.replace(mma_planes.planes_config(4, 4608, 448), xsum=sums)
    cubin = nvrtc.compile_cubin(90, mma_planes.macros(4, cfg, (h, h, None, h), True), mma_planes.SOURCE)
    counts, _ = gemv_sass.loop_counts(cubin)
    words = cfg.ring * cfg.tiles * 2 * 4
    assert counts["LOP3"] == 2 * words and counts["IMMA"] == words // 2 and counts["CS2R"] == 0, counts
    assert sum(counts.values()) < (5 if sums else 6) * words, counts


def _ptx_ops(nvrtc, defines):
    from graphsafe.quant import mma_planes
    ptx = nvrtc.compile_ptx(90, defines, mma_planes.SOURCE)
    return [ln.strip() for ln in ptx.splitlines() if re.match(r"\s+[a-z@]", ln)]


@pytest.mark.parametrize("ring", [1, 2, 4])
def test_planes_gemv_requests_weights_then_waits_then_releases(nvrtc, ring):
    """With PDL, the first weights are requested before the wait for the quantizer (with a ring one
    deep, none are in flight: the wait comes first), the next kernel released after it, and every
    activation load comes after the wait; without PDL no grid-dependency control at all."""
    from graphsafe.quant import mma_planes
    h = torch.float16
    cfg = mma_planes.PlanesConfig(8, 1, ring)
    op = _ptx_ops(nvrtc, mma_planes.macros(4, cfg, (h, h, h, h), True))
    at = {p: [i for i, ln in enumerate(op) if ln.startswith(p)]
          for p in ("griddepcontrol.wait", "griddepcontrol.launch_dependents", "ld.global.nc.L1::no_allocate",
                    "ld.global.nc.v4")}
    (wait,), (release,), weights, inputs = at.values()
    assert wait < release and min(inputs) > wait
    assert (min(weights) < wait) == (ring > 1)
    assert not any(ln.startswith("griddepcontrol") for ln in _ptx_ops(nvrtc, mma_planes.macros(4, cfg, (h, h, h, h),
                                                                                                False)))


def test_planes_gemv_without_early_loads_requests_its_weights_after_the_wait(nvrtc):
    """PlanesConfig(early=False), a benchmark's variant: every weight load comes after the PDL wait."""
    from graphsafe.quant import mma_planes
    h = torch.float16
    op = _ptx_ops(nvrtc, mma_planes.macros(4, mma_planes.PlanesConfig(8, 1, 3, xsum=False, early=False),
                                           (h, h, h, h), True))
    weights = [i for i, ln in enumerate(op) if ln.startswith("ld.global.nc.L1::no_allocate")]
    assert weights and min(weights) > op.index("griddepcontrol.wait;")


def test_planes_gemv_prefetches_its_weight_rows_before_the_wait_only_with_pdl(nvrtc):
    from graphsafe.quant import mma_planes
    h = torch.float16
    cfg = mma_planes.PlanesConfig(8, 2, 3, prefetch=True)
    op = _ptx_ops(nvrtc, mma_planes.macros(4, cfg, (h, h, h, h), True))
    prefetch = [i for i, ln in enumerate(op) if ln.startswith("cp.async.bulk.prefetch.L2.global")]
    assert len(prefetch) == 1 and prefetch[0] < op.index("griddepcontrol.wait;")
    assert not any("prefetch" in ln for ln in _ptx_ops(nvrtc, mma_planes.macros(4, cfg, (h, h, h, h), False)))


@pytest.mark.parametrize("head", [0, 25, 50])
def test_planes_gemv_splits_its_prefetch_around_the_wait(nvrtc, head):
    """PlanesConfig(prefetch=True, head=h): the first h % of each weight row prefetched before the PDL wait
    (nothing at 0), the rest after it, once the block has requested its first planes."""
    from graphsafe.quant import mma_planes
    h = torch.float16
    op = _ptx_ops(nvrtc, mma_planes.macros(4, mma_planes.PlanesConfig(8, 1, 2, True, xsum=False, head=head),
                                           (h, h, None, h), True))
    wait = op.index("griddepcontrol.wait;")
    prefetch = [i for i, ln in enumerate(op) if ln.startswith("cp.async.bulk.prefetch.L2.global")]
    inputs = [i for i, ln in enumerate(op) if ln.startswith("ld.global.nc.v4")]
    assert len([i for i in prefetch if i < wait]) == (head > 0)
    after = [i for i in prefetch if i > wait]
    assert len(after) == 1 and after[0] > min(inputs) > wait


def test_planes_gemv_refuses_what_it_cannot_run():
    from graphsafe.quant import mma_planes, triton_kernels
    qw = torch.zeros(8, 64, dtype=torch.uint8)
    planes, xsum = torch.zeros(4, triton_kernels.mma_planes_width(128), dtype=torch.int8), torch.zeros(4, dtype=torch.int32)
    ones = torch.ones(4, 1)
    assert mma_planes.supports(qw, 4) and not mma_planes.supports(qw, 17) and not mma_planes.supports(qw[:, 8:], 4)
    assert not mma_planes.supports(torch.zeros(8, 40, dtype=torch.uint8), 4)  # K % 32
    with pytest.raises(ValueError, match="takes 1-16 rows"):
        mma_planes.planes_into(planes, xsum, ones, qw[:, 8:], torch.ones(8, 1), None, torch.empty(4, 8))
    for bad in (planes[:, :-1], planes.to(torch.int16), planes[:, :64]):
        with pytest.raises(ValueError, match="planes must be int8"):
            mma_planes.planes_into(bad, xsum, ones, qw, torch.ones(8, 1), None, torch.empty(4, 8))
    with pytest.raises(ValueError, match="xsum"):
        mma_planes.planes_into(planes, xsum.long(), ones, qw, torch.ones(8, 1), None, torch.empty(4, 8))
    with pytest.raises(ValueError, match="xsum contiguous"):
        mma_planes.planes_into(planes, torch.zeros(4, 2, dtype=torch.int32)[:, 0], ones, qw, torch.ones(8, 1), None,
                               torch.empty(4, 8))
    assert not mma_planes.supports(torch.zeros(8, 128, dtype=torch.uint8)[:, ::2], 4)  # not densely packed
    assert not mma_planes.supports(qw.view(torch.int8), 4)
    for bad in (dict(scale=torch.ones(1, 1)), dict(w_scale=torch.ones(8, 2)[:, 0]), dict(bias=torch.ones(7)),
                dict(out=torch.empty(4, 9)), dict(out=torch.empty(8, 4).t())):
        args = {**dict(scale=ones, w_scale=torch.ones(8, 1), bias=None, out=torch.empty(4, 8)), **bad}
        with pytest.raises(ValueError, match=f"^{next(iter(bad))} must"):
            mma_planes.planes_into(planes, xsum, args["scale"], qw, args["w_scale"], args["bias"], args["out"])
    with pytest.raises(ValueError, match="takes no xsum"):
        mma_planes.planes_into(planes, xsum, ones, qw, torch.ones(8, 1), None, torch.empty(4, 8),
                               mma_planes.PlanesConfig(8, 1, 2, xsum=False))
    with pytest.raises(ValueError, match="needs xsum"):
        mma_planes.planes_into(planes, None, ones, qw, torch.ones(8, 1), None, torch.empty(4, 8),
                               mma_planes.PlanesConfig(8, 1, 2))
    with pytest.raises(mma_planes.mma_gemv.MmaUnavailable, match="needs a CUDA device"):
        mma_planes.planes_into(planes, xsum, ones, qw, torch.ones(8, 1), None, torch.empty(4, 8))


@pytest.mark.parametrize("k, n, rows", [(3584, 4608, range(1, 9)), (3584, 18944, range(2, 9)),
                                        (18944, 3584, range(9, 17)), (8192, 1024, range(9, 17))])
def test_quant_linear_takes_the_planes_gemv_where_it_won(k, n, rows):
    """1-8 rows on rows of up to 4096 (from 2 in wide layers), 9-16 on longer ones; the configuration per
    layer shape: 10 warps without sums, on rows up to 4096 the rows shared out over a full wave of blocks,
    on longer ones the weights prefetched."""
    import dataclasses

    from graphsafe.quant.mma_planes import PlanesConfig, planes_config
    assert [m for m in range(0, 20) if ops.planes_wanted(m, n, k // 2)] == list(rows)
    expected = PlanesConfig(10, 1, 2, prefetch=k > 4096, xsum=False)
    assert all(planes_config(m, n, k // 8) == dataclasses.replace(expected, balance=int(k <= 4096))
               for m in rows)


def test_planes_gemv_timeline_is_compiled_in_only_when_asked(nvrtc):
    """TIMELINE reads %globaltimer three times into a module global sized by it; without it the program
    has neither, and asking a configuration without one for its timeline is refused."""
    from graphsafe.quant import mma_planes
    h = torch.float16
    with_t = nvrtc.compile_ptx(90, mma_planes.macros(4, mma_planes.PlanesConfig(8, 1, 2, timeline=288),
                                                     (h, h, None, h), True), mma_planes.SOURCE)
    without = nvrtc.compile_ptx(90, mma_planes.macros(4, mma_planes.PlanesConfig(8, 1, 2), (h, h, None, h), True),
                                mma_planes.SOURCE)
    assert with_t.count("%globaltimer") == 3 and "w4a4_timeline[9216]" in with_t
    assert "%globaltimer" not in without and "w4a4_timeline" not in without
    with pytest.raises(ValueError, match="keeps no timeline"):
        mma_planes.timeline(mma_planes.PlanesConfig(8, 1, 2), 4, (h, h, None, h), True, torch.device("cpu"))


def test_triton_timelines_refuse_a_buffer_of_the_wrong_shape():
    """A timeline buffer holds 4 int64 per program: the quantizer's one program per row (in a PDL chain),
    the dp4a GEMV's one per BN outputs; anything else is refused before a launch."""
    tk = pytest.importorskip("graphsafe.quant.triton_kernels", reason="triton is not installed")
    from graphsafe.quant import triton_gemv
    x = torch.zeros(2, 64, dtype=torch.float16)
    q, s = torch.empty(2, 32, dtype=torch.uint8), torch.empty(2, 1, dtype=torch.float16)
    for bad in (torch.zeros(2, 4, dtype=torch.int32), torch.zeros(3, 4, dtype=torch.int64)):
        with pytest.raises(ValueError, match="timeline must be int64"):
            tk.sym_quant_into(x, 1.0, q, s, tk.QuantConfig(64, 0, False, 4), trigger=True, wait=True, timeline=bad)
    cfg = triton_gemv.Dp4aConfig(4, 128, 1)
    with pytest.raises(ValueError, match=r"timeline must be int64 \(2, 4\)"):
        triton_gemv.dp4a_into(q, s, torch.zeros(8, 32, dtype=torch.uint8), torch.ones(8, 1), None,
                              torch.empty(2, 8), cfg, timeline=torch.zeros(8, 4, dtype=torch.int64))


def test_nvrtc_writes_into_buffers_of_its_own(nvrtc):
    """NVRTC writes its log and its output into buffers the caller passes. A program that compiles
    without a message has a log of one byte, and ``b" " * 1`` is CPython's shared one-byte object: written
    into, every b" " in the process became b"\\x00" (lint's blanked views then held NUL bytes). The
    buffers are bytearrays of their own."""
    from graphsafe.quant import mma_planes
    h = torch.float16
    defines = mma_planes.macros(4, mma_planes.PlanesConfig(8, 1, 2), (h, h, None, h), True)
    nvrtc._compile(90, defines, source=mma_planes.SOURCE)
    nvrtc.compile_ptx(90, defines, mma_planes.SOURCE)
    assert bytes([32])[0] == 32 and bytes([32]) * 3 == bytes((32, 32, 32))  # the shared b" " is still a space


def test_packed_code_gemv_checks_its_operands_like_the_planes_gemv():
    """mma_gemv.mma_into refuses, before anything reaches the GPU, what its kernel would misread: codes
    or weights not packed uint8 with unit column stride, rows of different bytes, and the epilogue's
    operands (the check it shares with the planes GEMV)."""
    from graphsafe.quant import mma_gemv
    q, qw = torch.zeros(4, 64, dtype=torch.uint8), torch.zeros(8, 64, dtype=torch.uint8)
    ones, ok = torch.ones(4, 1), dict(scale=torch.ones(4, 1), w_scale=torch.ones(8, 1), bias=None, out=torch.empty(4, 8))
    for bad_q, bad_w in ((q.view(torch.int8), qw), (q, qw.view(torch.int8)), (q, torch.zeros(8, 128, dtype=torch.uint8)),
                         (torch.zeros(4, 128, dtype=torch.uint8)[:, ::2], qw)):
        with pytest.raises(ValueError, match="packed uint8"):
            mma_gemv.mma_into(bad_q, ones, bad_w, torch.ones(8, 1), None, torch.empty(4, 8))
    for bad in (dict(scale=torch.ones(1, 1)), dict(w_scale=torch.ones(8, 2)[:, 0]), dict(bias=torch.ones(7)),
                dict(out=torch.empty(4, 9)), dict(out=torch.empty(8, 4).t())):
        args = {**ok, **bad}
        with pytest.raises(ValueError, match=f"^{next(iter(bad))} must"):
            mma_gemv.mma_into(q, args["scale"], qw, args["w_scale"], args["bias"], args["out"])
    for bad in (dict(scale=torch.ones(())), dict(w_scale=torch.ones(8, 1, dtype=torch.int32)),
                dict(out=torch.empty(4, 8, dtype=torch.float64))):
        args = {**ok, **bad}
        with pytest.raises(ValueError, match=f"^{next(iter(bad))} must"):
            mma_gemv.mma_into(q[:1] if "scale" in bad else q, args["scale"], qw, args["w_scale"], args["bias"],
                              args["out"][:1] if "scale" in bad else args["out"])
    with pytest.raises(mma_gemv.MmaUnavailable, match="needs a CUDA device"):
        mma_gemv.mma_into(q, ones, qw, torch.ones(8, 1), None, torch.empty(4, 8))


def test_few_chain_candidates_have_distinct_labels_and_the_routed_ones():
    """benchmarks/few_chain.py: every candidate of every benchmark shape has its own label (results and the
    after-a-torch-op picks are keyed by it), the routed planes configuration is among them, marked
    ``default``, and so are the packed route, the plain-order GEMV and the quantizer warp variants."""
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    few_chain = pytest.importorskip("few_chain")
    from graphsafe.quant.mma_planes import planes_config
    for k, n in ((3584, 4608), (3584, 18944), (18944, 3584)):
        for m in (1, 4, 16):
            default = planes_config(m, n, k // 8)
            labels = [few_chain.label(kind, cfg, warm, default) for kind, cfg, warm in few_chain.candidates(m, n, k, [8, 10])]
            assert len(set(labels)) == len(labels), labels
            assert sum("default" in lb for lb in labels) == 2 and "packed warm" in labels, labels
            assert any(lb.endswith(" plain") for lb in labels) and {"packed q4", "packed q16", "packed q32"} <= set(labels)


def _block_rows(n: int, blocks: int) -> list[int]:
    """Rows of each block under BALANCE, as the kernel shares them out: n // G each, one more for the first
    n % G blocks."""
    return [n // blocks + (b < n % blocks) for b in range(blocks)]


def test_balanced_grid_fills_every_sm_alike_and_never_overfills_a_block():
    """PlanesConfig.balance: 3584->4608 at 4 rows and 3 blocks an SM on 132 SMs takes 392 blocks of 11-12
    rows, 4 SMs a block short for the next call's quantizer (not 288 of 16, a third block on 24 SMs
    only), 396 with no SM spare; a layer too wide for one wave keeps its blocks of 16 tiles rows, and so
    do layers whose tiles put no more than two blocks on any SM (3584->3584, 3584->512); a layer
    narrower than the GPU at one block an SM gets a block a row, none empty; and no block ever holds
    more rows than its tiles (the kernel has no guard for that)."""
    import dataclasses

    from graphsafe.quant.mma_planes import PlanesConfig, grid
    bal, tiled = PlanesConfig(10, 1, 2, xsum=False, balance=1), PlanesConfig(10, 1, 2, xsum=False)
    assert grid(4608, tiled, 3, 132, 4) == 288
    assert grid(4608, bal, 3, 132, 4) == 392 and set(_block_rows(4608, 392)) == {11, 12}
    assert grid(4608, dataclasses.replace(bal, spare=0), 3, 132, 4) == 396
    assert grid(3584, dataclasses.replace(bal, balance=2), 3, 132, 4) == 392  # balance 2: wherever it is more
    assert grid(18944, bal, 3, 132, 16) == 1184 and set(_block_rows(18944, 1184)) == {16}
    assert grid(3584, bal, 3, 132, 4) == 224 and grid(512, bal, 3, 132, 4) == 32
    assert grid(50, bal, 1, 132) == 50 and set(_block_rows(50, 50)) == {1}
    assert grid(4608, bal, 3, 114, 2) == 340  # an H100 PCIe: 288 tiles, a third block on 60 of 114 SMs
    for cfg in (bal, PlanesConfig(8, 2, 2, balance=2), dataclasses.replace(bal, spare=200, balance=2)):
        for n in (1, 7, 16, 17, 31, 32, 33, 396, 397, 3000, 4607, 6336, 6337, 65536):
            for resident, sms, m in ((1, 1, 1), (3, 132, 4), (4, 132, 16), (2, 78, 9)):
                blocks = grid(n, cfg, resident, sms, m)
                rows = _block_rows(n, blocks)
                assert sum(rows) == n and min(rows) >= 1 and max(rows) <= 16 * cfg.tiles, (n, cfg, resident, sms)


def test_plan_launches_the_balanced_program_only_where_it_gives_more_blocks(monkeypatch):
    """mma_planes.plan with the driver's occupancy stood in (3 blocks an SM, 132 SMs): balance 1 on
    3584->4608 at 4 rows runs the BALANCE program on 392 blocks; on 3584->3584 (224 tiles, no SM with
    a third) and 3584->18944 (more tiles than a wave) the program without it on the tiles; balance 2 takes
    3584->3584 to 392 blocks too, and balance 0 never leaves the tiles."""
    import dataclasses

    from graphsafe.quant import mma_planes
    monkeypatch.setattr(mma_planes, "_resident", lambda *a: (3, 132))
    mma_planes._plan.cache_clear()
    types = (torch.float16, torch.float16, None, torch.float16)
    bal = mma_planes.PlanesConfig(10, 1, 2, xsum=False, balance=1)
    try:
        assert mma_planes._plan(0, 90, 4, 4608, bal, types, True) == (bal, 392)
        assert mma_planes._plan(0, 90, 4, 3584, bal, types, True) == (dataclasses.replace(bal, balance=0), 224)
        assert mma_planes._plan(0, 90, 4, 18944, bal, types, True) == (dataclasses.replace(bal, balance=0), 1184)
        forced = dataclasses.replace(bal, balance=2)
        assert mma_planes._plan(0, 90, 4, 3584, forced, types, True) == (forced, 392)
        tiles = dataclasses.replace(bal, balance=0)
        assert mma_planes._plan(0, 90, 4, 4608, tiles, types, True) == (tiles, 288)
    finally:
        mma_planes._plan.cache_clear()
    with pytest.raises(ValueError, match="balance"):
        mma_planes.PlanesConfig(10, 1, 2, balance=3)
    with pytest.raises(ValueError, match="spare"):
        mma_planes.PlanesConfig(10, 1, 2, balance=1, spare=-1)


def test_plan_reads_the_occupancy_of_the_program_it_may_launch(monkeypatch):
    """The tiles' evenness is judged with the program the tiles run: where the balance cannot apply
    (96 outputs, 6 tiles) only that program's occupancy is asked for, so only that program is compiled
    and loaded (the GPU test of a GEMV first met inside a capture counts the loads). Where it applies,
    the full wave is sized by the BALANCE program's own occupancy: if BALANCE fitted 2 blocks an SM
    where the tiles' program fits 3, 3584->4608 keeps its 288 tiles (a 2-block wave is 260 blocks)."""
    import dataclasses

    from graphsafe.quant import mma_planes
    asked = []

    def resident(index, arch, defines, threads):
        balance = dict(defines)["BALANCE"]
        asked.append(balance)
        return (2 if balance and two_for_balance else 3), 132
    monkeypatch.setattr(mma_planes, "_resident", resident)
    types = (torch.float16, torch.float16, None, torch.float16)
    bal = mma_planes.PlanesConfig(10, 1, 2, xsum=False, balance=1)
    mma_planes._plan.cache_clear()
    try:
        two_for_balance = False
        assert mma_planes._plan(0, 90, 6, 96, bal, types, False) == (dataclasses.replace(bal, balance=0), 6)
        assert asked == [0]
        assert mma_planes._plan(0, 90, 4, 4608, bal, types, True) == (bal, 392)
        assert asked == [0, 0, 1]
        mma_planes._plan.cache_clear()
        two_for_balance = True
        assert mma_planes._plan(0, 90, 4, 4608, bal, types, True) == (dataclasses.replace(bal, balance=0), 288)
    finally:
        mma_planes._plan.cache_clear()
