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


def test_routing_takes_the_gluon_gemm_on_short_rows_with_triton_3_6_on_hopper_only():
    tp = _persist()
    assert tp.gluon_wanted(1792, 90, "3.6.0") and tp.gluon_wanted(4096, 90, "3.6.1")  # K = 3584, 8192
    assert not tp.gluon_wanted(9472, 90, "3.6.0")  # K = 18944: the Triton kernel was faster
    assert not tp.gluon_wanted(4097, 90, "3.6.0") and not tp.gluon_wanted(0, 90, "3.6.0")
    assert not tp.gluon_wanted(1792, 90, "3.5.1") and not tp.gluon_wanted(1792, 90, "3.7.0")  # Gluon's API moves
    assert not tp.gluon_wanted(1792, 80, "3.6.0") and not tp.gluon_wanted(1792, 100, "3.6.0")  # Hopper only


def test_refuses_operands_tma_cannot_address():
    tp = _persist()
    planes, qw = torch.zeros(2, 20, 48, dtype=torch.int8), torch.zeros(8, 48, dtype=torch.uint8)
    assert tp.usable(planes, qw)
    unaligned = {
        "rows of 50 bytes": (torch.zeros(2, 20, 50, dtype=torch.int8), torch.zeros(8, 50, dtype=torch.uint8)),
        "a plane stride of 968 bytes": (torch.zeros(2, 968, dtype=torch.int8)[:, :960].view(2, 20, 48), qw),
        "activations 8 bytes off": (torch.zeros(2 * 20 * 48 + 8, dtype=torch.int8)[8:].view(2, 20, 48), qw),
        "weights 8 bytes off": (planes, torch.zeros(8 * 48 + 8, dtype=torch.uint8)[8:].view(8, 48)),
        "weight rows not contiguous": (planes, torch.zeros(48, 8, dtype=torch.uint8).t()),
        "K = 0": (torch.zeros(2, 20, 0, dtype=torch.int8), torch.zeros(8, 0, dtype=torch.uint8)),
    }
    for what, (x16, w) in unaligned.items():
        assert not tp.usable(x16, w), what
        with pytest.raises(ValueError, match="16-byte aligned"):
            tp.persist_into(x16, torch.ones(20, 1), w, torch.ones(8, 1), None, torch.empty(20, 8), sms=2)


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


def test_many_rows_into_takes_the_per_tile_kernel_off_gpu(monkeypatch):
    """Off a GPU (CPU tensors, the interpreter) many_rows_into runs triton_swap.big_into, whose output
    it returns; only a CUDA tensor on Hopper that ``wanted`` and ``usable`` accept takes persist_into
    (tests/test_gpu_quant.py checks that side)."""
    tp = _persist()
    from graphsafe.quant import triton_swap
    ran = []
    monkeypatch.setattr(triton_swap, "big_into", lambda *a: ran.append("per-tile"))
    monkeypatch.setattr(tp, "persist_into", lambda *a, **k: ran.append("persist"))
    monkeypatch.setattr(tp, "_INTERPRET", False)
    planes, qw = torch.zeros(2, 4096, 1792, dtype=torch.int8), torch.zeros(4608, 1792, dtype=torch.uint8)
    assert tp.usable(planes, qw) and tp.wanted(4096, 4608, 90, 132)
    tp.many_rows_into(planes, torch.ones(4096, 1), qw, torch.ones(4608, 1), None, torch.empty(4096, 4608))
    assert ran == ["per-tile"]
