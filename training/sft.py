"""Supervised fine-tuning entry point: ``bioreason train sft --recipe NAME [key=value ...]``.

Thin: the recipe picks the model and data, the library does the rest. Loss is the summed cross-entropy of the
assistant's answer tokens (logits computed at the answer positions only, ``takes_position_mask``), normalised by the
number of answer tokens over all processes and micro-batches; ``data.answer_weight`` > 1 weights the tokens of the
final answer label that much more (and counts them that many times in the normaliser). Multi-process: ``accelerate
launch [--config_file training/recipes/accelerate_*.yaml] -m bioreason.training.sft --recipe NAME``.
"""

from __future__ import annotations

import functools
import sys
import zlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class SFTBatch:
    inputs: dict
    units: float
    weights: torch.Tensor | None = None  # (B, T) per-token loss weights, None = all 1


class SFTStep:
    def __init__(self, processor, system: str | None, mode: str = "dna", max_length: int | None = None,
                 empty_think_fraction: float = 0.0, answer_weight: float = 1.0):
        self.proc, self.system, self.mode, self.max_length = processor, system, mode, max_length
        self.empty_think_fraction = float(empty_think_fraction or 0.0)
        self.answer_weight = float(answer_weight or 1.0)

    def _answer_weights(self, examples, labels: torch.Tensor) -> torch.Tensor:
        """Weight ``answer_weight`` on the tokens of each example's final answer (the ones just before its
        end-of-turn token), 1 on the other answer tokens: the decision is a few tokens among a hundred of trace."""
        tok = self.proc.tokenizer
        w = (labels != -100).float()
        for i, e in enumerate(examples):
            k = len(tok(f"Answer: {e.answer}", add_special_tokens=False)["input_ids"]) - len(
                tok("Answer:", add_special_tokens=False)["input_ids"])
            last = int((labels[i] != -100).nonzero().max())  # the end-of-turn token
            w[i, max(0, last - k):last] = self.answer_weight
        return w

    def _with_reasoning(self, example) -> bool:
        """A fixed share of examples (chosen by a hash of their content, so reruns agree) has an empty think."""
        if not self.empty_think_fraction:
            return True
        key = zlib.crc32((example.question + "|".join(s[:64] for s in example.dna)).encode())
        return (key % 10_000) / 10_000 >= self.empty_think_fraction

    def length(self, example) -> int:
        """The example's tokens as ``prepare`` lays it out (the trainer pairs examples of like length)."""
        conv = example.to_messages(self.system, self.mode, reasoning=self._with_reasoning(example))
        return int(self.proc([conv], max_length=self.max_length, truncation="error")["input_ids"].shape[1])

    def prepare(self, examples) -> SFTBatch:
        convs = [e.to_messages(self.system, self.mode, reasoning=self._with_reasoning(e)) for e in examples]
        inputs = self.proc(convs, max_length=self.max_length, truncation="error")
        if self.answer_weight == 1.0:
            return SFTBatch(inputs, int((inputs["labels"][:, 1:] != -100).sum()))
        w = self._answer_weights(examples, inputs["labels"])
        return SFTBatch(inputs, float(w[:, 1:].sum()), w)

    def loss(self, model, batch: SFTBatch):
        x = batch.inputs.to(next(model.parameters()).device)
        labels = x["labels"]
        scored = labels[:, 1:] != -100  # (B, T-1): position t predicts token t + 1
        inputs = dict(input_ids=x["input_ids"], attention_mask=x["attention_mask"], dna_input_ids=x["dna_input_ids"],
                      dna_attention_mask=x["dna_attention_mask"])
        if takes_position_mask(model):  # logits at the answer positions only: (N, V)
            keep = torch.zeros_like(labels, dtype=torch.bool)
            keep[:, :-1] = scored
            logits = model(**inputs, logits_to_keep=keep).logits.float()
            targets = labels[:, 1:][scored]
            weights = None if batch.weights is None else batch.weights[:, 1:].to(logits.device)[scored]
        else:  # an LLM whose forward takes only a count: from the earliest answer position in the batch on
            first = int((labels != -100).float().argmax(1).min())
            keep = labels.shape[1] - first + 1
            logits = model(**inputs, logits_to_keep=keep).logits[:, :-1].float()  # (B, keep-1, V)
            logits, targets = logits.reshape(-1, logits.shape[-1]), labels[:, -(keep - 1):].reshape(-1)
            weights = None if batch.weights is None else batch.weights[:, -(keep - 1):].to(logits.device).reshape(-1)
        if weights is None:
            return F.cross_entropy(logits, targets, ignore_index=-100, reduction="sum"), {}
        per_token = F.cross_entropy(logits, targets, ignore_index=-100, reduction="none")
        return (per_token * weights).sum(), {}


def takes_position_mask(model) -> bool:
    """Whether the model's LLM computes logits only where a (B, T) boolean ``logits_to_keep`` is True (transformers'
    ``slice_logits_to_keep``, which the LLM's own module must use): half the output-head and loss work of KEGG's SFT
    batches, whose answers start at different positions in right-padded rows."""
    from bioreason.modeling import unwrap_dna_llm

    return _uses_position_mask(type(unwrap_dna_llm(model).language_model))


@functools.lru_cache(maxsize=None)
def _uses_position_mask(lm_class) -> bool:
    import inspect

    helper = getattr(sys.modules.get(lm_class.__module__), "slice_logits_to_keep", None)
    return helper is not None and "boolean" in (inspect.getdoc(helper) or "")


def build_trainer(recipe: dict):
    """The SFT trainer a recipe describes, its step wired to the trainer's processor (``run``, and
    ``benchmarks/profile_recipe.py``, which profiles its steps)."""
    from bioreason.kegg_data.build import build_examples
    from bioreason.kegg_data.tasks import SYSTEM_PROMPT
    from bioreason.trainer import Trainer

    skipped: list = []
    examples, labels = build_examples(recipe["data"], dna_length=recipe["data"].get("window") or 1024,
                                      skipped=skipped)
    d = recipe["data"]
    step = SFTStep(None, SYSTEM_PROMPT, d.get("mode", "dna"), d.get("max_length"), d.get("empty_think_fraction"),
                   d.get("answer_weight"))
    trainer = Trainer(recipe, step, examples, "sft")
    step.proc = trainer.proc
    trainer.label_set, trainer.skipped = labels, skipped
    return trainer


def run(recipe: dict, progress: bool = True):
    trainer = build_trainer(recipe)
    history = trainer.run(progress=progress)
    folder = trainer.save_final()
    return trainer, history, folder


def main(argv=None) -> int:
    """``python -m bioreason.training.sft`` (what torchrun/accelerate launch): the same as ``bioreason train sft``."""
    from bioreason.app.cli import main as cli

    return cli(["train", "sft", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
