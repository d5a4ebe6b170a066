"""A decoder-only transformer with random weights and one planted bug at a known layer.

Used by the localization benchmark (``benchmarks/locate.py``) and its GPU tests: the check must name the
planted layer and operation. Each layer: RMSNorm, fused QKV projection, causal attention over the tokens,
output projection, RMSNorm, gated SiLU MLP, residuals. Bugs (``bug=``):

* ``"frozen"``: the MLP of layer ``at`` scales its output by a Python float that ``prepare(seed)`` sets
  before each step (as a runner sets a schedule value): the capture freezes it (``aten::mul.Tensor``);
* ``"escaped"``: the down projection of layer ``at`` runs on the legacy default stream, which is the
  eager stream but not the capture's, so it runs once at capture and is missing from the graph;
* ``"none"``: no bug (the fixed twin).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..doctor.target import Target, target_factory
from ._common import randn


class RMSNorm(torch.nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(d))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * self.weight


class MLP(torch.nn.Module):
    def __init__(self, d: int, ff: int, bug: str = "none"):
        super().__init__()
        self.gate_proj = torch.nn.Linear(d, ff, bias=False)
        self.up_proj = torch.nn.Linear(d, ff, bias=False)
        self.down_proj = torch.nn.Linear(ff, d, bias=False)
        self.bug = bug
        self.scale = 1.0                     # set by the runner before each step (bug "frozen")
        self.buf: torch.Tensor | None = None

    def forward(self, x):
        h = F.silu(self.gate_proj(x)) * self.up_proj(x)
        if self.bug == "escaped":
            if self.buf is None:
                self.buf = torch.empty(*h.shape[:-1], self.down_proj.out_features, device=h.device, dtype=h.dtype)
            # the legacy default stream: the main stream eagerly, but outside the capture (it runs once, then)
            with torch.cuda.stream(torch.cuda.default_stream(h.device)):
                torch.matmul(h, self.down_proj.weight.t(), out=self.buf)
            return self.buf
        out = self.down_proj(h)
        if self.bug == "frozen":
            out = out * self.scale              # a host float: frozen into the graph at capture
        return out


class Attention(torch.nn.Module):
    def __init__(self, d: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv_proj = torch.nn.Linear(d, 3 * d, bias=False)
        self.o_proj = torch.nn.Linear(d, d, bias=False)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv_proj(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.o_proj(y.transpose(1, 2).reshape(b, t, d))


class Layer(torch.nn.Module):
    def __init__(self, d: int, heads: int, ff: int, bug: str = "none"):
        super().__init__()
        self.input_norm = RMSNorm(d)
        self.self_attn = Attention(d, heads)
        self.post_norm = RMSNorm(d)
        self.mlp = MLP(d, ff, bug)

    def forward(self, x):
        x = x + self.self_attn(self.input_norm(x))
        return x + self.mlp(self.post_norm(x))


class Decoder(torch.nn.Module):
    def __init__(self, layers: int = 28, d: int = 1024, heads: int = 16, ff: int = 2816, bug: str = "none",
                 at: int = 17):
        super().__init__()
        self.layers = torch.nn.ModuleList(Layer(d, heads, ff, bug if i == at else "none") for i in range(layers))
        self.norm = RMSNorm(d)

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return self.norm(x)


def make(layers: int = 28, bug: str = "frozen", at: int = 17, d: int = 1024, tokens: int = 8,
         dtype: torch.dtype = torch.float16) -> Target:
    torch.manual_seed(0)
    model = Decoder(layers, d, max(1, d // 64), (d * 11 // 4) // 64 * 64, bug, at).to("cuda", dtype).eval()
    for p in model.parameters():
        if p.dim() == 2:
            torch.nn.init.normal_(p, std=p.shape[1] ** -0.5)

    def prepare(seed: int) -> None:
        model.layers[at].mlp.scale = 1.0 + 0.125 * seed

    return Target(model, lambda seed: (randn(seed, 1, tokens, d, dtype=dtype),),
                  name=f"decoder({layers} layers, bug {bug} at layer {at})", prepare=prepare)


@target_factory
def frozen() -> Target:
    return make(bug="frozen")


@target_factory
def escaped() -> Target:
    return make(bug="escaped")


@target_factory
def good() -> Target:
    return make(bug="none")
