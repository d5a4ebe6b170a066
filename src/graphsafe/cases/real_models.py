"""Real graph-safe models with random weights (no downloads): the doctor must find nothing in them.

ResNet-18 (torchvision), a small Llama and a small Qwen2 decoder (transformers: a plain forward and a
static-KV-cache decode step), and ``nn.TransformerEncoder``. torchvision and transformers are imported
only when a target is built.
"""
from __future__ import annotations

import torch

from ..doctor.target import Target, target_factory
from ._common import randn, seeded

PROMPT, BATCH, MAX_LEN = 16, 2, 64


@target_factory
def resnet18() -> Target:
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).cuda().eval()
    return Target(model, lambda seed: (randn(seed, 2, 3, 224, 224),), name="real_models.resnet18")


def _config(kind: str):
    import transformers

    common = dict(vocab_size=1000, hidden_size=256, intermediate_size=512, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    cfg = (transformers.LlamaConfig if kind == "llama" else transformers.Qwen2Config)(**common)
    cfg._attn_implementation = "sdpa"
    return cfg


def _decoder(kind: str):
    import transformers

    torch.manual_seed(0)
    cfg = _config(kind)
    cls = transformers.LlamaForCausalLM if kind == "llama" else transformers.Qwen2ForCausalLM
    return cls(cfg).cuda().eval(), cfg


def _ids(seed: int, length: int):
    return torch.randint(0, 1000, (BATCH, length), device="cuda", generator=seeded(seed))


def _forward(kind: str) -> Target:
    model, _ = _decoder(kind)

    def forward(input_ids):
        return model(input_ids=input_ids, use_cache=False).logits

    return Target(forward, lambda seed: (_ids(seed, PROMPT),), name=f"real_models.{kind}_forward")


def _static_cache(cfg):
    from transformers import StaticCache

    try:
        return StaticCache(config=cfg, max_batch_size=BATCH, max_cache_len=MAX_LEN, device="cuda",
                           dtype=torch.float32)
    except TypeError:  # newer transformers: the batch size and device come from the first update
        return StaticCache(config=cfg, max_cache_len=MAX_LEN)


def _decode(kind: str) -> Target:
    """One decode step at position PROMPT after a fixed prompt. Like a server's loop, ``prepare``
    resets the cache in place and prefills the prompt before each step, so a step is a function of
    its token whatever the cache keeps between calls."""
    model, cfg = _decoder(kind)
    cache = _static_cache(cfg)
    prompt = _ids(12345, PROMPT)
    prompt_positions = torch.arange(PROMPT, device="cuda")

    def prefill(seed: int) -> None:
        with torch.no_grad():
            cache.reset()
            model(input_ids=prompt, past_key_values=cache, use_cache=True, cache_position=prompt_positions)

    prefill(0)
    position = torch.tensor([PROMPT], device="cuda")

    def decode_step(input_ids, cache_position):
        return model(input_ids=input_ids, past_key_values=cache, use_cache=True,
                     cache_position=cache_position, position_ids=cache_position.expand(BATCH, 1)).logits

    return Target(decode_step, lambda seed: (_ids(seed, 1), position.clone()), prepare=prefill,
                  name=f"real_models.{kind}_static_cache_decode")


@target_factory
def llama_forward() -> Target:
    return _forward("llama")


@target_factory
def llama_decode() -> Target:
    return _decode("llama")


@target_factory
def qwen2_forward() -> Target:
    return _forward("qwen2")


@target_factory
def qwen2_decode() -> Target:
    return _decode("qwen2")


@target_factory
def transformer_encoder() -> Target:
    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(128, 4, 256, batch_first=True)
    model = torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False).cuda().eval()
    return Target(model, lambda seed: (randn(seed, 4, 32, 128),), name="real_models.transformer_encoder")


ALL = ("resnet18", "llama_forward", "llama_decode", "qwen2_forward", "qwen2_decode", "transformer_encoder")
