"""What each recipe value may be, checked once when a recipe is loaded, before any model or data is touched.

``recipes.load_recipe`` refuses unknown keys; this module refuses known keys with values that would otherwise fail
deep inside torch, accelerate, peft or the data loader with a traceback (``train.lr=-1``: torch's "Invalid learning
rate"; ``train.max_steps=abc``: ``int('abc')``; ``train.batch_size=0``: a KeyError in the collator;
``train.mixed_precision=fp8``: a storage error while saving) or, worse, run and do nothing (``train.max_steps=-3``
trained 0 steps and saved the untouched model). :func:`check_recipe` raises one ``RecipeError`` that names the key,
the value given and what it accepts. Only what the trainer reads is checked; ``None`` is allowed where the
defaults use it to mean "not set".
"""

from __future__ import annotations

import math

from bioreason.errors import RecipeError

SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
              "inverse_sqrt")  # the others need arguments recipes cannot give


def whole(lo: int, optional: bool = False):
    def check(v):
        if v is None and optional:
            return None
        if isinstance(v, bool) or not isinstance(v, (int, float)) or int(v) != v or v < lo:
            return f"a whole number >= {lo}" + (" (or null)" if optional else "")
        return None
    return check


def number(lo: float, hi: float | None = None, lo_open: bool = False, optional: bool = False):
    def check(v):
        if v is None and optional:
            return None
        bad = isinstance(v, bool) or not isinstance(v, (int, float)) or v < lo or (lo_open and v == lo) or (
            hi is not None and v > hi)
        if bad:
            rng = f"{'>' if lo_open else '>='} {lo}" + (f" and <= {hi}" if hi is not None else "")
            return f"a number {rng}" + (" (or null)" if optional else "")
        return None
    return check


def one_of(*choices):
    def check(v):
        ok = any(v == c and type(v) is type(c) for c in choices)  # True is not 1 here
        return None if ok else "one of " + ", ".join(map(str, choices))
    return check


CHECKS = {
    "train.seed": whole(0), "train.lr": number(0, lo_open=True), "train.batch_size": whole(1),
    "train.grad_accum": whole(1), "train.max_steps": whole(1), "train.scheduler": one_of(*SCHEDULERS),
    "train.warmup_steps": whole(0), "train.weight_decay": number(0), "train.max_grad_norm": number(0, optional=True),
    "train.mixed_precision": one_of("no", "bf16", "fp16"), "train.log_every": whole(1),
    "train.save_every": whole(0), "train.save_total_limit": whole(0, optional=True),
    "train.threads": whole(1, optional=True), "train.overwrite": one_of(True, False),
    "train.cpu_attention": one_of("blocks", "sdpa"), "train.pair_by_length": one_of(True, False),
    "data.max_length": whole(8), "data.n": whole(1), "data.limit": whole(1, optional=True), "data.window": whole(1),
    "data.empty_think_fraction": number(0, 1), "data.answer_weight": number(0, lo_open=True),
    "data.mode": one_of("dna", "text", "none"),
    "model.lora.r": whole(1), "model.lora.alpha": number(0, lo_open=True), "model.lora.dropout": number(0, 0.99),
    "grpo.num_generations": whole(2), "grpo.max_new_tokens": whole(1), "grpo.temperature": number(0, lo_open=True),
    "grpo.top_p": number(0, 1, lo_open=True), "grpo.beta": number(0), "grpo.epsilon": number(0, lo_open=True),
    "grpo.loss_type": one_of("dapo", "grpo"), "grpo.sampler": one_of("hf", "vllm"),
    "grpo.prompts": one_of("all", "ambiguous"), "grpo.max_steps": whole(1, optional=True),
    "grpo.lr": number(0, lo_open=True, optional=True), "grpo.batch_size": whole(1, optional=True),
    "grpo.grad_accum": whole(1, optional=True), "grpo.warmup_steps": whole(0, optional=True),
    "grpo.save_every": whole(0, optional=True),
}


HINTS = {"grpo.temperature": " (GRPO samples its completions; 1.0 is usual)", "grpo.top_p": " (1.0 = no nucleus cut)",
         "grpo.num_generations": " (advantages compare the samples of one prompt)"}


def _get(recipe: dict, dotted: str):
    node = recipe
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return KeyError
        node = node[part]
    return node


def check_value(name: str, value, check, after: str = "") -> None:
    """A ``RecipeError`` naming ``name`` and ``value`` unless ``check`` (``whole``/``number``/``one_of``) accepts it;
    ``after``: more of the message (why, how to fix)."""
    wanted = check(value)
    if wanted:
        raise RecipeError(f"{name}={value!r}: it takes {wanted}{after}")


def _check_rewards(rewards) -> None:
    """grpo.rewards: registered reward names with finite weights, at least one not zero (at load, not at the GRPO
    step that first computes them)."""
    from bioreason.rl import REWARDS

    if not isinstance(rewards, dict) or not rewards:
        raise RecipeError(f"grpo.rewards={rewards!r}: give reward names with weights, e.g. {{correctness: 2.0, "
                          f"format: 0.5}}; registered rewards: {', '.join(sorted(REWARDS))}")
    for name, weight in rewards.items():
        if name not in REWARDS:
            raise RecipeError(f"grpo.rewards: unknown reward {name!r}; registered rewards: "
                              f"{', '.join(sorted(REWARDS))}")
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
            raise RecipeError(f"grpo.rewards.{name}={weight!r}: a reward's weight is a finite number (e.g. 1.0)")
    if not any(float(w) for w in rewards.values()):
        raise RecipeError(f"grpo.rewards={rewards!r}: every weight is 0, so every advantage would be 0; give one "
                          "reward a weight")


BALANCE_BY = ("label", "question", "question_label")


def balance_setting(value) -> tuple[str, float] | None:
    """``data.balance`` as (group key, power), or None for no balancing. ``label`` is ``{by: label, power: 1}``: each
    label seen about equally often. ``{by: label|question|question_label, power: p}`` repeats each example
    ``round((largest group / its group) ** p)`` times per epoch, its group being its label, its question text, or
    the pair; ``p`` in (0, 1], below 1 a tempered balance (0.5: a group 16x rarer is seen 4x as often)."""
    if value is None:
        return None
    if value == "label":
        return "label", 1.0
    if isinstance(value, dict) and set(value) <= {"by", "power"} and value.get("by") in BALANCE_BY:
        power = value.get("power", 1.0)
        if isinstance(power, (int, float)) and not isinstance(power, bool) and 0 < power <= 1:
            return value["by"], float(power)
    raise RecipeError(f"data.balance={value!r}: use label (each label seen about equally often), "
                      f"{{by: {'|'.join(BALANCE_BY)}, power: 0.5}} (a tempered balance; power in (0, 1]) or null")


def check_recipe(recipe: dict) -> dict:
    """``recipe`` unchanged if every checked value is allowed, else a ``RecipeError`` naming the first bad one."""
    lora = recipe.get("model", {}).get("lora")
    if lora is not None and not isinstance(lora, dict):
        raise RecipeError(f"model.lora={lora!r}: give a mapping ({{r: 16, alpha: 32, ...}}) or null for full "
                          "fine-tuning")
    for key, check in CHECKS.items():
        value = _get(recipe, key)
        if value is KeyError:
            continue
        check_value(key, value, check, f"{HINTS.get(key, '')}; set it in the recipe or override it ({key}=...)")
    _check_rewards(recipe.get("grpo", {}).get("rewards", {}))
    balance_setting(recipe.get("data", {}).get("balance"))
    targets = (lora or {}).get("target_modules")
    if lora is not None and (not isinstance(targets, list) or not targets
                             or not all(isinstance(t, str) and t for t in targets)):
        raise RecipeError(f"model.lora.target_modules={targets!r}: give a list of module names, e.g. "
                          "[q_proj, k_proj, v_proj, o_proj]")
    return recipe


__all__ = ["BALANCE_BY", "CHECKS", "SCHEDULERS", "balance_setting", "check_recipe", "check_value", "number", "one_of",
           "whole"]
