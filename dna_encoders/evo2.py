"""Evo 2 (Arc Institute) as a DNA encoder: optional, imported lazily, untested here.

Evo 2 needs the ``evo2`` package and a CUDA GPU (Hopper for FP8 at 1B/40B);
nothing in this project's tests runs it. Building this encoder without the
package raises an error with the install command. Embeddings are taken from
one intermediate layer (BioReason uses ``blocks.20.mlp.l3`` for 1B).
"""

from __future__ import annotations

import torch.nn as nn

from bioreason.dna_encoders.base import DNATokenizer, register
from bioreason.errors import MissingDependencyError

INSTALL_HINT = ("the evo2 encoder needs the optional 'evo2' package and a CUDA GPU: "
                "`pip install bioreason[evo2]` (see https://github.com/ArcInstitute/evo2 for its CUDA needs)")


def default_config() -> dict:
    return dict(model_name="evo2_1b_base", layer_name="blocks.20.mlp.l3", hidden_size=1920, max_nucleotides=8192)


def _import_evo2():
    try:
        import evo2  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError(INSTALL_HINT) from exc
    return evo2


class Evo2Tokenizer(DNATokenizer):
    """Byte-level tokens (Evo 2's CharLevelTokenizer: ``ord(c)``), right padding with 1."""

    pad_id = 1

    def __init__(self, cfg: dict):
        self.max_length = int(cfg["max_nucleotides"])

    def encode(self, seq: str) -> list[int]:
        return list(seq.encode("ascii"))

    def num_tokens(self, seq_len: int) -> int:
        return seq_len


@register("evo2", tokenizer=Evo2Tokenizer, default_config=default_config)
class Evo2Encoder(nn.Module):
    """Wraps ``evo2.Evo2``; returns the hidden states of ``layer_name``: (B, L) -> (B, L, hidden_size)."""

    def __init__(self, cfg: dict):
        super().__init__()
        evo2 = _import_evo2()
        self.evo = evo2.Evo2(cfg["model_name"])
        self.layer_name = cfg["layer_name"]
        self.hidden_size = int(cfg["hidden_size"])
        self.max_length = int(cfg["max_nucleotides"])

    def forward(self, input_ids, attention_mask=None):
        _, emb = self.evo(input_ids, return_embeddings=True, layer_names=[self.layer_name])
        return emb[self.layer_name]
