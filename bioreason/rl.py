"""The small RL core: rewards (a registry with TRL's contract), group advantages, the GRPO loss, log-probs.

Reused by training (SFT/GRPO), evaluation, ``predict`` and the demo:
- rewards: ``reward(completions, **columns) -> list[float | None]``, registered with ``@register_reward``;
  correctness reads only the final ``Answer:`` line outside ``<think>`` (``bioreason.answers``), so naming both
  labels or answering only inside ``<think>`` scores 0;
- ``group_advantages``: ``(r - mean_group) / (std_group + 1e-4)``, NaN-aware;
- ``grpo_loss``: clipped importance-ratio surrogate, optional KL (k3 estimator) against a reference policy
  (the same model with its LoRA adapter disabled), DAPO/TRL token-level or per-sequence averaging; returns the
  loss and a dict of detached statistics;
- ``shared_prefix_logprobs``: per-token log-probs of continuations, each prompt run once (logits only for the
  continuation positions), its KV cache shared by its continuations;
- ``prefill``: the prompts' KV cache (their shared template prefix from a ``PrefixCache``), which
  ``bioreason.candidates.score_candidates`` (re-exported here: the log-likelihood of each candidate answer after a
  prompt, for ``predict --score-only`` and AUROC) and GRPO sampling start from.
Torch is imported inside the functions that need it, so the rewards stay importable without it.
"""

from __future__ import annotations

import math
import re
from typing import Callable

from bioreason.answers import extract_answer, match_label, normalise_text, split_think

REWARDS: dict[str, Callable] = {}
_FORMAT = re.compile(r"^\s*<think>\s*\S.*?</think>\s*Answer\s*:\s*\S[^\n]*\s*$", re.DOTALL | re.IGNORECASE)


def register_reward(name: str):
    def deco(fn):
        REWARDS[name] = fn
        fn.reward_name = name
        return fn

    return deco


def _labels_for(label_set, i):
    if label_set is None:
        return None
    item = label_set[i] if isinstance(label_set, (list, tuple)) and label_set and isinstance(
        label_set[0], (list, tuple)) else label_set
    return list(item) if item else None


@register_reward("correctness")
def correctness(completions: list[str], label: list[str], label_set=None, **_) -> list[float]:
    """1.0 when the final answer names exactly the gold label (closed set) or equals it (open set), else 0.0."""
    out = []
    for i, (text, gold) in enumerate(zip(completions, label)):
        answer = extract_answer(text)
        labels = _labels_for(label_set, i)
        if labels:
            ok = match_label(answer, labels) == gold
        else:
            ok = answer is not None and normalise_text(answer) == normalise_text(gold)
        out.append(1.0 if ok else 0.0)
    return out


@register_reward("format")
def format_reward(completions: list[str], **_) -> list[float]:
    """1.0 for ``<think>`` non-empty reasoning ``</think>`` then a single final ``Answer: ...`` line."""
    return [1.0 if text and _FORMAT.match(text) and text.count("</think>") == 1 else 0.0 for text in completions]


@register_reward("conciseness")
def conciseness(completions: list[str], max_words: int = 8, **_) -> list[float]:
    """1.0 when the final answer has at most ``max_words`` words (and exists), else 0.0."""
    out = []
    for text in completions:
        answer = extract_answer(text)
        out.append(1.0 if answer is not None and len(answer.split()) <= max_words else 0.0)
    return out


def get_reward(name: str) -> Callable:
    if name not in REWARDS:
        from bioreason.errors import RecipeError

        raise RecipeError(f"unknown reward {name!r}; registered rewards: {', '.join(sorted(REWARDS))}")
    return REWARDS[name]


def compute_rewards(completions: list[str], weights: dict[str, float], columns: dict):
    """(total (N,), per-function (N, F) tensor, names). ``None`` from a reward is NaN, ignored in the total."""
    import torch

    names = list(weights)
    cols = []
    for name in names:
        vals = get_reward(name)(completions, **columns)
        cols.append([math.nan if v is None else float(v) for v in vals])
    per = torch.tensor(cols, dtype=torch.float32).T  # (N, F)
    w = torch.tensor([weights[n] for n in names], dtype=torch.float32)
    total = torch.nansum(per * w, dim=1)
    return total, per, names


def group_advantages(rewards, group_size: int, eps: float = 1e-4):
    """(r - group mean) / (group std + eps) for consecutive groups of ``group_size``; NaN rewards -> 0."""
    import torch

    r = rewards.view(-1, group_size)  # (P, G)
    valid = ~torch.isnan(r)
    n = valid.sum(1, keepdim=True).clamp(min=1)
    mean = torch.where(valid, r, 0).sum(1, keepdim=True) / n
    var = torch.where(valid, (r - mean) ** 2, 0).sum(1, keepdim=True) / (n - 1).clamp(min=1)
    adv = (r - mean) / (var.sqrt() + eps)
    return torch.where(valid, adv, 0).view(-1)


def grpo_loss(logp, old_logp, advantages, mask, ref_logp=None, beta: float = 0.0, epsilon: float = 0.2,
              epsilon_high: float | None = None, loss_type: str = "dapo", global_tokens: float | None = None):
    """Clipped GRPO surrogate. Shapes: ``logp``, ``old_logp``, ``ref_logp``, ``mask`` (N, C); ``advantages`` (N,).

    ``loss_type``: ``dapo`` (sum over all completion tokens / number of tokens, as TRL's default) or ``grpo``
    (mean per sequence, then mean over sequences). ``global_tokens``: the token count over all processes, so that
    the loss of a sharded batch equals the single-process one. Returns ``(loss, stats)``.
    """
    import torch

    mask = mask.to(logp.dtype)
    ratio = torch.exp(logp - old_logp)
    hi = epsilon if epsilon_high is None else epsilon_high
    adv = advantages.unsqueeze(1)
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1 - epsilon, 1 + hi) * adv
    per_token = -torch.min(unclipped, clipped)
    kl = None
    if beta and ref_logp is not None:
        d = ref_logp - logp
        kl = torch.exp(d) - d - 1  # k3 estimator, >= 0
        per_token = per_token + beta * kl
    if loss_type == "grpo":
        loss = ((per_token * mask).sum(1) / mask.sum(1).clamp(min=1)).mean()
    elif loss_type == "dapo":
        loss = (per_token * mask).sum() / (global_tokens if global_tokens else mask.sum().clamp(min=1))
    else:
        raise ValueError(f"loss_type must be 'dapo' or 'grpo', not {loss_type!r}")
    with torch.no_grad():
        ntok = mask.sum().clamp(min=1)
        is_clipped = ((ratio < 1 - epsilon) & (adv < 0)) | ((ratio > 1 + hi) & (adv > 0))
        stats = {"clip_fraction": float((is_clipped.to(mask.dtype) * mask).sum() / ntok),
                 "kl": float((kl * mask).sum() / ntok) if kl is not None else 0.0,
                 "completion_length": float(mask.sum(1).mean())}
    return loss, stats


def _expand_cache(cache, repeats: int):
    """A copy of a ``DynamicCache`` with every row repeated ``repeats`` times (differentiable)."""
    return cache_holding([(layer.keys.repeat_interleave(repeats, 0), layer.values.repeat_interleave(repeats, 0))
                          for layer in cache.layers])


PREFIX_CACHING = True  # benchmarks switch it off to measure what it saves


class PrefixCache:
    """KV caches of shared prompt prefixes (system turn + chat template opening) for a model whose weights do not
    change while it is in use (``predict``, ``eval``, the demo): each distinct prefix is computed once per dtype
    and device and reused by every later batch, as vLLM's prefix caching does. Training passes none: its prefix
    is computed once per call, with gradients, and shared by that call's rows."""

    def __init__(self, max_entries: int = 4):
        from collections import OrderedDict

        self.entries, self.max_entries, self.computed = OrderedDict(), int(max_entries), 0

    def kv(self, model, prefix_ids):
        import torch

        device = prefix_ids.device
        key = (tuple(prefix_ids[0].tolist()), str(device), torch.is_autocast_enabled(device.type),
               torch.get_autocast_dtype(device.type))
        if key not in self.entries:
            self.entries[key] = [(k.detach(), v.detach()) for k, v in _prefix_kv(model, prefix_ids)]
            self.computed += 1
            while len(self.entries) > self.max_entries:
                self.entries.popitem(last=False)
        self.entries.move_to_end(key)
        return self.entries[key]


def last_only(ids):
    """``logits_to_keep`` for the last position of ``ids`` (B, T), as an index tensor, so transformers gathers that
    hidden state into a contiguous (B, 1, H) tensor. With ``logits_to_keep=1`` it slices a strided view instead, and
    torch.matmul runs the output head as a batched matmul against its weight expanded per row: in bf16 a copy of
    B x 576 x 49,155 values, 0.45 s of a 1.36 s score-only batch of 8 on the embedded default."""
    import torch

    return torch.tensor([ids.shape[1] - 1], device=ids.device)


def returned_cache(out):
    """The KV cache a model call returned (``cache`` from transformers 5.2x, ``past_key_values`` before)."""
    return out.cache if getattr(out, "cache", None) is not None else out.past_key_values


def cache_holding(kv):
    """A ``DynamicCache`` whose layers hold these [(keys, values)] as they are, not copied: the next call appends to
    them (and concatenation makes its own new tensors, so the given ones are never written)."""
    from transformers import DynamicCache

    cache = DynamicCache()
    for i, (k, v) in enumerate(kv):
        cache.update(k[:, :, :0], v[:, :, :0], i)  # the layer's own set-up, on no positions
        cache.layers[i].keys, cache.layers[i].values = k, v
    return cache


def _prefix_kv(model, prefix_ids):
    """[(keys, values)] per layer of one prefix (1, P) run at positions 0..P-1."""
    import torch

    pos = torch.arange(prefix_ids.shape[1], device=prefix_ids.device)[None]
    out = model(input_ids=prefix_ids, attention_mask=torch.ones_like(prefix_ids), position_ids=pos, use_cache=True,
                logits_to_keep=last_only(prefix_ids))
    cache = returned_cache(out)
    return [(layer.keys, layer.values) for layer in cache.layers]


def prefill(model, ids, mask, dna_features=None, repeats: int = 1, prefix_len: int = 0, prefix_cache=None):
    """Run left-padded prompts (B, T) once: (last-position logits (B*R, V), KV cache with rows repeated R times,
    the (B, T) attention mask of that cache's columns).

    Positions follow the attention mask, so padded rows count from their first real token. With ``prefix_len``
    P > 1 (``DNALLMProcessor.prefix_len``: the chat-template tokens every row starts with) the prefix runs once,
    or comes from ``prefix_cache``, and only the rest of each row runs on top of it: the cache's columns are then
    the prefix, then each row's padding, then the rest of the row (the returned mask says which are real), so
    continuations attend to exactly the same tokens at the same positions.
    """
    import torch

    B, T = ids.shape
    P = int(prefix_len) if PREFIX_CACHING else 0
    if P < 2 or (B == 1 and prefix_cache is None):  # nothing to share
        pos = (mask.cumsum(1) - 1).clamp(min=0)
        out = model(input_ids=ids, attention_mask=mask, dna_features=dna_features, position_ids=pos, use_cache=True,
                    logits_to_keep=last_only(ids))
        cache = returned_cache(out)
        return (out.logits[:, -1].repeat_interleave(repeats, 0),
                cache if repeats == 1 else _expand_cache(cache, repeats), mask)
    pads = T - mask.sum(1)  # (B,) left padding of each row
    first = int(pads[0])
    prefix_ids = ids[:1, first:first + P]
    kv = prefix_cache.kv(model, prefix_ids) if prefix_cache is not None else _prefix_kv(model, prefix_ids)
    col = torch.arange(T - P, device=ids.device)[None]  # the rest, left-padded again: column c <- ids column c + P
    real = col >= pads[:, None]
    rest = torch.where(real, ids.gather(1, (col + P).expand(B, -1)), ids.new_zeros(()))  # padding: masked out
    rest_mask = real.to(mask.dtype)
    full_mask = torch.cat([mask.new_ones((B, P)), rest_mask], 1)
    pos = P + (rest_mask.cumsum(1) - 1).clamp(min=0)
    cache = cache_holding([(k.expand(B, -1, -1, -1), v.expand(B, -1, -1, -1)) for k, v in kv])
    out = model(input_ids=rest, attention_mask=full_mask, dna_features=dna_features, position_ids=pos,
                past_key_values=cache, use_cache=True, logits_to_keep=last_only(rest))
    cache = returned_cache(out)
    return (out.logits[:, -1].repeat_interleave(repeats, 0), cache if repeats == 1 else _expand_cache(cache, repeats),
            full_mask)


def shared_prefix_logprobs(model, prompt_ids, prompt_mask, cont_ids, cont_mask, repeats: int, dna_features=None,
                           prefix_len: int = 0, prefix_cache=None):
    """Log-probs (B*R, C) of R continuations per prompt, running each prompt through the LLM once.

    The prompts (B, P; left-padded) are encoded once with the KV cache (their shared template prefix once for
    all, see ``prefill``), the cache rows are repeated R times, and only the continuation tokens (B*R, C;
    right-padded) run on top of it. Gradients flow through all of it.
    """
    import torch

    first, cache, cached_mask = prefill(model, prompt_ids, prompt_mask, dna_features, repeats, prefix_len,
                                        prefix_cache)  # first: (B*R, V)
    full_mask = torch.cat([cached_mask.repeat_interleave(repeats, 0), cont_mask], dim=1)
    start = prompt_mask.sum(1, keepdim=True).repeat_interleave(repeats, 0)
    cont_pos = start + torch.arange(cont_ids.shape[1], device=cont_ids.device)
    rest = model(input_ids=cont_ids, attention_mask=full_mask, position_ids=cont_pos,
                 past_key_values=cache, use_cache=True).logits[:, :-1]
    logits = torch.cat([first.unsqueeze(1), rest], dim=1).float()  # (B*R, C, V)
    return torch.log_softmax(logits, dim=-1).gather(-1, cont_ids.unsqueeze(-1)).squeeze(-1)


# candidate scoring lives in bioreason.candidates (it needs ``prefill`` above); the names stay importable from here
from bioreason.candidates import SCORE_PREFIX, PromptState, candidate_logprobs, score_candidates  # noqa: E402

__all__ = ["REWARDS", "register_reward", "correctness", "format_reward", "conciseness", "compute_rewards",
           "group_advantages", "grpo_loss", "PrefixCache", "prefill", "shared_prefix_logprobs", "candidate_logprobs",
           "PromptState", "SCORE_PREFIX", "score_candidates", "split_think"]
