"""Attention for a few query positions on the CPU: the LLM's attention when it is not a prefill.

Candidate scoring (an answer prefix of ~12 tokens, then 2-3 tokens per label, on the prompts' KV cache) and every
decode step (one token per row) attend a handful of queries to a few hundred cached keys. torch's CPU
``scaled_dot_product_attention`` (the flash kernel transformers' ``sdpa`` calls) takes about 1 ms for 8 rows x 3
queries x 260 keys, a tenth of which is arithmetic; two batched matmuls and a softmax, with the query heads that
share a key/value head stacked (grouped-query attention without repeating the keys), take 0.12 ms. So
:func:`few_query_attention`, registered with transformers' ``AttentionInterface`` as ``bioreason_sdpa`` (with
``sdpa``'s mask function), runs that path for inference on CPU tensors of at most ``MAX_QUERIES`` query positions
in fp32, and hands everything else (inference prefills, GPUs, bf16 inference) to transformers' own ``sdpa``
unchanged. Training on the CPU is the other case it takes: the forward and backward of torch's CPU flash kernel
took ~44 ms per layer for 2 rows x 9 heads x 450 positions with a padding mask (a third of a KEGG SFT step), while
:func:`causal_blocks`, the same grouped matmuls over query blocks that skip the keys a causal mask hides (two thirds
of the square at three blocks), takes ~22 ms. Its scores and weights stay in the compute dtype (bf16 under
autocast, as transformers' eager attention keeps its scores; the softmax itself computes in fp32): converting them
to fp32 and back cost all it saved. :func:`use_few_query_attention` switches a DNA-LLM's language model to it;
``checkpoints.load_model`` does so for CPU inference and training. Results match ``sdpa`` to ~1e-6 in fp32
(summation order); measured effect in the README.
"""

from __future__ import annotations

import torch
from transformers.integrations import sdpa_attention

NAME = "bioreason_sdpa"
MAX_QUERIES = 16
BLOCK = 160  # query positions per block of a training pass: 3 blocks at KEGG's ~450 positions measured fastest
TRAIN_DTYPES = (torch.bfloat16, torch.float32)


def few_query_attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None, **kwargs):
    """transformers' attention signature: query (B, H, Q, D), key/value (B, Hk, L, D), mask (B, 1, Q, L) bool or
    additive, or None; returns ((B, Q, H, D), None)."""
    B, H, Q, D = query.shape
    Hk, L = key.shape[1], key.shape[2]
    plain = (query.device.type == "cpu" and query.dtype == torch.float32 and Q <= MAX_QUERIES and not dropout
             and not module.training and H % Hk == 0 and kwargs.get("position_bias") is None
             and kwargs.get("softcap") is None and (attention_mask is not None or Q == 1)
             and (attention_mask is None or (attention_mask.dim() == 4 and attention_mask.shape[1] == 1)))
    if not plain and _trains_causally(module, query, key, dropout, attention_mask, kwargs):
        return causal_blocks(query, key, value, attention_mask, scaling), None
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


def _trains_causally(module, query, key, dropout, attention_mask, kwargs) -> bool:
    """A CPU training pass over a whole causal sequence (no cache: as many queries as keys), whose mask is causal
    (sdpa's: causal + padding) or absent."""
    H, Hk = query.shape[1], key.shape[1]
    return (query.device.type == "cpu" and module.training and getattr(module, "is_causal", False)
            and query.dtype in TRAIN_DTYPES and query.shape[2] == key.shape[2] and not dropout and H % Hk == 0
            and all(kwargs.get(k) is None for k in ("position_bias", "softcap", "sliding_window"))
            and (attention_mask is None or (attention_mask.dim() == 4 and attention_mask.shape[1] == 1)))


def causal_blocks(query, key, value, attention_mask, scaling=None):
    """Causal attention of L queries on their own L keys, query block by query block: block [a, b) reads keys
    [0, b) only (the rest a causal mask hides), with the query heads that share a key/value head stacked. Scores
    and weights in the inputs' dtype, the softmax computed in fp32 inside torch's kernel (bf16 in, bf16 out: one
    pass over the scores instead of a conversion each way), the scale applied to the queries (a power of two for
    64-wide heads: exact). ``attention_mask`` (B, 1, L, L), bool or additive, must be causal (each query sees no
    later key); None means causal alone. Returns (B, L, H, D)."""
    B, H, L, D = query.shape
    Hk = key.shape[1]
    g = H // Hk
    query = query * (D ** -0.5 if scaling is None else scaling)
    outs = []
    n = max(1, round(L / BLOCK))
    edges = [round(L * i / n) for i in range(n + 1)]
    for a, b in zip(edges, edges[1:]):
        q = query[:, :, a:b].reshape(B, Hk, g * (b - a), D)
        scores = torch.matmul(q, key[:, :, :b].transpose(-1, -2)).view(B, Hk, g, b - a, b)
        low = torch.finfo(scores.dtype).min  # bf16 under autocast, whatever the inputs' dtype
        if attention_mask is None:
            hide = torch.ones(b - a, b, dtype=torch.bool, device=query.device).triu(a + 1)
            scores = scores.masked_fill(hide, low)
        elif attention_mask.dtype == torch.bool:  # a row with no key at all gets uniform weights, as eager does
            scores = scores.masked_fill(~attention_mask[:, :, None, a:b, :b], low)
        else:
            scores = scores + attention_mask[:, :, None, a:b, :b].to(scores.dtype)
        weights = scores.softmax(-1).view(B, Hk, g * (b - a), b)
        outs.append(torch.matmul(weights, value[:, :, :b]).view(B, H, b - a, D))
    return torch.cat(outs, 2).transpose(1, 2).contiguous()


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


__all__ = ["BLOCK", "MAX_QUERIES", "NAME", "causal_blocks", "few_query_attention", "register", "use_few_query_attention"]
