"""Training recipes: YAML files with defaults, ``key=value`` overrides, and a clear error for unknown keys.

A recipe has four sections: ``model`` (what to start from, LoRA, what trains), ``data`` (which task or file),
``train`` (optimiser, steps, batch, checkpoints) and ``grpo`` (sampling and rewards). ``load_recipe(path,
overrides)`` merges the file over ``DEFAULTS`` and the overrides over both; values in overrides are parsed as
YAML (``train.lr=1e-4``, ``grpo.rewards={correctness: 2.0}``). The free-form sections (``data.options``,
``grpo.rewards``, ``model.build``) are replaced whole by a file or by an override that names the section, while a
dotted override inside one (``data.options.gene_description=true``) sets that key and keeps the others. Every
value the trainer reads is then checked (``recipe_values.check_recipe``). Recipes ship under ``training/recipes/``
and can be named without the folder (``--recipe tiny``).
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

from bioreason.errors import RecipeError

DEFAULTS: dict = {
    "model": {
        "init": "default",  # default | tiny | build | a model folder
        "build": {},  # with init=build: llm, encoder, encoder_config, encoder_weights, pooling, pool_stride
        "lora": {"r": 16, "alpha": 32, "dropout": 0.05, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]},
        "train_encoder": False,
        "gradient_checkpointing": False,
    },
    "data": {
        "task": "toy",  # toy | kegg | variant_effect_coding | variant_effect_non_snv | user | vcf | brca1
        "source": None, "split": "train", "fasta": None, "limit": None, "n": 64, "mode": "dna",
        "max_length": 1024, "label_field": "LABEL", "labels_tsv": None, "window": 1024, "options": {},
        "empty_think_fraction": 0.25, "answer_weight": 1.0, "balance": None,
    },
    "train": {
        "seed": 0, "output_dir": "runs/default", "lr": 2e-4, "batch_size": 2, "grad_accum": 1, "max_steps": 100,
        "scheduler": "cosine", "warmup_steps": 0, "weight_decay": 0.0, "max_grad_norm": 1.0,
        "mixed_precision": "no", "log_every": 1, "save_every": 0, "save_total_limit": 2, "resume": None,
        "save_format": "auto", "trackers": "auto", "threads": None,
        # CPU speed-ups that change a step's rounding, not its maths: attention by query blocks (blocks; sdpa =
        # torch's flash kernel) and a step's examples paired by length into micro-batches (SFT)
        "cpu_attention": "blocks", "pair_by_length": True,
        "overwrite": False,  # True (the CLI's --force): replace a previous run in output_dir instead of refusing
    },
    "grpo": {
        "num_generations": 4, "max_new_tokens": 64, "temperature": 1.0, "top_p": 1.0, "beta": 0.0,
        "epsilon": 0.2, "loss_type": "dapo", "sampler": "hf", "vllm_gpu_memory_utilization": 0.3,
        # which training records GRPO prompts with: all, or (kegg) "ambiguous": those whose question has more than
        # one answer among the training records, where only the sequences decide and samples disagree most
        "prompts": "all",
        # the GRPO stage's own settings; None = the model/train sections' value
        "init": None, "output_dir": None, "max_steps": None, "lr": None, "batch_size": None, "grad_accum": None,
        "warmup_steps": None, "save_every": None,
        "rewards": {"correctness": 2.0, "format": 0.5, "conciseness": 0.5},
    },
}


def _recipe_folder():
    from importlib import resources

    try:
        return resources.files("bioreason.training") / "recipes"
    except ModuleNotFoundError:
        return None


def shipped_recipes() -> list[str]:
    """The recipe names installed with the package (``training/recipes/*.yaml`` but accelerate's launch configs)."""
    folder = _recipe_folder()
    if folder is None or not folder.is_dir():
        return []
    return sorted(f.name[:-5] for f in folder.iterdir()
                  if f.name.endswith(".yaml") and not f.name.startswith("accelerate_"))


def resolve_recipe_path(name: str) -> Path:
    path = Path(name)
    if path.is_file():
        return path
    folder = _recipe_folder()
    if folder is not None and (folder / f"{name}.yaml").is_file():
        return Path(str(folder / f"{name}.yaml"))
    raise RecipeError(f"recipe {name!r} not found: give a YAML path or one of the shipped recipes "
                      f"({', '.join(shipped_recipes())})")


_FLOAT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)$")


def _coerce(value):
    """YAML 1.1 reads ``1e-4`` as a string; numbers in recipes are numbers."""
    if isinstance(value, dict):
        return {k: _coerce(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_coerce(v) for v in value]
    if isinstance(value, str) and _FLOAT.match(value.strip()):
        return float(value)
    return value


FREE_FORM = ("rewards", "options", "build")  # sections whose keys the task, the rewards or the builder check


def _merge(base: dict, extra: dict, where: str, defaults: dict | None = None) -> dict:
    out = copy.deepcopy(base)
    defaults = DEFAULTS if defaults is None else defaults
    for key, val in (extra or {}).items():
        if key not in out:
            raise RecipeError(f"unknown recipe key '{where}{key}'; valid keys here: {', '.join(sorted(out))}")
        default = defaults.get(key) if isinstance(defaults, dict) else None
        if isinstance(default, dict) and not isinstance(val, dict) and (val is not None or not where) and (
                key != "lora"):  # recipe_values says what model.lora takes (a mapping, or null: full fine-tuning)
            example = f"{where}{key}.{next(iter(default))}=..." if default else f"{where}{key}.NAME=..."
            raise RecipeError(f"recipe key '{where}{key}' is a section of keys, not {val!r}; give its keys under it "
                              f"(YAML lines indented below '{key}:') or one by one ({example})")
        if out[key] is None and isinstance(val, dict) and isinstance(default, dict) and key not in FREE_FORM:
            out[key] = copy.deepcopy(default)  # a section set to null (tiny's lora) starts again from the defaults
        if isinstance(out[key], dict) and isinstance(val, dict) and key not in FREE_FORM:
            out[key] = _merge(out[key], val, f"{where}{key}.", default if isinstance(default, dict) else {})
        else:
            out[key] = val
    return out


def _nest(path: list[str], value) -> dict:
    """``{path[0]: {path[1]: ... value}}``."""
    for key in reversed(path):
        value = {key: value}
    return value


def _set_in(section: dict, path: list[str], value) -> dict:
    """``section`` with the key at ``path`` (nested dicts made as needed) set to ``value``."""
    cur = section
    for key in path[:-1]:
        cur[key] = cur[key] if isinstance(cur.get(key), dict) else {}
        cur = cur[key]
    cur[path[-1]] = value
    return section


def apply_override(recipe: dict, item: str) -> dict:
    import yaml

    if "=" not in item:
        raise RecipeError(f"override {item!r} is not key=value (e.g. train.lr=1e-4)")
    key, raw = item.split("=", 1)
    parts = key.strip().split(".")
    try:
        value = _coerce(yaml.safe_load(raw))
    except yaml.YAMLError as exc:
        raise RecipeError(f"override {item!r}: the value is not valid YAML ({exc})") from exc
    for j, part in enumerate(parts[:-1]):
        if part in FREE_FORM:  # a key inside a free-form section: set it, keep the section's other keys (the
            section = recipe  # override used to replace the whole section, dropping e.g. kegg's holdout)
            for q in parts[:j + 1]:
                section = section.get(q) if isinstance(section, dict) else None
            if isinstance(section, dict):
                value, parts = _set_in(copy.deepcopy(section), parts[j + 1:], value), parts[:j + 1]
            break
    return _merge(recipe, _nest(parts, value), "")


def load_recipe(name: str | None, overrides: list[str] | tuple[str, ...] = ()) -> dict:
    import yaml

    recipe = copy.deepcopy(DEFAULTS)
    if name:
        path = resolve_recipe_path(name)
        try:
            data = _coerce(yaml.safe_load(path.read_text()) or {})
        except yaml.YAMLError as exc:
            tabs = " (YAML indents with spaces, not tabs)" if "'\\t'" in str(exc) else ""
            raise RecipeError(f"{path}: not valid YAML{tabs}: {exc}") from exc
        if not isinstance(data, dict):
            raise RecipeError(f"{path}: a recipe is a YAML mapping of sections (model:, data:, train:, grpo:), "
                              f"not a {type(data).__name__}; see training/recipes/tiny.yaml")
        data.pop("description", None)
        try:
            recipe = _merge(recipe, data, "")
        except RecipeError as exc:  # say which file
            raise RecipeError(f"{path}: {exc}") from None
        recipe["_path"] = str(path)
    for item in overrides:
        recipe = apply_override(recipe, item)
    from bioreason.recipe_values import check_recipe

    return check_recipe(recipe)
