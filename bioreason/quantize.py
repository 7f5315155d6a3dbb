"""Quantised and reduced-precision CPU inference for the LLM's linear layers (``--quantize``), through torchao
(PyTorch's maintained quantisation library) or torch's own kernels: no hand-written kernels.

``quantize_model(model, mode)`` merges a LoRA adapter into its base weights for good (``merge_and_unload``: the
model is for inference only from then on), then converts every ``nn.Linear`` of the LLM's decoder layers: ``int8`` =
torchao's int8 dynamic-activation (per token) + int8 weight (per output channel) scheme, whose matmuls run in int8;
``int8-weight`` = int8 weights, fp32 activations (scores move least, but torch's int8 kernel is slow on fp32
inputs). ``bf16`` casts the LLM to bfloat16 instead (faster only on CPUs with native bf16 matmuls). ``bf16-matmul``
runs only the decoder linears' products in bfloat16 (weights kept in bf16, inputs rounded for the product, outputs
back in fp32; ``bf16_products``): on the shipped BRCA1 model it keeps the validation AUROC within 0.001 and every
label of the 24-variant example, so ``auto``, the CLI's default, picks it on CPUs where bf16 products measure
faster for work that only scores, and for generated text with models whose task file allows it (``resolve_mode``).
The embeddings, the norms, the tied output head, the DNA encoder and the projector stay fp32 in every mode but
``bf16``. ``int8-decode`` changes nothing that scores: it gives every decoder linear and the output head an int8
copy of its weight (per output channel, the scale in bfloat16) used only by decode steps, which run one new token
per row and are bound by reading the weights (a quarter of fp32's bytes, through torch's own
``_weight_int8pack_mm`` kernel on bfloat16 activations); prefills, and with them every label, probability and
AUROC, keep the fp32 weights, at the cost of the copies' memory (about 134 MB for the embedded default). Decode
steps are marked by ``bioreason.int8_decode.decoding_steps`` (the slot decoder's steps, ``generate`` in
``inference``). What each mode changes on the shipped model (speed, labels of the 24-variant
example, validation AUROC, traces) is measured by ``benchmarks/predict.py`` and ``bioreason eval --quantize`` and
stated in the README.
"""

from __future__ import annotations

import contextlib
import logging

MODES = ("auto", "none", "int8", "int8-weight", "bf16", "bf16-matmul", "int8-decode")


NOISY_LOGGERS = ("torchao", "torch.utils._pytree")


def quiet_torchao_logs() -> None:
    """Silence, below errors, what importing torchao logs on a CPU machine: a warning per CUDA extension it cannot
    load, and torch's notes on its enum registrations. transformers imports torchao on every model load once it is
    installed, so the CLI and the benchmarks call this at start."""
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


@contextlib.contextmanager
def _quiet_import():
    """``quiet_torchao_logs`` for the duration only (library callers keep their own logging settings)."""
    levels = [logging.getLogger(n).level for n in NOISY_LOGGERS]
    quiet_torchao_logs()
    try:
        yield
    finally:
        for n, lvl in zip(NOISY_LOGGERS, levels):
            logging.getLogger(n).setLevel(lvl)


def merge_adapter_for_good(model):
    """The model with any peft LoRA adapter merged into its weights and the peft wrapper removed."""
    base = model.module if hasattr(model, "module") else model
    if hasattr(base, "merge_and_unload"):
        return base.merge_and_unload()
    return model


GENERATION_KEY = "auto_quantize_generation"  # in a model's bioreason_task.json: what auto may use for its text


def generation_mode(folder, prompt_mode: str | None = None) -> str:
    """The mode ``auto`` may use when this model generates text on a CPU from prompts of ``prompt_mode``: its task
    file's ``auto_quantize_generation``, ``{mode: [prompt modes]}``, written only where that mode's traces were
    measured against fp32's on those prompts (the shipped BRCA1 model: ``{"bf16-matmul": ["annotated"]}``, README;
    its traces after sequence-only prompts answer near a coin flip and flip with any rounding), else ``none``."""
    from pathlib import Path

    from bioreason.errors import CorruptModelError
    from bioreason.predict import TASK_FILE, PredictConfig

    if folder is None:
        return "none"
    allowed = PredictConfig.for_model(folder).auto_quantize_generation or {}  # the task file's one reader
    if not isinstance(allowed, dict) or not set(allowed) <= {"bf16-matmul"} or \
            not all(isinstance(v, list) for v in allowed.values()):
        raise CorruptModelError(f"{Path(folder) / TASK_FILE}: {GENERATION_KEY} must map 'bf16-matmul' to the prompt "
                                f"modes its traces were measured on, e.g. {{\"bf16-matmul\": [\"annotated\"]}}, "
                                f"not {allowed!r}")
    return next((m for m, modes in allowed.items() if prompt_mode in modes), "none")


def resolve_mode(mode: str, device, generates: bool = False, folder=None, prompt_mode: str | None = None) -> str:
    """``auto`` (the CLI's default) -> ``bf16-matmul`` on a CPU where bfloat16 products pay
    (``cpu_math.bf16_products_pay``) for work that only scores (``generates`` False: ``predict`` and ``eval``
    without ``--traces``), and for work that generates text (traces, ``ask``, the demo) only with a model whose
    task file (in ``folder``) allows it for the prompts used (``generation_mode``); else ``none``. On the shipped
    BRCA1 model it keeps scores within the issue's bar (validation AUROC +0.002, every label of the 24-variant
    example) and, on annotated prompts, all but 3 of 398 validation traces (README); it changed 28 of 79 traces of
    the kegg-v1 of 2026-11-27, 2 answers for the worse, so a model without the key generates in fp32. Any other
    mode as it is."""
    if mode != "auto":
        return mode
    if not str(device).startswith("cpu") or (generates and generation_mode(folder, prompt_mode) == "none"):
        return "none"
    from bioreason import cpu_math

    return "bf16-matmul" if cpu_math.bf16_products_pay() else "none"


def resolve_for_model(mode: str, folder, generates: bool, prompt_mode: str | None = None) -> str:
    """``resolve_mode`` on this machine's device (CUDA when there is one) for the model in ``folder`` (None: the
    base model, which has no task file) and prompts of ``prompt_mode``."""
    import torch

    return resolve_mode(mode, "cuda" if torch.cuda.is_available() else "cpu", generates, folder, prompt_mode)


def quantize_model(model, mode: str = "int8"):
    """The model for CPU inference in ``mode`` (see the module docstring); ``none`` returns it unchanged."""
    import torch

    from bioreason.errors import BioreasonError, MissingDependencyError
    from bioreason.modeling import unwrap_dna_llm

    if mode not in MODES:
        raise BioreasonError(f"--quantize must be one of {', '.join(MODES)}, not {mode!r}")
    mode = resolve_mode(mode, next(model.parameters()).device)
    if mode == "none":
        return model
    if next(model.parameters()).device.type != "cpu":
        raise BioreasonError(f"--quantize {mode} is a CPU inference path; on a GPU the model already runs in bf16 "
                             "(leave --quantize at none)")
    model = merge_adapter_for_good(model)
    lm = unwrap_dna_llm(model).language_model
    if mode == "bf16":
        lm.to(torch.bfloat16)
    elif mode == "bf16-matmul":
        from bioreason.bf16_products import add_bf16_products

        add_bf16_products(lm.get_decoder())
    elif mode == "int8-decode":
        from bioreason.int8_decode import add_int8_decode_copies

        if not hasattr(torch.ops.aten, "_weight_int8pack_mm"):
            raise BioreasonError(f"--quantize int8-decode needs torch's _weight_int8pack_mm (torch >= 2.4; this is "
                                 f"{torch.__version__}); leave --quantize at none")
        add_int8_decode_copies(lm)
    else:
        try:
            with _quiet_import():
                from torchao.quantization import (
                    Int8DynamicActivationInt8WeightConfig,
                    Int8WeightOnlyConfig,
                    quantize_,
                )
        except ImportError:
            raise MissingDependencyError(f"--quantize {mode} needs torchao: `pip install bioreason[quantize]` "
                                         "(or `pip install torchao`)") from None
        config = Int8DynamicActivationInt8WeightConfig() if mode == "int8" else Int8WeightOnlyConfig()
        with _quiet_import():
            quantize_(lm.get_decoder(), config)
    model._bioreason_quantized = mode
    return model.eval()


__all__ = ["GENERATION_KEY", "MODES", "generation_mode", "merge_adapter_for_good", "quantize_model",
           "quiet_torchao_logs", "resolve_for_model", "resolve_mode"]
