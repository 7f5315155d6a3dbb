"""A tiny random encoder for tests: embedding + 1-D convolutions, built in milliseconds.

Same tokenizer contract as HyenaDNA (one token per nucleotide, right padding),
so tests exercise the processor's counting and the model's pooling exactly as
the real default does, at a fraction of the cost.
"""

from __future__ import annotations

import torch.nn as nn

from bioreason.dna_encoders.base import register
from bioreason.dna_encoders.hyena import HyenaTokenizer


def default_config() -> dict:
    return dict(d_model=16, n_layer=2, max_nucleotides=1024, max_seq_len=1026, kernel=5)


@register("tiny", tokenizer=HyenaTokenizer, default_config=default_config)
class TinyEncoder(nn.Module):
    """ids (B, L) -> (B, L, d_model): embedding, then n_layer residual conv+GELU blocks."""

    def __init__(self, cfg: dict):
        super().__init__()
        d = cfg["d_model"]
        self.hidden_size = d
        self.max_length = int(cfg["max_nucleotides"])
        self.embeddings = nn.Embedding(16, d)
        k = cfg["kernel"]
        self.convs = nn.ModuleList(nn.Conv1d(d, d, k, padding=k // 2) for _ in range(cfg["n_layer"]))
        self.act = nn.GELU()

    def forward(self, input_ids, attention_mask=None):
        h = self.embeddings(input_ids)
        keep = 1.0 if attention_mask is None else attention_mask.unsqueeze(-1).to(h.dtype)  # (B, L, 1)
        h = h * keep  # (B, L, d); padding zeroed so it acts like conv zero-padding
        for conv in self.convs:
            h = (h + self.act(conv(h.transpose(1, 2)).transpose(1, 2))) * keep
        return h
