"""The persistent many-row W4A4 GEMM (graphsafe.quant.triton_persist) without a GPU: its round plan and
routing as pure functions, and its kernel exact under Triton's interpreter on ragged shapes that take
each plan (whole rounds, a last round cut in 2, 4 or 8 pieces, everything in one cut round)."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from graphsafe.quant import reference as ref  # noqa: E402
from test_quant_cpu import _assert_gemm_exact, _triton, _x, interpreted  # noqa: E402


def _persist():
    return pytest.importorskip("graphsafe.quant.triton_persist", reason="triton is not installed")


@pytest.mark.parametrize("tiles, programs, split, expected", [
    (576, 264, (2, 2), (264, 48, 2, 2)),  # 3584->4608 at M = 2048 on an H100: the third round's 48 tiles in 4
    (592, 264, (2, 2), (264, 64, 2, 2)),  # 3584->18944 at M = 512
    (448, 264, (2, 2), (264, 0, 1, 1)),  # 18944->3584 at M = 2048: the last round 184 tiles, over half full
    (2304, 264, (2, 2), (264, 0, 1, 1)),  # 3584->4608 at M = 8192
    (528, 264, (2, 2), (264, 0, 1, 1)),  # whole rounds
    (600, 264, (2, 2), (264, 72, 2, 1)),  # 72 x 4 pieces would not fit one round: halves
    (530, 264, (2, 4), (264, 2, 2, 4)),
    (530, 264, (1, 4), (264, 2, 1, 4)),
    (576, 264, (1, 1), (264, 0, 1, 1)),  # never cut
    (9, 4, (2, 2), (4, 1, 2, 2)),
    (3, 264, (2, 2), (264, 3, 2, 2)),  # below one round (quant_linear sends these to the per-tile kernel)
    (0, 264, (2, 2), (0, 0, 1, 1)),
])
def test_round_plan(tiles, programs, split, expected):
    assert _persist().plan(tiles, programs, *split) == expected


def test_routing_takes_the_persistent_gemm_from_one_full_round_on_hopper_only():
    tp = _persist()
    assert tp.wanted(2048, 4608, 90, 132) and tp.wanted(512, 18944, 90, 132) and tp.wanted(8192, 3584, 90, 132)
    assert not tp.wanted(512, 4608, 90, 132)  # 144 tiles < 264 programs: the per-tile kernel's half-size tiles
    assert not tp.wanted(512, 3584, 90, 132) and not tp.wanted(17, 18944, 90, 132)
    assert not tp.wanted(8192, 4608, 80, 108)  # no TMA before sm_90
    assert not tp.wanted(8192, 4608, 100, 148)  # Blackwell: never measured, the per-tile kernel
    assert tp.wanted(512, 4608, 90, 72)  # fewer SMs: one round is fewer tiles


def test_refuses_operands_tma_cannot_address():
    tp = _persist()
    planes = torch.zeros(2, 20, 50, dtype=torch.int8)  # rows of 50 bytes: not 16-byte aligned
    qw = torch.zeros(8, 50, dtype=torch.uint8)
    assert not tp.usable(planes, qw)
    with pytest.raises(ValueError, match="16-byte aligned"):
        tp.persist_into(planes, torch.ones(20, 1), qw, torch.ones(8, 1), None, torch.empty(20, 8), sms=2)
    assert tp.usable(torch.zeros(2, 20, 48, dtype=torch.int8), torch.zeros(8, 48, dtype=torch.uint8))


@interpreted
@pytest.mark.parametrize("m, k, n, tile, sms, split, plan", [
    (40, 96, 80, (32, 16, 16), 3, (2, 2), (3, 0, 1, 1)),  # 9 tiles in 3 whole rounds
    (40, 96, 80, (32, 16, 16), 4, (2, 2), (4, 1, 2, 2)),  # the third round's one tile in 4 pieces
    (40, 96, 80, (32, 16, 16), 4, (1, 4), (4, 1, 1, 4)),  # ... of 4 activation rows each
    (33, 224, 130, (32, 16, 32), 5, (2, 2), (5, 0, 1, 1)),  # K steps of 32 bytes over 112: a ragged last step
    (33, 224, 130, (32, 16, 32), 64, (2, 2), (64, 15, 2, 2)),  # everything in one cut round
    (70, 64, 100, (32, 64, 16), 7, (2, 4), (7, 1, 2, 2)),  # 8 tiles: the last in 4 pieces, 2 rows past M
    (70, 64, 200, (32, 64, 16), 13, (2, 4), (13, 1, 2, 4)),  # 14 tiles: the last in 8 pieces
    (130, 96, 64, (32, 64, 16), 5, (2, 2), (5, 1, 2, 2)),
    (20, 288, 50, (32, 16, 32), 3, (2, 2), (3, 1, 2, 1)),
])
def test_persistent_gemm_is_exact_for_each_plan(m, k, n, tile, sms, split, plan):
    tk, tp = _triton(), _persist()
    bn, bm, bkb = tile
    cfg = tp.PersistConfig(bn=bn, bm=bm, bkb=bkb, group_n=2, num_warps=4, num_stages=2, per_sm=1,
                           split_n=split[0], split_m=split[1])
    assert tp.plan(-(-n // bn) * -(-m // bm), sms, *split) == plan
    x = _x(m, k)
    q, s = ref.sym_quant_reference(x, 0.8)  # clip < 1: codes reach -8
    qw, ws = ref.pack_int4_weights_reference(_x(n, k, seed=1))
    planes = torch.empty((2, m, q.shape[1]), dtype=torch.int8)
    tk.sym_quant_into(x, 0.8, planes, torch.empty_like(s))
    _assert_gemm_exact(lambda sa, sb, bias, out: tp.persist_into(planes, sa, qw, sb, bias, out, cfg, sms=sms),
                       q, s, qw, ws)


@interpreted
def test_many_rows_into_falls_back_to_the_per_tile_kernel_off_gpu():
    tk, tp = _triton(), _persist()
    x = _x(20, 50)  # 25-byte rows: TMA could not take them anyway
    q, s = ref.sym_quant_reference(x, 1.0)
    qw, ws = ref.pack_int4_weights_reference(_x(9, 50, seed=1))
    planes = torch.empty((2, 20, q.shape[1]), dtype=torch.int8)
    tk.sym_quant_into(x, 1.0, planes, torch.empty_like(s))
    _assert_gemm_exact(lambda sa, sb, bias, out: tp.many_rows_into(planes, sa, qw, sb, bias, out), q, s, qw, ws)
