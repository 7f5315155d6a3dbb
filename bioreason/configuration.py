"""``DNALLMConfig``: everything needed to build a DNA-LLM from scratch, as JSON.

Holds the text model's config (``text_config``, any ``AutoConfig`` model type),
the DNA encoder's registry name and its plain-dict config, the projector's
pooling settings, and the ids of the three DNA special tokens. Like LLaVA's
config, it has sub-configs plus a few scalars; weights never live here.
"""

from __future__ import annotations

import math

from transformers import AutoConfig, PretrainedConfig

DNA_START, DNA_PAD, DNA_END = "<|dna_start|>", "<|dna_pad|>", "<|dna_end|>"
POOLING_KINDS = ("mean", "attention")


class DNALLMConfig(PretrainedConfig):
    """Config of :class:`bioreason.modeling.DNALLMForCausalLM`.

    Args:
        text_config: dict or ``PretrainedConfig`` of the causal LM (e.g. ``LlamaConfig`` for SmolLM2).
        dna_encoder: registry name in ``bioreason.dna_encoders`` (``hyena``, ``tiny``, ...).
        dna_config: plain dict config of that encoder (defaults filled by the registry).
        dna_hidden_size: width of the encoder's hidden states.
        pooling: ``"mean"`` (strided mean) or ``"attention"`` (a learned softmax pool per stride window).
        pool_stride: encoder positions per LLM position; 16 turns 1,024 nt into 64 LLM tokens.
        max_dna_tokens: upper bound on LLM positions per sequence (checked against the stride).
        projector_hidden_act: activation between the projector's two Linear layers.
        dna_start_token_id / dna_pad_token_id / dna_end_token_id: ids of the special tokens in the LLM vocabulary.
        freeze_encoder / freeze_llm: initial trainability (the encoder is frozen by default).
    """

    model_type = "bioreason_dnallm"
    sub_configs = {"text_config": AutoConfig}

    def __init__(self, text_config=None, dna_encoder: str = "tiny", dna_config: dict | None = None,
                 dna_hidden_size: int | None = None, pooling: str = "mean", pool_stride: int = 16,
                 max_dna_tokens: int = 64, projector_hidden_act: str = "gelu",
                 dna_start_token_id: int | None = None, dna_pad_token_id: int | None = None,
                 dna_end_token_id: int | None = None, model_id: str | None = None, freeze_encoder: bool = True,
                 freeze_llm: bool = False, **kwargs):
        if isinstance(text_config, dict):
            kind = text_config.get("model_type", "llama")
            text_config = AutoConfig.for_model(**{**text_config, "model_type": kind})
        elif text_config is None:
            text_config = AutoConfig.for_model("llama")
        self.text_config = text_config
        self.dna_encoder = dna_encoder
        self.dna_config = dict(dna_config or {})
        self.dna_hidden_size = dna_hidden_size
        if pooling not in POOLING_KINDS:
            raise ValueError(f"pooling must be one of {POOLING_KINDS}, not {pooling!r}")
        self.pooling = pooling
        self.pool_stride = int(pool_stride)
        self.max_dna_tokens = int(max_dna_tokens)
        self.projector_hidden_act = projector_hidden_act
        self.dna_start_token_id = dna_start_token_id
        self.dna_pad_token_id = dna_pad_token_id
        self.dna_end_token_id = dna_end_token_id
        self.freeze_encoder = bool(freeze_encoder)  # applied when the model is built; see set_trainable
        self.freeze_llm = bool(freeze_llm)
        self.model_id = model_id  # a human-readable name written into predictions (e.g. "bioreason-default")
        super().__init__(**kwargs)

    def num_dna_features(self, n_encoder_tokens: int) -> int:
        """LLM positions produced from ``n_encoder_tokens`` encoder positions: ceil(n / stride)."""
        return math.ceil(n_encoder_tokens / self.pool_stride)
