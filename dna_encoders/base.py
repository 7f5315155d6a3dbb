"""The encoder protocol, the registry, and the shared nucleotide clean-up.

A DNA encoder turns DNA strings into hidden states ``(batch, length, hidden)``.
Each encoder is one file that registers itself with ``@register("name")``; the
model builds encoders by name from a plain dict config, so checkpoints stay
pure JSON + safetensors. Tokenizers are separate, torch-free objects so that
the processor can count tokens without building a model. This module also
owns :func:`clean_sequence`, the single place where user DNA is validated
(upper-casing, IUPAC codes -> N, everything else an error naming the character
and its position).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Protocol, runtime_checkable

from bioreason.errors import InvalidSequenceError, UnknownEncoderError

log = logging.getLogger(__name__)

NUCLEOTIDES = frozenset("ACGTN")
# IUPAC ambiguity codes (and U for RNA input) that become N with a warning.
IUPAC_AMBIGUOUS = frozenset("RYSWKMBDHVU")


def clean_sequence(seq: str, *, name: str = "sequence") -> str:
    """Upper-case ``seq``; IUPAC codes become N (one warning); raise on anything else.

    ``name`` says which sequence it is ("DNA sequence 2") in the error message.
    """
    if seq is None or not str(seq).strip():
        raise InvalidSequenceError(f"{name} is empty; give at least one nucleotide (A, C, G, T or N)")
    up = str(seq).strip().upper()
    bad = set(up) - NUCLEOTIDES
    if not bad:
        return up
    for i, ch in enumerate(up):
        if ch not in NUCLEOTIDES and ch not in IUPAC_AMBIGUOUS:
            shown = repr(ch) if ch.isprintable() else f"U+{ord(ch):04X}"
            raise InvalidSequenceError(
                f"{name} has the character {shown} at position {i + 1} (1-based); "
                "only A, C, G, T, N and IUPAC ambiguity codes are accepted"
            )
    n_amb = sum(up.count(c) for c in IUPAC_AMBIGUOUS)
    log.warning("%s: %d IUPAC ambiguity code(s) (%s) replaced by N", name, n_amb, "".join(sorted(bad)))
    return up.translate(str.maketrans({c: "N" for c in IUPAC_AMBIGUOUS}))


def pasted_sequence(text: str) -> tuple[str, int]:
    """A sequence as people paste or save it -> (its bases, how many FASTA records the text holds). FASTA (a
    ``>`` header, then lines of 60-80 nt, ``;`` comments) or bare lines: line breaks and spaces are removed and
    only the first record is kept; :func:`clean_sequence` then checks the letters. Copying from a genome browser
    gives wrapped lines with a header, which the processor would refuse ("the character U+000A")."""
    lines = str(text or "").splitlines()
    records = sum(1 for line in lines if line.lstrip().startswith(">"))
    body, seen = [], False
    for line in lines:
        line = line.strip()
        if line.startswith(">"):
            if seen:
                break
            seen = True
        elif not line.startswith(";"):
            body.append("".join(line.split()))
    return "".join(body), records


@dataclass
class DNATokenizerOutput:
    """Token ids per sequence (ragged, Python lists); padding happens in :meth:`DNATokenizer.pad`."""

    input_ids: list[list[int]]


class DNATokenizer:
    """Base DNA tokenizer: subclasses define ``encode`` and ``pad_id``; padding is on the right."""

    pad_id: int = 0
    max_length: int = 1024  # nucleotides

    def encode(self, seq: str) -> list[int]:  # pragma: no cover - abstract
        raise NotImplementedError

    def num_tokens(self, seq_len: int) -> int:
        """How many encoder positions a sequence of ``seq_len`` nucleotides becomes."""
        raise NotImplementedError

    def __call__(self, seqs: list[str]) -> dict[str, Any]:
        """Tokenize and right-pad a batch; returns torch tensors ``input_ids``/``attention_mask`` (B, L)."""
        import torch

        ids = [self.encode(s) for s in seqs]
        width = max((len(x) for x in ids), default=0)
        input_ids = torch.full((len(ids), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for i, row in enumerate(ids):
            input_ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
            mask[i, : len(row)] = 1
        return {"input_ids": input_ids, "attention_mask": mask}


@runtime_checkable
class DNAEncoder(Protocol):
    """What the model needs from an encoder (an ``nn.Module``)."""

    hidden_size: int
    max_length: int

    def forward(self, input_ids, attention_mask):  # -> (B, L, hidden)
        ...


@dataclass
class EncoderSpec:
    """A registry entry: how to build the module and its tokenizer from a config dict."""

    name: str
    build_model: Callable[[dict], Any]
    build_tokenizer: Callable[[dict], DNATokenizer]
    default_config: Callable[[], dict]
    # load_weights(module, source) fills a freshly built module with pretrained weights (optional)
    load_weights: Callable[[Any, str], Any] | None = None


ENCODERS: dict[str, EncoderSpec] = {}


def register(name: str, *, tokenizer: Callable[[dict], DNATokenizer], default_config: Callable[[], dict],
             load_weights: Callable[[Any, str], Any] | None = None):
    """Class decorator: ``@register("tiny", tokenizer=..., default_config=...)`` on an nn.Module class."""

    def deco(cls):
        ENCODERS[name] = EncoderSpec(name, cls, tokenizer, default_config, load_weights)
        return cls

    return deco


def _load_all() -> None:
    # Import the built-in encoder files so that their decorators run (cheap: no torch models built).
    from bioreason.dna_encoders import evo2, hyena, nucleotide_transformer, tiny  # noqa: F401


def get_spec(name: str) -> EncoderSpec:
    _load_all()
    if name not in ENCODERS:
        raise UnknownEncoderError(
            f"unknown DNA encoder {name!r}; known encoders: {', '.join(sorted(ENCODERS))}"
        )
    return ENCODERS[name]


def build_encoder(name: str, config: dict | None = None):
    """Build the encoder module ``name`` from ``config`` (defaults filled in). Random weights."""
    spec = get_spec(name)
    cfg = {**spec.default_config(), **(config or {})}
    return spec.build_model(cfg)


def build_tokenizer(name: str, config: dict | None = None) -> DNATokenizer:
    spec = get_spec(name)
    cfg = {**spec.default_config(), **(config or {})}
    return spec.build_tokenizer(cfg)
