"""Nucleotide Transformer (InstaDeep) checkpoints in the ESM layout, through ``transformers.EsmModel``: no remote
code.

Users who are online build it from a hub checkpoint (``pretrained`` in the encoder config, e.g. NT v1's
``InstaDeepAI/nucleotide-transformer-500m-human-ref``): the ESM config is read from the hub, the weights arrive
by ``load_weights`` (strictly: every tensor must fit) and the hub tokenizer is used. **NT-v2 checkpoints
(``nucleotide-transformer-v2-*``) are not supported**: their feed-forward is gated (SwiGLU, a weight twice
``intermediate_size`` wide, no bias) and ``EsmModel`` has no such layer, so loading one stops with an error that
says so instead of silently keeping random weights. Offline and in tests it is built from a tiny
``EsmConfig`` dict with a built-in non-overlapping 6-mer tokenizer laid out
like NT's vocabulary (specials, 4,096 6-mers, single nucleotides).
"""

from __future__ import annotations

import itertools

import torch.nn as nn

from bioreason.dna_encoders.base import DNATokenizer, register

SPECIALS = ["<unk>", "<pad>", "<mask>", "<cls>", "<eos>", "<bos>"]


def default_config() -> dict:
    """A tiny ESM (hidden 128, 2 layers, 4 heads): the reference workload's encoder shape."""
    return dict(pretrained=None, k=6, max_nucleotides=1024,
                esm=dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256,
                         max_position_embeddings=1026, position_embedding_type="rotary",
                         pad_token_id=1, mask_token_id=2, token_dropout=False, emb_layer_norm_before=False))


class KmerTokenizer(DNATokenizer):
    """``<cls>`` then non-overlapping k-mers; a tail shorter than k becomes single-nucleotide tokens."""

    pad_id = 1

    def __init__(self, cfg: dict):
        self.k = int(cfg.get("k", 6))
        self.max_length = int(cfg.get("max_nucleotides", 1024))
        self._hf = None
        vocab = SPECIALS + ["".join(p) for p in itertools.product("ATCG", repeat=self.k)] + list("ATCGN")
        self.vocab = {tok: i for i, tok in enumerate(vocab)}
        if cfg.get("pretrained"):
            from transformers import AutoTokenizer

            self._hf = AutoTokenizer.from_pretrained(cfg["pretrained"])
            self.pad_id = self._hf.pad_token_id

    def encode(self, seq: str) -> list[int]:
        if self._hf is not None:
            return self._hf(seq, add_special_tokens=True)["input_ids"]
        k, v = self.k, self.vocab
        n_full = len(seq) // k * k
        ids = [v["<cls>"]] + [v.get(seq[i:i + k], v["<unk>"]) for i in range(0, n_full, k)]
        return ids + [v[c] for c in seq[n_full:]]

    def num_tokens(self, seq_len: int) -> int:
        return 1 + seq_len // self.k + seq_len % self.k

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)


NOT_ESM = ("{source} is not in the ESM layout that transformers.EsmModel loads ({detail}); NT-v2 checkpoints "
           "(nucleotide-transformer-v2-*) use a gated (SwiGLU) feed-forward and are not supported: use an NT v1 "
           "checkpoint such as InstaDeepAI/nucleotide-transformer-500m-human-ref, or the hyena or evo2 encoder")


def _load_weights(encoder: "NucleotideTransformerEncoder", source: str):
    from transformers import EsmModel

    from bioreason.errors import CorruptModelError

    try:
        pretrained = EsmModel.from_pretrained(source, add_pooling_layer=False)
        encoder.model.load_state_dict(pretrained.state_dict(), strict=True)
    except (RuntimeError, ValueError) as exc:  # size mismatch, missing or unexpected tensors
        detail = " ".join(str(exc).split())[:300]
        raise CorruptModelError(NOT_ESM.format(source=source, detail=detail)) from None
    return encoder


@register("nucleotide-transformer", tokenizer=KmerTokenizer, default_config=default_config,
          load_weights=_load_weights)
class NucleotideTransformerEncoder(nn.Module):
    """ESM encoder without its LM head: last hidden state only (no all-layer outputs). (B, L) -> (B, L, H)."""

    def __init__(self, cfg: dict):
        super().__init__()
        from transformers import EsmConfig, EsmModel

        if cfg.get("pretrained") and not cfg.get("esm_from_hub"):
            esm_cfg = EsmConfig.from_pretrained(cfg["pretrained"])
        else:
            esm = dict(cfg["esm"])
            esm.setdefault("vocab_size", len(SPECIALS) + 4 ** int(cfg.get("k", 6)) + 5)
            esm_cfg = EsmConfig(**esm)
        self.model = EsmModel(esm_cfg, add_pooling_layer=False)
        self.hidden_size = esm_cfg.hidden_size
        self.max_length = int(cfg.get("max_nucleotides", 1024))

    def forward(self, input_ids, attention_mask=None):
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
