"""The seed's INT4 semantics, on hand-computed examples."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from graphsafe.quant.reference import pack_int4, sym_quant_reference, unpack_int4  # noqa: E402


def h(rows):
    return torch.tensor(rows, dtype=torch.float16)


def test_scale_codes_and_nibble_order():
    q, scale = sym_quant_reference(h([[1, -2, 3.5, 7]]))
    assert scale.item() == 1.0  # max 7 / 7
    # codes 1, -2, 4 (3.5 rounds half to even), 7; element 2j in the low nibble of byte j
    assert q.tolist() == [[0x01 | (0xE << 4), 0x04 | (0x7 << 4)]]
    assert unpack_int4(q).tolist() == [[1, -2, 4, 7]]


def test_round_half_to_even():
    q, _ = sym_quant_reference(h([[7, 0.5, 1.5, 2.5, -0.5, -1.5]]))
    assert unpack_int4(q).tolist() == [[7, 0, 2, 2, 0, -2]]


def test_clip_ratio_and_clamp_to_minus8_plus7():
    q, scale = sym_quant_reference(h([[7, -7, 1]]), clip_ratio=0.5)
    assert scale.item() == 0.5
    assert unpack_int4(q, 3).tolist() == [[7, -8, 2]]


def test_scale_is_rounded_to_half_at_each_step():
    _, scale = sym_quant_reference(h([[1.0, -0.25]]))
    assert scale.item() == torch.tensor(1 / 7, dtype=torch.float16).item()  # 0.142822265625, not 1/7
    assert scale.dtype == torch.float16 and scale.shape == (1, 1)


def test_odd_columns_pad_the_last_high_nibble_with_zero():
    q, _ = sym_quant_reference(h([[7, 1, -1]]))
    assert q.tolist() == [[0x17, 0x0F]]


def test_all_zero_row_gives_scale_zero_and_code_zero():
    q, scale = sym_quant_reference(h([[0, 0, 0, 0], [7, 0, 0, 0]]))
    assert scale[0].item() == 0.0 and q[0].tolist() == [0, 0]
    assert not torch.isnan(scale).any()


def test_pack_unpack_roundtrip():
    g = torch.Generator().manual_seed(0)
    v = torch.randint(-8, 8, (5, 33), generator=g, dtype=torch.int8)
    assert torch.equal(unpack_int4(pack_int4(v), 33), v)


@pytest.mark.parametrize("bad, err", [(torch.zeros(4, dtype=torch.float16), ValueError),
                                      (torch.zeros(2, 4, dtype=torch.float32), TypeError)])
def test_bad_input_is_named(bad, err):
    with pytest.raises(err, match="x must be"):
        sym_quant_reference(bad)


def test_pack_rejects_out_of_range():
    with pytest.raises(ValueError, match=r"\[-8, 7\]"):
        pack_int4(torch.tensor([[8]], dtype=torch.int8))
