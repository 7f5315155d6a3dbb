"""The LLM's attention on CPU tensors where torch's flash kernel is slow: few queries, fp32 prefills, training.

Candidate scoring (an answer prefix of ~12 tokens, then 2-3 tokens per label, on the prompts' KV cache) and every
decode step (one token per row) attend a handful of queries to a few hundred cached keys. torch's CPU
``scaled_dot_product_attention`` (the flash kernel transformers' ``sdpa`` calls) takes about 1 ms for 8 rows x 3
queries x 260 keys, a tenth of which is arithmetic; two batched matmuls and a softmax, with the query heads that
share a key/value head stacked (grouped-query attention without repeating the keys), take 0.12 ms. Training is the
other case: the forward and backward of the flash kernel took ~44 ms per layer for 2 rows x 9 heads x 450
positions with a padding mask (a third of a KEGG SFT step), the same grouped matmuls by query blocks that skip the
keys a causal mask hides ~22 ms; GRPO's pass of 8 completions x 128 tokens on their prompts' cache 148 -> 76 ms.
An fp32 inference prefill by blocks of ``PREFILL_BLOCK`` queries runs 1.06-1.11x faster score-only than on the
flash kernel (BRCA1's 8 x ~200 queries on ~250 keys). One function, :func:`grouped_attention`, serves all three;
:func:`few_query_attention`, registered with transformers' ``AttentionInterface`` as ``bioreason_sdpa`` (with
``sdpa``'s mask function), sends it fp32 inference (few queries at once, or prefills by blocks) and CPU training
passes (bf16 under autocast, or fp32; :func:`train_by_blocks` turns the latter off per model), and hands everything
else (GPUs, bf16 inference) to transformers' own ``sdpa`` unchanged. Scores and weights stay in the compute dtype
(as transformers' eager attention keeps them): converting bf16 scores to fp32 and back cost all the blocks saved.
:func:`use_few_query_attention` switches a DNA-LLM's language model to it; ``checkpoints.load_model`` does so for
CPU inference, the trainer for CPU training. Results match ``sdpa`` to ~1e-6 in fp32 (summation order); measured
effect in the README.
"""

from __future__ import annotations

import torch
from transformers.integrations import sdpa_attention

NAME = "bioreason_sdpa"
MAX_QUERIES = 16
BLOCK = 160  # query positions per block of a training pass: 3 blocks at KEGG's ~450 positions measured fastest
PREFILL_BLOCK: int | None = 64  # queries per block of an fp32 inference prefill (32-64 measured best); None: sdpa
TRAIN_DTYPES = (torch.bfloat16, torch.float32)
TRAIN_SWITCH = "bioreason_blocks"  # an attention module attribute: False sends its training passes to sdpa


def few_query_attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None, **kwargs):
    """transformers' attention signature: query (B, H, Q, D), key/value (B, Hk, L, D), mask (B, 1, Q, L) bool or
    additive, or None; returns ((B, Q, H, D), None)."""
    B, H, Q, D = query.shape
    Hk, L = key.shape[1], key.shape[2]
    simple = (query.device.type == "cpu" and not dropout and H % Hk == 0 and Q <= L
              and all(kwargs.get(k) is None for k in ("position_bias", "softcap", "sliding_window"))
              and (attention_mask is None or (attention_mask.dim() == 4 and attention_mask.shape[1] == 1)))
    if simple and not module.training and query.dtype == torch.float32:
        if Q <= MAX_QUERIES and (attention_mask is not None or Q == 1):
            return grouped_attention(query, key, value, attention_mask, scaling), None
        if Q > MAX_QUERIES and PREFILL_BLOCK and getattr(module, "is_causal", False):
            return grouped_attention(query, key, value, attention_mask, scaling, block=PREFILL_BLOCK), None
    if simple and module.training and getattr(module, TRAIN_SWITCH, True) and getattr(module, "is_causal", False) \
            and query.dtype in TRAIN_DTYPES:
        return grouped_attention(query, key, value, attention_mask, scaling, block=BLOCK), None
    return sdpa_attention.sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                                 scaling=scaling, **kwargs)


def grouped_attention(query, key, value, attention_mask, scaling=None, block: int | None = None):
    """Attention of Q queries, the last Q of the L positions whose keys and values are given (a decode step, a
    pass on a KV cache, or a whole sequence: Q = L), with the query heads that share a key/value head stacked
    (grouped-query attention without repeating the keys). With ``block``, the queries go in blocks of about that
    many, and block [a, b) reads only the keys a causal mask leaves it (the first L - Q + b); without, one block
    reads every key, whatever the mask. ``attention_mask`` (B, 1, Q, L), bool or additive, must hide the later
    keys when there are blocks; None means causal alone. Scores and weights in the compute dtype (bf16 under
    autocast; torch's softmax kernel computes in fp32 inside), the scale applied to the queries (a power of two
    for 64-wide heads: exact). A row with no key at all gets uniform weights, as eager attention does. Returns
    (B, Q, H, D)."""
    Q, D = query.shape[2:]
    first = key.shape[2] - Q  # the queries' first position
    query = query * (D ** -0.5 if scaling is None else scaling)
    n = max(1, round(Q / block)) if block else 1
    if n == 1:  # no slicing: a decode step calls this once per layer per token
        return _block(query, key, value, attention_mask, first).transpose(1, 2).contiguous()
    edges = [round(Q * i / n) for i in range(n + 1)]
    outs = [_block(query[:, :, a:b], key[:, :, :first + b], value[:, :, :first + b],
                   None if attention_mask is None else attention_mask[:, :, a:b, :first + b], first + a)
            for a, b in zip(edges, edges[1:])]  # keys [0, first + b) are all block [a, b) can see
    return torch.cat(outs, 2).transpose(1, 2).contiguous()


def _block(query, key, value, attention_mask, start: int):
    """One block of :func:`grouped_attention`: queries (B, H, q, D), already scaled, at positions start .. start +
    q - 1, on the keys and values (B, Hk, k, D) they can see, with the mask (B, 1, q, k) or None (causal).
    Returns (B, H, q, D)."""
    B, H, q, D = query.shape
    Hk, k = key.shape[1], key.shape[2]
    g = H // Hk  # query heads per key/value head (head h reads h // g, as repeat_kv lays them out)
    scores = torch.matmul(query.reshape(B, Hk, g * q, D), key.transpose(-1, -2)).view(B, Hk, g, q, k)
    low = torch.finfo(scores.dtype).min  # bf16 under autocast, whatever the inputs' dtype
    if attention_mask is None:
        if q > 1:  # query i (position start + i) sees keys up to start + i
            scores = scores.masked_fill_(torch.ones(q, k, dtype=torch.bool, device=query.device).triu_(start + 1), low)
    elif attention_mask.dtype == torch.bool:
        scores = scores.masked_fill_(~attention_mask[:, :, None], low)
    else:
        scores = scores.add_(attention_mask[:, :, None].to(scores.dtype))
    weights = scores.softmax(-1).view(B, Hk, g * q, k)
    return torch.matmul(weights, value).view(B, H, q, D)


def train_by_blocks(model, on: bool = True) -> None:
    """Let (True, the default) or stop a DNA-LLM's CPU training passes from taking :func:`grouped_attention`'s
    query blocks (``train.cpu_attention``: ``blocks`` or ``sdpa``, the flash kernel kegg-v1 was trained with)."""
    from bioreason.modeling import unwrap_dna_llm

    for module in unwrap_dna_llm(model).language_model.modules():
        if hasattr(module, "is_causal"):
            setattr(module, TRAIN_SWITCH, bool(on))


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


__all__ = ["BLOCK", "MAX_QUERIES", "NAME", "few_query_attention", "grouped_attention", "register", "train_by_blocks",
           "use_few_query_attention"]
