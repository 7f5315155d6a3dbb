"""Candidate scoring: the log-likelihood of each of K fixed answers after each of B prompts, for inference.

``score_candidates`` is how ``predict --score-only``, ``eval`` (AUROC; KEGG's 37 disease names) and the demo label a
variant without sampling: the prompts are prefilled once (``rl.prefill``, their shared chat-template prefix from a
``PrefixCache``), the answer prefix all candidates start with (``Answer:``) runs once on top, then the candidates'
own tokens run on that KV cache without adding to it (``_peek``). On a CPU, four or more candidates run packed:
their tokens side by side in one model call, each attending to the prompt, the answer prefix and its own earlier
tokens only (a block-diagonal mask, positions restarting per candidate), up to ``CPU_PACKED_POSITIONS`` rows x tokens
per call (KEGG's 37 names had taken 37 calls of a few tokens each, whose fixed cost dominated: eval 1.5x faster).
On a GPU, several candidates per call on a repeated copy of the cache (``GPU_CANDIDATE_ROWS``). The prompts'
prefill can be kept (``PromptState``) for ``predict --traces`` to decode from.
"""

from __future__ import annotations

from typing import Any, NamedTuple

# Candidates are scored after an empty think block: the form SFT teaches on a share of its examples
# (``data.empty_think_fraction``), so one forward pass gives the label probabilities without sampling a trace.
SCORE_PREFIX = "<think>\n\n</think>\n\nAnswer: "
GPU_CANDIDATE_ROWS = 256  # rows of one candidate pass on a GPU (see _candidates_per_pass)
CPU_PACKED_POSITIONS = 256  # rows x tokens of one packed call on a CPU: its logits 256 x 49,152 fp32 = 50 MB
CPU_PACK_FROM = 4  # candidates from which a CPU packs them (see _candidates_per_pass)


class PromptState(NamedTuple):
    """Prompts as ``score_candidates(keep_prompts=True)`` prefilled them, for a decode to start from without running
    them again: last-position logits (B, V), [(keys, values)] per layer (B, H, W, D), the cache mask (B, W)."""
    logits: Any
    kv: list
    mask: Any


def _candidates_per_pass(batch: int, device, candidates: int) -> int:
    """On a GPU, where each model call's overhead dominates at these sizes, candidates run together on a repeated
    copy of the prompts' cache, up to ``GPU_CANDIDATE_ROWS`` rows (one at a time cost 0.71x the score-only rate on an
    H100). 0 on a CPU for ``CPU_PACK_FROM`` candidates or more: packed side by side on the one cache
    (``_packed_logprobs``), which never repeats it; fewer (BRCA1's two labels) one per call, as fast and with a lower
    peak memory (``predict`` on the 24-variant example: 1.45-1.49 GiB one per call in 3 runs, 1.51-1.52 packed in 2)."""
    if device.type == "cuda":
        return max(1, GPU_CANDIDATE_ROWS // max(batch, 1))
    return 0 if candidates >= CPU_PACK_FROM else 1


def _shared_lead(cand_ids, cand_mask) -> int:
    """How many leading tokens all K continuations share (the answer prefix), leaving each at least one of its own."""
    K = cand_ids.shape[0]
    if K < 2:
        return 0
    same = ((cand_ids == cand_ids[:1]) & (cand_mask == 1)).all(0).long()
    return min(int(same.cumprod(0).sum()), int(cand_mask.sum(1).min()) - 1)


def _peek(keys, values):
    """A cache layer's ``update`` that returns its keys and values with the new ones appended but keeps neither.
    A candidate's pass needs them for its attention alone, so each layer's concatenation is freed as soon as that
    layer is done: stored, as ``DynamicLayer.update`` does, all 30 layers' were held at once, a third copy of the
    prompts' keys and values next to the prompts' and the answer prefix's (~100 MB for 8 BRCA1 prompts)."""
    import torch

    def update(new_keys, new_values, *args, **kwargs):
        return torch.cat([keys, new_keys], -2), torch.cat([values, new_values], -2)

    return update


def candidate_logprobs(model, prompt_ids, prompt_mask, cand_ids, cand_mask, dna_features=None, prefix_len: int = 0,
                       prefix_cache=None, keep_prompts: bool = False):
    """Log-probs (B, K, C) of the same K continuations (K, C; right-padded) after each of B prompts, for inference.

    One ``prefill`` of the prompts; the tokens all continuations start with (the answer prefix: ``Answer:``) run
    once on top; then the continuations' own tokens on that KV cache, which they read without adding to it
    (``_peek``): on a CPU packed side by side (``_packed_logprobs``), on a GPU a few continuations per model call on
    a repeated cache (``_candidates_per_pass``). On a CPU the cache is never repeated K times, so a batch's peak
    memory holds one copy of the prompts' keys and values (with the answer prefix's after them) plus one layer's
    concatenation at a time, instead of 2K + 1 copies (``shared_prefix_logprobs`` repeats them, as GRPO's gradients
    need), and the shared tokens run once, not K times. ``keep_prompts``: also return the prompts' ``PromptState``
    (views of the prompts' columns of that one copy).
    """
    import torch

    from bioreason.rl import prefill

    first, cache, cached_mask = prefill(model, prompt_ids, prompt_mask, dna_features, 1, prefix_len, prefix_cache)
    B, (K, C) = prompt_ids.shape[0], cand_ids.shape
    start = prompt_mask.sum(1, keepdim=True)
    per_pass = _candidates_per_pass(B, cand_ids.device, K)
    S = _shared_lead(cand_ids, cand_mask) if per_pass < K else 0  # all in one call: a call for the lead costs more
    prompts_mask, W = cached_mask, cached_mask.shape[1]
    lead = first.unsqueeze(1)  # (B, S + 1, V): the predictions of the shared tokens and of each one's first own
    if S:
        ones = cached_mask.new_ones((B, S))
        out = model(input_ids=cand_ids[0, :S].expand(B, -1), attention_mask=torch.cat([cached_mask, ones], 1),
                    position_ids=start + torch.arange(S, device=cand_ids.device), past_key_values=cache,
                    use_cache=True)
        lead = torch.cat([lead, out.logits], 1)
        cached_mask, start = torch.cat([cached_mask, ones], 1), start + S
    lead_logp = torch.log_softmax(lead.float(), dim=-1)
    kv = [(layer.keys, layer.values) for layer in cache.layers]
    # the prompts' own columns of the cache, as views: the lead's pass concatenated new tensors layer by layer and
    # the prompts' were freed as it went, so one copy of the prompts' keys and values is live, not two (~100 MB for
    # 8 BRCA1 prompts, at predict --traces' peak); nothing writes into these tensors afterwards (_peek concatenates)
    state = PromptState(first, [(k[:, :, :W], v[:, :, :W]) for k, v in kv], prompts_mask) if keep_prompts else None
    args = (model, cache, kv, cached_mask, start, lead_logp, cand_ids, cand_mask, S)
    out = _repeated_logprobs(*args, per_pass) if per_pass else _packed_logprobs(*args)
    return (torch.stack(out, 1), state) if keep_prompts else torch.stack(out, 1)


def _repeated_logprobs(model, cache, kv, cached_mask, start, lead_logp, cand_ids, cand_mask, S: int,
                       per_pass: int) -> list:
    """Each candidate's log-probs (B, C) as ``_packed_logprobs`` gives them, ``per_pass`` candidates per model call
    on a copy of the cache ``kv`` repeated for each (one candidate: the cache itself, not copied)."""
    import torch

    B, (K, C) = cached_mask.shape[0], cand_ids.shape
    pos = start + torch.arange(C - S, device=cand_ids.device)
    out = []
    for k0 in range(0, K, per_pass):
        n = min(per_pass, K - k0)  # rows: candidate k0's B prompts, then candidate k0 + 1's, ...
        for layer, (keys, values) in zip(cache.layers, kv):
            layer.keys, layer.values = (keys, values) if n == 1 else (keys.repeat(n, 1, 1, 1),
                                                                       values.repeat(n, 1, 1, 1))
            layer.update = _peek(layer.keys, layer.values)
        ids = cand_ids[k0:k0 + n].repeat_interleave(B, 0)
        mask = torch.cat([cached_mask.repeat(n, 1), cand_mask[k0:k0 + n, S:].repeat_interleave(B, 0)], 1)
        rest = model(input_ids=ids[:, S:], attention_mask=mask, position_ids=pos.repeat(n, 1), past_key_values=cache,
                     use_cache=True).logits[:, :-1]
        rest_logp = torch.log_softmax(rest.float(), dim=-1)
        for j in range(n):
            logp = torch.cat([lead_logp, rest_logp[j * B:(j + 1) * B]], dim=1)  # (B, C, V)
            out.append(logp.gather(-1, ids[j * B:(j + 1) * B].unsqueeze(-1)).squeeze(-1))
    return out


def _packed_logprobs(model, cache, kv, cached_mask, start, lead_logp, cand_ids, cand_mask, S: int) -> list:
    """Each candidate's log-probs (B, C) on the cache ``kv`` (the prompts' and the answer prefix's, mask
    ``cached_mask``, next position ``start``; ``lead_logp``: the predictions of tokens 0..S), several candidates'
    own tokens side by side per model call, at most ``CPU_PACKED_POSITIONS`` rows x tokens (one candidate at least).
    Each own token attends to the cache and to its own candidate's earlier tokens only, at the position it has
    when that candidate runs alone, so the log-probs are a lone pass's (to rounding)."""
    import torch

    (B, W), (K, C), dev = cached_mask.shape, cand_ids.shape, cand_ids.device
    own = (cand_mask.sum(1) - S).tolist()  # each candidate's own tokens (_shared_lead leaves at least one)
    budget = max(1, CPU_PACKED_POSITIONS // max(B, 1))
    for layer, (keys, values) in zip(cache.layers, kv):
        layer.keys, layer.values, layer.update = keys, values, _peek(keys, values)
    out, k0 = [], 0
    while k0 < K:
        k1, T = k0 + 1, own[k0]
        while k1 < K and T + own[k1] <= budget:
            T, k1 = T + own[k1], k1 + 1
        ids = torch.cat([cand_ids[k, S:S + own[k]] for k in range(k0, k1)])
        offset = torch.cat([torch.arange(own[k], device=dev) for k in range(k0, k1)])
        block = torch.cat([torch.full((own[k],), k, device=dev) for k in range(k0, k1)])
        sees = (block[:, None] == block[None, :]) & (offset[None, :] <= offset[:, None])  # (T, T) per candidate
        mask = torch.cat([cached_mask.bool()[:, None, None, :].expand(B, 1, T, W), sees.expand(B, 1, T, T)], -1)
        logits = model(input_ids=ids.expand(B, -1), attention_mask=mask, position_ids=start + offset,
                       past_key_values=cache, use_cache=True).logits
        logp = torch.log_softmax(logits.float(), dim=-1)
        at = 0
        for k in range(k0, k1):  # the lead predicts tokens 0..S, the candidate's first n - 1 the rest
            n = own[k]
            pred = torch.cat([lead_logp, logp[:, at:at + n - 1]], 1)
            got = pred.gather(-1, cand_ids[k, :S + n].expand(B, -1).unsqueeze(-1)).squeeze(-1)
            out.append(torch.nn.functional.pad(got, (0, C - S - n)))
            at += n
        k0 = k1
    return out


def score_candidates(model, processor, prompts: list[list[dict]], candidates: list[str],
                     answer_prefix: str = SCORE_PREFIX, normalise: bool = False, prefix_cache=None,
                     keep_prompts: bool = False, own_tokens: bool = False):
    """Log-likelihood of each candidate answer after each prompt: returns a (B, K) tensor of summed log-probs
    (``normalise``: per token, so multi-token names such as KEGG's diseases are not penalised by length).

    One pass over each prompt (its DNA encoded once; the chat-template prefix all prompts share once, or from
    ``prefix_cache``), then the K candidates (``answer_prefix + candidate`` and the end-of-turn token) run on the
    prompts' KV cache (``candidate_logprobs``). ``keep_prompts``: returns (scores, ``PromptState``), so
    ``sampling.sample_groups(prompt_state=...)`` decodes from the same prefill (``predict --traces``).
    ``own_tokens``: count only the tokens after those all candidates share (the answer prefix's tokens add the same
    log-probability to every candidate, but under ``normalise`` a long prefix, such as a generated trace, would
    swamp the per-token means and favour long names).
    """
    import torch

    tok = processor.tokenizer
    enc = processor(prompts, padding_side="left")
    B, K = len(prompts), len(candidates)
    cand_ids = [tok(answer_prefix + c, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for c in candidates]
    C = max(len(c) for c in cand_ids)
    comp = torch.full((K, C), tok.pad_token_id, dtype=torch.long)
    cmask = torch.zeros((K, C), dtype=torch.long)
    for k, ids in enumerate(cand_ids):
        comp[k, :len(ids)] = torch.tensor(ids)
        cmask[k, :len(ids)] = 1
    device = next(model.parameters()).device
    with torch.no_grad():
        feats = model.get_dna_features(enc["dna_input_ids"].to(device), enc["dna_attention_mask"].to(device)) \
            if enc["dna_input_ids"].numel() else None
        logp = candidate_logprobs(model, enc["input_ids"].to(device), enc["attention_mask"].to(device),
                                  comp.to(device), cmask.to(device), feats, processor.prefix_len(prompts, enc),
                                  prefix_cache, keep_prompts)  # kept only when asked: it holds the prompts' cache
        logp, state = logp if keep_prompts else (logp, None)
        logp = logp.reshape(B * K, C)
    if own_tokens:
        cmask = cmask.clone()
        cmask[:, :_shared_lead(comp, cmask)] = 0
    total = (logp.cpu() * cmask.repeat(B, 1)).sum(1).view(B, K)
    total = total / cmask.sum(1).view(1, K) if normalise else total
    return (total, state) if keep_prompts else total


__all__ = ["CPU_PACK_FROM", "CPU_PACKED_POSITIONS", "GPU_CANDIDATE_ROWS", "SCORE_PREFIX", "PromptState",
           "candidate_logprobs", "score_candidates"]
