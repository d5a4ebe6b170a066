"""Graph-safe INT4 quantization and W4A4 linear: the seed's system done right.

- :func:`sym_quant` per-row symmetric INT4 (the seed's semantics), :func:`pack_int4_weights`,
  :func:`w4a4_linear` (exact int32 accumulation), :func:`quant_linear` (both in one call) and :class:`W4A4Linear`;
- backends: Triton (default on CUDA), ``"cuda"`` (the seed's kernel, fixed) and ``"reference"``
  (:mod:`graphsafe.quant.reference`, plain PyTorch, the oracle of every test).
"""
from .linear import W4A4Linear
from .ops import BACKENDS, pack_int4_weights, quant_linear, sym_quant, w4a4_linear
from .reference import (int4_matmul_reference, pack_int4, pack_int4_weights_reference, sym_quant_reference,
                        unpack_int4, w4a4_linear_reference)

__all__ = ["BACKENDS", "W4A4Linear", "int4_matmul_reference", "pack_int4", "pack_int4_weights",
           "pack_int4_weights_reference", "quant_linear", "sym_quant", "sym_quant_reference", "unpack_int4",
           "w4a4_linear", "w4a4_linear_reference"]
