"""Attention for a few query positions on the CPU: the LLM's attention when it is not a prefill.

Candidate scoring (an answer prefix of ~12 tokens, then 2-3 tokens per label, on the prompts' KV cache) and every
decode step (one token per row) attend a handful of queries to a few hundred cached keys. torch's CPU
``scaled_dot_product_attention`` (the flash kernel transformers' ``sdpa`` calls) takes about 1 ms for 8 rows x 3
queries x 260 keys, a tenth of which is arithmetic; two batched matmuls and a softmax, with the query heads that
share a key/value head stacked (grouped-query attention without repeating the keys), take 0.12 ms. So
:func:`few_query_attention`, registered with transformers' ``AttentionInterface`` as ``bioreason_sdpa`` (with
``sdpa``'s mask function), runs that path for inference on CPU tensors of at most ``MAX_QUERIES`` query positions
in fp32, and hands everything else (prefills, training, GPUs, bf16) to transformers' own ``sdpa`` unchanged.
:func:`use_few_query_attention` switches a DNA-LLM's language model to it; ``checkpoints.load_model`` does so for
CPU inference. Results match ``sdpa`` to ~1e-6 (summation order); measured effect in the README.
"""

from __future__ import annotations

import torch
from transformers.integrations import sdpa_attention

NAME = "bioreason_sdpa"
MAX_QUERIES = 16


def few_query_attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None, **kwargs):
    """transformers' attention signature: query (B, H, Q, D), key/value (B, Hk, L, D), mask (B, 1, Q, L) bool or
    additive, or None; returns ((B, Q, H, D), None)."""
    B, H, Q, D = query.shape
    Hk, L = key.shape[1], key.shape[2]
    plain = (query.device.type == "cpu" and query.dtype == torch.float32 and Q <= MAX_QUERIES and not dropout
             and not module.training and H % Hk == 0 and kwargs.get("position_bias") is None
             and kwargs.get("softcap") is None and (attention_mask is not None or Q == 1)
             and (attention_mask is None or (attention_mask.dim() == 4 and attention_mask.shape[1] == 1)))
    if not plain:
        return sdpa_attention.sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                                     scaling=scaling, **kwargs)
    g = H // Hk  # query heads per key/value head: head h reads key/value head h // g (as repeat_kv lays them out)
    scores = torch.matmul(query.reshape(B, Hk, g * Q, D), key.transpose(-1, -2))
    scores = scores.mul_(D ** -0.5 if scaling is None else scaling).view(B, Hk, g, Q, L)
    if attention_mask is not None:
        mask = attention_mask[:, :, None]  # (B, 1, 1, Q, L): the same for every head
        if mask.dtype == torch.bool:  # a row with no key at all gets uniform weights, as eager attention does
            scores = scores.masked_fill_(~mask, torch.finfo(scores.dtype).min)
        else:
            scores = scores.add_(mask)
    weights = scores.softmax(-1).view(B, Hk, g * Q, L)
    out = torch.matmul(weights, value).view(B, H, Q, D)
    return out.transpose(1, 2).contiguous(), None


def register() -> None:
    """Make ``bioreason_sdpa`` known to transformers (idempotent)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(NAME, few_query_attention)
    AttentionMaskInterface.register(NAME, sdpa_mask)


def use_few_query_attention(model) -> bool:
    """Switch the DNA-LLM's language model from ``sdpa`` to ``bioreason_sdpa``; returns whether it did (models on
    another attention implementation are left as they are)."""
    from bioreason.modeling import unwrap_dna_llm

    lm = unwrap_dna_llm(model).language_model
    if lm.config._attn_implementation != "sdpa":
        return lm.config._attn_implementation == NAME
    register()
    lm.set_attn_implementation(NAME)
    return True


__all__ = ["MAX_QUERIES", "NAME", "few_query_attention", "register", "use_few_query_attention"]
