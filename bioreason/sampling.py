"""Batched sampling of G completions per prompt with the KV cache; DNA encoded once per prompt.

``sample_groups`` is what GRPO and ``predict --traces`` use: prompts are left-padded into one batch, each
prompt's DNA features are computed once and repeated for its G rows (not re-encoded G times), and one
``generate`` call samples all B x G completions. The completion mask covers tokens up to and including the
first end-of-turn token.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Samples:
    prompt_ids: torch.Tensor  # (B*G, P) left-padded
    prompt_mask: torch.Tensor  # (B*G, P)
    completion_ids: torch.Tensor  # (B*G, C)
    completion_mask: torch.Tensor  # (B*G, C)
    texts: list[str]
    placeholder_counts: list[int]  # per prompt (B)
    enc: dict  # the processor's output for the B prompts (DNA ids for re-encoding with gradients)

    def repeat_features(self, feats: torch.Tensor, group: int) -> torch.Tensor:
        """Per-prompt features (sum counts, H) -> per-row features for the B*G rows, in batch order."""
        return torch.cat([f.repeat(group, 1) for f in torch.split(feats, self.placeholder_counts)], dim=0)


def completion_mask(ids: torch.Tensor, eos_id: int) -> torch.Tensor:
    """1 up to and including the first ``eos_id`` of each row, 0 after it."""
    is_eos = ids == eos_id
    after = (is_eos.cumsum(1) - is_eos.long()) > 0  # strictly after the first eos
    return (~after).long()


@torch.no_grad()
def sample_groups(model, processor, prompts: list[list[dict]], group: int, max_new_tokens: int = 64,
                  temperature: float = 1.0, top_p: float = 1.0, do_sample: bool = True) -> Samples:
    tok = processor.tokenizer
    device = next(model.parameters()).device
    enc = processor(prompts, padding_side="left")
    counts = (enc["input_ids"] == processor.dna_pad_id).sum(1).tolist()
    feats = None
    if enc["dna_input_ids"].numel():
        feats = model.get_dna_features(enc["dna_input_ids"].to(device), enc["dna_attention_mask"].to(device))
        feats = torch.cat([f.repeat(group, 1) for f in torch.split(feats, counts)], dim=0)
    ids = enc["input_ids"].repeat_interleave(group, 0).to(device)
    attn = enc["attention_mask"].repeat_interleave(group, 0).to(device)
    kw = dict(max_new_tokens=max_new_tokens, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    kw.update(dict(do_sample=True, temperature=temperature, top_p=top_p, top_k=0) if do_sample else
              dict(do_sample=False, temperature=None, top_p=None, top_k=None))
    out = model.generate(input_ids=ids, attention_mask=attn, dna_features=feats, **kw)
    comp = out[:, ids.shape[1]:]
    if comp.shape[1] == 0:
        comp = torch.full((ids.shape[0], 1), tok.eos_token_id, dtype=torch.long, device=device)
    cmask = completion_mask(comp, tok.eos_token_id)
    comp = torch.where(cmask.bool(), comp, torch.full_like(comp, tok.pad_token_id))
    texts = tok.batch_decode(comp, skip_special_tokens=True)
    return Samples(ids, attn, comp, cmask, texts, counts, enc)
