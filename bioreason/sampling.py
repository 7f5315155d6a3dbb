"""Batched sampling of G completions per prompt with the KV cache; DNA encoded once per prompt.

``sample_groups`` is what GRPO and ``predict --traces`` use: prompts are left-padded into one batch, each
prompt's DNA is encoded once and each prompt runs through the LLM once (prefill); its KV cache is repeated for
its G rows, and one ``generate`` call samples all B x G completions on top of it. The completion mask covers tokens up to and including the
first end-of-turn token.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Samples:
    completion_ids: torch.Tensor  # (B*G, C)
    completion_mask: torch.Tensor  # (B*G, C)
    texts: list[str]
    enc: dict  # the processor's output for the B prompts (ids, mask, DNA ids), each prompt once


def completion_mask(ids: torch.Tensor, eos_id: int) -> torch.Tensor:
    """1 up to and including the first ``eos_id`` of each row, 0 after it."""
    is_eos = ids == eos_id
    after = (is_eos.cumsum(1) - is_eos.long()) > 0  # strictly after the first eos
    return (~after).long()


@torch.no_grad()
def sample_groups(model, processor, prompts: list[list[dict]], group: int, max_new_tokens: int = 64,
                  temperature: float = 1.0, top_p: float = 1.0, do_sample: bool = True, prefix: str = "") -> Samples:
    """``prefix``: text the assistant's turn starts with (e.g. the opening of a reasoning trace, so a model that
    also learned empty think blocks writes its reasoning); it is part of ``texts``, not of ``completion_ids``."""
    tok = processor.tokenizer
    device = next(model.parameters()).device
    from bioreason.rl import prefill

    enc = processor(prompts, padding_side="left")
    ids, attn = enc["input_ids"].to(device), enc["attention_mask"].to(device)
    if prefix:
        pre = torch.tensor(tok(prefix, add_special_tokens=False)["input_ids"], device=device)
        ids = torch.cat([ids, pre.expand(ids.shape[0], -1)], 1)
        attn = torch.cat([attn, torch.ones((ids.shape[0], pre.numel()), dtype=attn.dtype, device=device)], 1)
    feats = None
    if enc["dna_input_ids"].numel():  # each prompt's DNA is encoded once
        feats = model.get_dna_features(enc["dna_input_ids"].to(device), enc["dna_attention_mask"].to(device))
    # prefill each prompt once (all but its last token, which holds no DNA), then share the cache across the group
    _, cache = prefill(model, ids[:, :-1], attn[:, :-1], feats, group)
    ids, attn = ids.repeat_interleave(group, 0), attn.repeat_interleave(group, 0)
    kw = dict(max_new_tokens=max_new_tokens, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    kw.update(dict(do_sample=True, temperature=temperature, top_p=top_p, top_k=0) if do_sample else
              dict(do_sample=False, temperature=None, top_p=None, top_k=None))
    out = model.generate(input_ids=ids, attention_mask=attn, past_key_values=cache, **kw)
    comp = out[:, ids.shape[1]:]
    if comp.shape[1] == 0:
        comp = torch.full((ids.shape[0], 1), tok.eos_token_id, dtype=torch.long, device=device)
    cmask = completion_mask(comp, tok.eos_token_id)
    comp = torch.where(cmask.bool(), comp, torch.full_like(comp, tok.pad_token_id))
    texts = [prefix + t for t in tok.batch_decode(comp, skip_special_tokens=True)]
    return Samples(comp, cmask, texts, enc)
