"""Saving and loading model folders: a full model, or a small adapter (LoRA + projector) on top of a base model.

``load_model(path)`` loads any folder (or the embedded default, found and prepared by ``bioreason.hub``).

``save_trained`` writes either format atomically (temporary folder, then rename). An adapter folder holds
``adapter_config.json`` + ``adapter_model.safetensors`` (peft LoRA), ``projector.safetensors`` (projector,
pooler, and the encoder if it was trained), the processor files and ``bioreason_adapter.json`` naming the base
(``default`` or a folder). ``load_adapter_folder`` rebuilds the model: base, then LoRA merged into its weights,
then the projector (the processor is the adapter folder's; the base's is never read). Everything is safetensors;
nothing is unpickled.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from bioreason.atomic import atomic_folder
from bioreason.errors import BioreasonError, CorruptModelError

from bioreason.hub import ADAPTER_FILE, is_adapter_folder, resolve_dtype, resolve_model_dir  # noqa: F401


def _trainable_non_lora(model) -> dict:
    """Projector/pooler tensors, plus the encoder's when it trains (names relative to the DNA-LLM)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    sd = {}
    for prefix, module in (("projector.", base.projector), ("pooler.", base.pooler)):
        sd.update({prefix + k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()})
    if any(p.requires_grad for p in base.dna_encoder.parameters()):
        sd.update({"dna_encoder." + k: v.detach().cpu().contiguous() for k, v in base.dna_encoder.state_dict().items()})
    return sd


def save_trained(model, processor, folder, base: str | None, fmt: str = "adapter", meta: dict | None = None,
                 task: dict | None = None) -> Path:
    from safetensors.torch import save_file

    def write(tmp: Path) -> None:
        is_peft = hasattr(model, "peft_config")
        if fmt == "adapter":
            if not is_peft or base is None:
                raise ValueError("the adapter format needs a LoRA model and a base (default or a folder)")
            model.save_pretrained(tmp)  # adapter_config.json + adapter_model.safetensors
            tidy_adapter(tmp, base)
            save_file(_trainable_non_lora(model), str(tmp / "projector.safetensors"))
            (tmp / ADAPTER_FILE).write_text(json.dumps({"base": base, **(meta or {})}, indent=2))
        else:
            full = model.merge_and_unload() if is_peft else model
            full.save_pretrained(tmp, safe_serialization=True)
            (tmp / "bioreason_trained.json").write_text(json.dumps(meta or {}, indent=2))
        processor.save_pretrained(tmp)
        if task:  # how predict/ask/demo should prompt this model (labels, prompt style, gene, ...)
            (tmp / "bioreason_task.json").write_text(json.dumps(task, indent=2))

    return atomic_folder(folder, write)


def tidy_adapter(folder, base: str) -> None:
    """Drop peft's template model card and the local base path it records (the base is named in
    ``bioreason_adapter.json``; a path from the training machine means nothing on another one)."""
    folder = Path(folder)
    (folder / "README.md").unlink(missing_ok=True)
    cfg_path = folder / "adapter_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["base_model_name_or_path"] = base if base == "default" else Path(str(base)).name
    cfg_path.write_text(json.dumps(cfg, indent=2))


def stack_adapters(first, second, out) -> Path:
    """One adapter folder equal to ``second`` trained on top of ``first`` (``second``'s base is ``first``).

    With ``W' = W + s1 B1 A1 + s2 B2 A2`` (the base, then each LoRA merged in turn), the stacked LoRA of rank
    r1 + r2 is ``A = [A1; A2]``, ``B = [B1 s1/s, B2 s2/s]`` with scale ``s = s2`` (alpha = s * (r1 + r2)): the same
    weights, in one folder whose base is ``first``'s base, so a GRPO stage started from an SFT adapter ships as
    one adapter. The projector (and anything else trained outside LoRA) is ``second``'s. Written atomically.
    """
    import torch
    from safetensors.torch import load_file, save_file

    first, second, out = Path(first), Path(second), Path(out)
    c1, c2 = (json.loads((f / "adapter_config.json").read_text()) for f in (first, second))
    if c1["target_modules"] != c2["target_modules"] or c1.get("use_rslora") or c2.get("use_rslora") or \
            c1.get("rank_pattern") or c2.get("rank_pattern") or c1.get("alpha_pattern") or c2.get("alpha_pattern"):
        raise ValueError("stack_adapters needs two plain LoRA adapters on the same modules")
    s1, s2 = c1["lora_alpha"] / c1["r"], c2["lora_alpha"] / c2["r"]
    w1, w2 = load_file(str(first / "adapter_model.safetensors")), load_file(str(second / "adapter_model.safetensors"))
    if set(w1) != set(w2):
        raise ValueError("the two adapters adapt different layers")
    stacked = {}
    for key in w1:
        if ".lora_A." in key:
            stacked[key] = torch.cat([w1[key], w2[key]], 0).contiguous()
        elif ".lora_B." in key:
            stacked[key] = torch.cat([w1[key] * (s1 / s2), w2[key]], 1).contiguous()
        else:
            raise ValueError(f"cannot stack adapter tensor {key}")
    r = c1["r"] + c2["r"]
    cfg = {**c2, "r": r, "lora_alpha": s2 * r}
    info1 = json.loads((first / ADAPTER_FILE).read_text())
    info2 = json.loads((second / ADAPTER_FILE).read_text())

    def write(tmp: Path) -> None:
        for f in second.iterdir():
            if f.is_file() and f.name not in ("adapter_model.safetensors", "adapter_config.json", ADAPTER_FILE, "README.md"):
                shutil.copy2(f, tmp / f.name)
        save_file(stacked, str(tmp / "adapter_model.safetensors"))
        (tmp / "adapter_config.json").write_text(json.dumps(cfg, indent=2))
        stages = info1.get("stages") or [{k: info1.get(k) for k in ("kind", "steps", "recipe")}]
        stages = stages + [{k: info2.get(k) for k in ("kind", "steps", "recipe")}]
        (tmp / ADAPTER_FILE).write_text(json.dumps({"base": info1.get("base", "default"), "kind": "+".join(
            st["kind"] for st in stages if st.get("kind")), "stages": stages}, indent=2))
        tidy_adapter(tmp, info1.get("base", "default"))

    return atomic_folder(out, write)


def load_adapter_folder(folder, dtype: str = "auto", device: str = "cpu"):
    """The model of an adapter folder: base model + merged LoRA + trained projector (the processor is the folder's
    own, read by ``load_model``; the base's is not read at all)."""
    from peft import PeftModel
    from safetensors.torch import load_file

    folder = Path(folder)
    info = json.loads((folder / ADAPTER_FILE).read_text())
    for name in ("adapter_config.json", "adapter_model.safetensors", "projector.safetensors"):
        if not (folder / name).is_file():
            raise CorruptModelError(f"adapter folder {folder} is incomplete: {name} is missing")
    base = info.get("base", "default")
    model = _load_folder(resolve_model_dir(None if base == "default" else base), "float32", device)
    model = PeftModel.from_pretrained(model, str(folder)).merge_and_unload()
    missing = model.load_state_dict(load_file(str(folder / "projector.safetensors")), strict=False)
    if missing.unexpected_keys:
        raise CorruptModelError(f"{folder}/projector.safetensors has unknown tensors {missing.unexpected_keys[:3]}")
    model = model.to(resolve_dtype(dtype, device)).eval()
    model.config.model_id = folder.name  # outputs name the trained folder, not the base it sits on
    return model


def _load_folder(folder: Path, dtype: str, device: str):
    """The model of a full or adapter folder, with any load failure that is not already ours as a
    ``CorruptModelError`` naming the folder."""
    from safetensors import SafetensorError

    from bioreason.modeling import DNALLMForCausalLM

    torch_dtype = resolve_dtype(dtype, device)  # a bad dtype is the caller's error, not a corrupt folder
    try:
        if is_adapter_folder(folder):
            return load_adapter_folder(folder, dtype=dtype, device=device)
        return DNALLMForCausalLM.from_pretrained(folder, dtype=torch_dtype).to(device).eval()
    except BioreasonError:  # already says what is wrong (a missing file, a base model not prepared)
        raise
    except (OSError, ValueError, RuntimeError, SafetensorError) as exc:  # a cut-off safetensors file, bad JSON
        raise _corrupt(folder, exc) from None


def _corrupt(folder: Path, exc: Exception) -> CorruptModelError:
    return CorruptModelError(f"cannot load the model in {folder}: {type(exc).__name__}: {exc}; a file there may be "
                             "cut off (an interrupted copy or download): copy the folder again, or retrain it")


_TRIM = None  # glibc's malloc_trim, once looked up (False where there is none)


def release_freed_memory() -> bool:
    """Give the memory torch has freed back to the operating system (glibc's ``malloc_trim``); whether it could.

    Loading a model frees its fp32 copies as it merges an adapter, converts or quantises (the shipped model under
    ``--quantize auto``: 314 MB of weights live at the end, resident memory 1.23 GB, 0.79 GB after trimming); glibc
    keeps such memory, fragmented, and a later batch's peak lands on top of it: ``predict``'s score-only peak RSS
    was 1.49 GiB, 1.19 with a trim once the model is loaded (``benchmarks/predict_memory.py``, same speed).
    ``predict --traces`` also trims after each batch (96 variants: 1.36-1.38 GiB in 2 runs vs 1.39-1.51 in 4
    without; 400: 1.52 vs 1.58). A no-op where the C library has no ``malloc_trim`` (macOS, musl)."""
    global _TRIM
    if _TRIM is None:
        try:
            import ctypes

            _TRIM = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _TRIM = False
    return bool(_TRIM and _TRIM(0))


def load_model(path=None, dtype: str = "auto", device: str = "auto", quantize: str = "none"):
    """Load ``(model, processor)`` from a folder (or the embedded default).

    ``dtype``: ``auto`` (float32 on CPU: the shipped models' labels and thresholds were measured in fp32, and CPUs
    without native bf16 run it slower; bfloat16 on GPU), ``bfloat16`` or ``float32``. ``device``: ``auto`` (CUDA
    when available, else CPU) or a torch device string. ``quantize``: ``none``, ``int8``, ``int8-weight``,
    ``bf16``, ``bf16-matmul`` or ``int8-decode``, the CPU inference paths of ``bioreason.quantize`` (a LoRA adapter
    is then merged for good), or ``auto`` (``quantize.resolve_mode`` for scoring: ``bf16-matmul`` on a CPU where it
    pays, else ``none``).
    """
    import torch

    from bioreason.processing import DNALLMProcessor

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    folder = resolve_model_dir(path)
    if quantize == "auto":
        from bioreason.quantize import resolve_mode

        quantize = resolve_mode(quantize, device)
    if quantize != "none":
        from bioreason.quantize import quantize_model

        model, proc = load_model(path, dtype="float32", device=device)
        model = quantize_model(model, quantize)
        release_freed_memory()  # the fp32 weights the conversion replaced
        return model, proc
    model = _load_folder(folder, dtype, device)
    try:
        proc = DNALLMProcessor.from_pretrained(folder)
    except (OSError, ValueError, RuntimeError) as exc:  # a tokenizer file cut off, bad JSON
        raise _corrupt(folder, exc) from None
    if torch.device(device).type == "cpu":  # scoring's and decoding's few-query attention (bioreason.attention)
        from bioreason.attention import use_few_query_attention

        use_few_query_attention(model)
        release_freed_memory()  # the copies made while loading (an adapter merged, dtypes converted)
    return model, proc
