"""INT4 quantization. Today: the pure-PyTorch reference of the seed's semantics
(:mod:`graphsafe.quant.reference`), the oracle for every kernel. Fast kernels: issue 5."""
from .reference import pack_int4, sym_quant_reference, unpack_int4

__all__ = ["pack_int4", "sym_quant_reference", "unpack_int4"]
