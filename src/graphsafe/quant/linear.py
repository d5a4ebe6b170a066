"""``W4A4Linear``: an ``nn.Linear`` with INT4 weights and per-row INT4 activations (the seed's model,
complete: quantize, INT4 GEMM with exact int32 accumulation, dequantize)."""
from __future__ import annotations

import torch
import torch.nn as nn

from .ops import _backend, _clip, pack_int4_weights, quant_linear
from .reference import FLOAT_DTYPES


class W4A4Linear(nn.Module):
    """``y = dequant(int4(x) @ int4(W).T) + b``; ``x`` (..., in_features) float16 or bfloat16.

    Weights are stored packed (``qweight`` uint8 (out, ceil(in/2)), ``weight_scale`` (out, 1)); the
    activation scale is ``max|x| / 7 * clip_ratio`` per row. Every step is a graph-safe custom op, so the
    module runs under CUDA graphs and ``torch.compile(fullgraph=True)``.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, dtype=torch.float16,
                 device=None, clip_ratio: float = 1.0, backend: str = "auto"):
        super().__init__()
        if dtype not in FLOAT_DTYPES:
            raise TypeError(f"dtype must be float16 or bfloat16, got {dtype}")
        if in_features < 1 or out_features < 1:
            raise ValueError(f"in_features and out_features must be >= 1, got {in_features}, {out_features}")
        _clip(clip_ratio, dtype)
        _backend("backend", backend, ("auto", "triton", "reference"))
        self.in_features, self.out_features = in_features, out_features
        self.clip_ratio, self.backend = clip_ratio, backend
        self.register_buffer("qweight", torch.zeros(out_features, (in_features + 1) // 2, dtype=torch.uint8,
                                                    device=device))
        self.register_buffer("weight_scale", torch.zeros(out_features, 1, dtype=dtype, device=device))
        self.register_buffer("bias", torch.zeros(out_features, dtype=dtype, device=device) if bias else None)

    @classmethod
    def from_float(cls, linear: nn.Linear, *, dtype=None, clip_ratio: float = 1.0,
                   backend: str = "auto") -> W4A4Linear:
        """Quantize an ``nn.Linear`` (its weights per output channel, on its device)."""
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"linear must be an nn.Linear, got {type(linear).__name__}")
        w = linear.weight.detach()
        dtype = dtype or (w.dtype if w.dtype in FLOAT_DTYPES else torch.float16)
        mod = cls(linear.in_features, linear.out_features, linear.bias is not None, dtype=dtype,
                  device=w.device, clip_ratio=clip_ratio, backend=backend)
        # float32 weights for a float16 layer go in as they are: the packer refuses values float16 cannot hold
        wide = w.dtype in (torch.float32, torch.float64) and dtype == torch.float16
        src = w.to(torch.float32) if wide else w.to(dtype)  # float64 holds what float32 does here (1e6, say)
        qw, ws = pack_int4_weights(src.contiguous(), backend=backend)
        mod.qweight.copy_(qw)
        mod.weight_scale.copy_(ws)
        if linear.bias is not None:
            mod.bias.copy_(linear.bias.detach().to(dtype))
        return mod

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_features:
            raise ValueError(f"x has {x.shape[-1]} features, this layer takes {self.in_features}")
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features).contiguous()
        y = quant_linear(x2, self.qweight, self.weight_scale, self.bias, x.dtype, clip_ratio=self.clip_ratio,
                         backend=self.backend)
        return y.reshape(*lead, self.out_features)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, clip_ratio={self.clip_ratio}, backend={self.backend!r}")
