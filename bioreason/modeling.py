"""``DNALLMForCausalLM``: DNA encoder -> pooling -> projector -> causal LLM, the LLaVA way.

The model is built from :class:`DNALLMConfig` alone; weights arrive through
``from_pretrained`` (safetensors). DNA enters the LLM as feature vectors that
replace ``<|dna_pad|>`` placeholder embeddings in one masked scatter; the
processor decides how many placeholders a sequence gets, and this module only
checks that the counts agree. DNA is encoded at prefill only: during
``generate()`` the DNA inputs are dropped after the first step and the KV
cache carries them. Shapes: N DNA sequences in a batch, L encoder positions,
L' = ceil(L / stride) pooled positions, Hd encoder width, H LLM width.
"""

from __future__ import annotations

import contextlib
import functools

import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, GenerationMixin, PreTrainedModel
from transformers.activations import ACT2FN

from bioreason.configuration import DNALLMConfig
from bioreason.dna_encoders import build_encoder
from bioreason.errors import PlaceholderCountError


class DNAPooler(nn.Module):
    """Strided pooling over encoder positions: (N, L, Hd), mask (N, L) -> (N, L', Hd), mask (N, L').

    ``mean``: the average of the valid positions in each window of ``stride``.
    ``attention``: a learned score per position, softmax within each window (a tiny attention pool).
    With right padding the valid pooled positions of a sequence of n tokens are its first ceil(n / stride).
    """

    def __init__(self, hidden_size: int, stride: int, kind: str = "mean"):
        super().__init__()
        self.stride, self.kind = stride, kind
        self.score = nn.Linear(hidden_size, 1) if kind == "attention" else None

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        N, L, Hd = h.shape
        s = self.stride
        pad = (-L) % s
        if pad:
            h = F.pad(h, (0, 0, 0, pad))
            mask = F.pad(mask, (0, pad))
        h = h.view(N, -1, s, Hd)  # (N, L', s, Hd)
        m = mask.view(N, -1, s).to(h.dtype)  # (N, L', s)
        if self.kind == "attention":
            scores = self.score(h).squeeze(-1).float().masked_fill(m == 0, float("-inf"))  # (N, L', s)
            w = torch.softmax(scores, dim=-1).nan_to_num(0.0).to(h.dtype)  # empty windows -> all zero
        else:
            w = m / m.sum(-1, keepdim=True).clamp(min=1)
        pooled = torch.einsum("nps,npsd->npd", w, h)  # (N, L', Hd)
        return pooled, m.sum(-1) > 0


class DNAProjector(nn.Module):
    """Linear-act-Linear from the encoder width to the LLM width: (n, Hd) -> (n, H)."""

    def __init__(self, in_size: int, out_size: int, act: str = "gelu"):
        super().__init__()
        self.linear_1 = nn.Linear(in_size, out_size)
        self.act = ACT2FN[act]
        self.linear_2 = nn.Linear(out_size, out_size)

    def forward(self, x):
        return self.linear_2(self.act(self.linear_1(x)))


class DNALLMPreTrainedModel(PreTrainedModel):
    config_class = DNALLMConfig
    config: DNALLMConfig
    base_model_prefix = "dnallm"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True
    _no_split_modules = ["LlamaDecoderLayer", "Qwen2DecoderLayer", "Qwen3DecoderLayer"]

    def _init_weights(self, module):
        # Only the new parts need an init; the LLM and encoder initialise themselves (and get real weights later).
        if isinstance(module, (DNAProjector, DNAPooler)):
            for sub in module.modules():
                if isinstance(sub, nn.Linear):
                    nn.init.normal_(sub.weight, std=0.02)
                    nn.init.zeros_(sub.bias)


@functools.lru_cache(maxsize=None)
def _cache_kwarg_of(lm_class) -> str:
    """The name a language model class's forward takes its KV cache by (transformers 5.2x renamed
    ``past_key_values`` to ``cache``); looked up once per class, not on every decode step."""
    import inspect

    params = inspect.signature(lm_class.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


class DNALLMForCausalLM(DNALLMPreTrainedModel, GenerationMixin):
    """A causal LLM that reads DNA. See the module docstring for the data flow."""

    def __init__(self, config: DNALLMConfig):
        super().__init__(config)
        self.language_model = AutoModelForCausalLM.from_config(config.text_config)
        self.dna_encoder = build_encoder(config.dna_encoder, config.dna_config)
        dna_hidden = config.dna_hidden_size or self.dna_encoder.hidden_size
        self.pooler = DNAPooler(dna_hidden, config.pool_stride, config.pooling)
        self.projector = DNAProjector(dna_hidden, config.text_config.hidden_size, config.projector_hidden_act)
        self.post_init()
        self.set_trainable(encoder=not config.freeze_encoder, llm=not config.freeze_llm, projector=True)

    # --- plumbing expected by transformers / peft -------------------------------------------------
    def get_input_embeddings(self):
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.language_model.set_input_embeddings(value)

    def get_output_embeddings(self):
        return self.language_model.get_output_embeddings()

    def set_output_embeddings(self, value):
        self.language_model.set_output_embeddings(value)

    def get_decoder(self):
        return self.language_model.get_decoder()

    def _cache_kwarg(self) -> str:
        return _cache_kwarg_of(type(self.language_model))

    # --- training switches ---------------------------------------------------------------------------
    def set_trainable(self, *, encoder: bool = False, llm: bool = False, projector: bool = True) -> None:
        """Freeze or unfreeze the three parts. The encoder, when trainable, really gets gradients."""
        for p in self.dna_encoder.parameters():
            p.requires_grad_(encoder)
        for p in self.language_model.parameters():
            p.requires_grad_(llm)
        for p in list(self.projector.parameters()) + list(self.pooler.parameters()):
            p.requires_grad_(projector)

    # --- DNA path ----------------------------------------------------------------------------------------
    def get_dna_features(self, dna_input_ids: torch.Tensor, dna_attention_mask: torch.Tensor) -> torch.Tensor:
        """Encode, pool and project N sequences: ids (N, L) -> features (n_valid_pooled, H), in batch order."""
        if dna_attention_mask is None:
            dna_attention_mask = torch.ones_like(dna_input_ids)
        trains = any(p.requires_grad for p in self.dna_encoder.parameters()) and torch.is_grad_enabled()
        with contextlib.nullcontext() if trains else torch.no_grad():
            h = self.dna_encoder(dna_input_ids, dna_attention_mask)  # (N, L, Hd)
        pooled, pmask = self.pooler(h, dna_attention_mask)  # (N, L', Hd), (N, L')
        valid = pooled[pmask].to(self.projector.linear_1.weight.dtype)  # (n_valid, Hd), row-major = batch order
        return self.projector(valid)  # (n_valid, H)

    def merge_dna(self, input_ids: torch.Tensor, inputs_embeds: torch.Tensor, dna_features: torch.Tensor):
        """Put ``dna_features`` (n, H) into the placeholder positions of ``inputs_embeds`` (B, T, H)."""
        mask = input_ids == self.config.dna_pad_token_id  # (B, T)
        n_tokens, n_features = int(mask.sum()), dna_features.shape[0]
        if n_tokens != n_features:
            raise PlaceholderCountError(
                f"the text holds {n_tokens} DNA placeholder tokens but the DNA gives {n_features} feature "
                "vectors; build inputs with DNALLMProcessor, which expands each DNA marker to the right count"
            )
        mask = mask.unsqueeze(-1).expand_as(inputs_embeds)
        return inputs_embeds.masked_scatter(mask, dna_features.to(inputs_embeds.dtype))

    def embed(self, input_ids, dna_input_ids=None, dna_attention_mask=None, dna_features=None):
        """Text embeddings with DNA merged in: (B, T) -> (B, T, H)."""
        inputs_embeds = self.get_input_embeddings()(input_ids)
        if dna_features is None and dna_input_ids is not None and dna_input_ids.numel():
            dna_features = self.get_dna_features(dna_input_ids, dna_attention_mask)
        if dna_features is None:
            dna_features = inputs_embeds.new_zeros((0, inputs_embeds.shape[-1]))
        return self.merge_dna(input_ids, inputs_embeds, dna_features)

    def forward(self, input_ids=None, attention_mask=None, dna_input_ids=None, dna_attention_mask=None,
                dna_features=None, inputs_embeds=None, labels=None, logits_to_keep=0, cache=None,
                past_key_values=None, **kwargs):
        """Like any causal LM's forward; DNA inputs are merged when given (at prefill)."""
        cache = cache if cache is not None else past_key_values
        if cache is not None:  # transformers 5.2x renamed past_key_values to cache; pass the name the LLM takes
            kwargs[self._cache_kwarg()] = cache
        if inputs_embeds is None:
            has_dna = dna_input_ids is not None or dna_features is not None
            if has_dna or bool((input_ids == self.config.dna_pad_token_id).any()):
                inputs_embeds = self.embed(input_ids, dna_input_ids, dna_attention_mask, dna_features)
                input_ids = None
        return self.language_model(input_ids=input_ids, inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                                   labels=labels, logits_to_keep=logits_to_keep, **kwargs)

    def generate(self, *args, **kwargs):
        """``GenerationMixin.generate``, never sampling the DNA special tokens (they carry no text)."""
        dna_tokens = [i for i in (self.config.dna_start_token_id, self.config.dna_pad_token_id,
                                  self.config.dna_end_token_id) if i is not None]
        if dna_tokens and kwargs.get("suppress_tokens") is None:
            kwargs["suppress_tokens"] = dna_tokens
        if kwargs.get("past_key_values") is not None and self._cache_kwarg() == "cache":
            kwargs["cache"] = kwargs.pop("past_key_values")  # renamed in transformers 5.2x (old name warns)
        return super().generate(*args, **kwargs)

    def prepare_inputs_for_generation(self, *args, dna_input_ids=None, dna_attention_mask=None, dna_features=None,
                                      is_first_iteration=False, **kwargs):
        inputs = super().prepare_inputs_for_generation(*args, is_first_iteration=is_first_iteration, **kwargs)
        mask = kwargs.get("attention_mask")
        step = inputs.get("input_ids") if inputs.get("input_ids") is not None else inputs.get("inputs_embeds")
        if inputs.get("position_ids") is None and mask is not None and mask.dim() == 2 and step is not None:
            # positions follow the attention mask, so left-padded rows count from their first real token, also
            # when generation continues from a prefilled cache (GRPO groups share one prompt prefill)
            pos = (mask.long().cumsum(-1) - 1).clamp(min=0)
            inputs["position_ids"] = pos[:, -step.shape[1]:]
        if is_first_iteration or not kwargs.get("use_cache", True):
            inputs.update(dna_input_ids=dna_input_ids, dna_attention_mask=dna_attention_mask,
                          dna_features=dna_features)
        return inputs


def unwrap_dna_llm(model) -> DNALLMForCausalLM:
    """The DNALLMForCausalLM under a DDP (``.module``) and/or peft (``get_base_model``) wrapper."""
    base = model.module if hasattr(model, "module") else model
    return base.get_base_model() if hasattr(base, "get_base_model") else base


def is_fsdp(model) -> bool:
    """Whether any part of ``model`` is wrapped by FSDP (its weights are then shards, not whole tensors)."""
    return any(type(m).__name__.startswith(("FullyShardedDataParallel", "FSDP")) for m in model.modules())


@contextlib.contextmanager
def merged_lora(model):
    """For the duration, LoRA adapters are merged into their base weights (generation then runs one matmul per
    adapted layer instead of three: 6-10% faster sampling at batch 8 on the embedded default). Afterwards the base
    weights are restored from copies, not by subtracting the update again, so bf16 weights never drift. A model
    without a peft adapter, with one already merged, or sharded by FSDP (whose weights are not whole here) is
    left alone."""
    base = model.module if hasattr(model, "module") else model
    layers = [m for m in base.modules() if hasattr(m, "get_delta_weight") and hasattr(m, "base_layer")]
    merged = any(getattr(m, "merged", False) for m in layers)
    if not hasattr(base, "merge_adapter") or not layers or merged or is_fsdp(model):
        yield model
        return
    from bioreason.autocast_cache import invalidate

    saved = [(m.base_layer.weight, m.base_layer.weight.detach().clone()) for m in layers]
    base.merge_adapter()
    invalidate()  # peft merges through weight.data: kept autocast copies cannot see it
    try:
        yield model
    finally:
        base.unmerge_adapter()
        with torch.no_grad():
            for weight, copy in saved:
                weight.copy_(copy)
        invalidate()


def apply_lora(model: DNALLMForCausalLM, r: int = 16, alpha: int = 32, dropout: float = 0.05,
               target_modules=("q_proj", "k_proj", "v_proj", "o_proj"), train_encoder: bool = False):
    """Wrap ``model`` with a peft LoRA adapter on the LLM's attention; projector (and pooler) fully trainable.

    The encoder stays frozen unless ``train_encoder``. Returns a ``peft.PeftModel``; with
    ``model.disable_adapter()`` it is the reference policy, with no second copy in memory.
    """
    from peft import LoraConfig, get_peft_model

    names = "|".join(target_modules)
    cfg = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, bias="none",
                     target_modules=rf"language_model\..*\.({names})$")
    model.set_trainable(encoder=train_encoder, llm=False, projector=True)
    try:
        peft_model = get_peft_model(model, cfg)
    except ValueError as exc:  # peft's NoMatchingPeftModuleError: no LLM module has one of those names
        from bioreason.errors import RecipeError

        linear = sorted({n.rsplit(".", 1)[-1] for n, m in model.language_model.named_modules()
                         if isinstance(m, torch.nn.Linear) and "." in n})
        raise RecipeError(f"model.lora.target_modules={list(target_modules)}: no module of the LLM has "
                          f"{'that name' if len(target_modules) == 1 else 'those names'}; its linear layers are "
                          f"{', '.join(linear)}") from exc
    # peft froze everything outside the adapter; turn the projector (and the encoder if asked) back on.
    base = peft_model.get_base_model()
    for p in list(base.projector.parameters()) + list(base.pooler.parameters()):
        p.requires_grad_(True)
    if train_encoder:
        for p in base.dna_encoder.parameters():
            p.requires_grad_(True)
    return peft_model


AutoConfig.register(DNALLMConfig.model_type, DNALLMConfig, exist_ok=True)
AutoModelForCausalLM.register(DNALLMConfig, DNALLMForCausalLM, exist_ok=True)
AutoModel.register(DNALLMConfig, DNALLMForCausalLM, exist_ok=True)
