"""GRPO entry point: ``bioreason train grpo --recipe NAME [key=value ...]``.

Per step and prompt: sample G completions in one batched ``generate`` with the KV cache (DNA encoded once per
prompt), score them with the recipe's weighted rewards (``bioreason.rl``), compute group-normalised advantages,
then one policy-gradient update with the clipped surrogate (single update per batch, so the importance ratio is
1; clipping would matter with several updates per batch, which this loop does not do). With ``grpo.beta > 0`` a
KL term (k3) compares against the reference policy: the same model with its LoRA adapter disabled. Sampling is
transformers' ``generate`` (``grpo.sampler: hf``, the default) or, on GPUs with vLLM installed, a vLLM engine
fed with our prompt embeddings (``grpo.sampler: vllm``, ``bioreason.vllm_sampler``).
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass

import torch


@dataclass
class GRPOBatch:
    samples: object
    advantages: torch.Tensor
    units: float
    stats: dict


class GRPOStep:
    def __init__(self, processor, cfg: dict, labels, system: str | None, mode: str = "dna", get_model=None):
        from bioreason.errors import RecipeError

        self.proc, self.cfg, self.labels, self.system, self.mode = processor, cfg, labels, system, mode
        self.get_model, self.get_step = get_model, (lambda: 0)
        # the trainer's mixed precision: sampling runs under it too, so the prompt's KV cache (filled through the
        # autocast-wrapped forward) and the decoded positions have one dtype
        self.autocast = contextlib.nullcontext
        self.vllm = None
        t, p = float(cfg["temperature"]), float(cfg["top_p"])
        if not t > 0 or not 0 < p <= 1:
            raise RecipeError(f"grpo.temperature={t}, grpo.top_p={p}: GRPO samples, so it needs temperature > 0 "
                              "(1.0 is usual) and 0 < top_p <= 1 (1.0 = no nucleus cut)")
        if cfg.get("sampler", "hf") not in ("hf", "vllm"):
            raise RecipeError(f"grpo.sampler={cfg.get('sampler')!r}: choose hf (transformers generate with a "
                              "shared prompt prefill, the default) or vllm (GPU, vLLM installed)")

    def _sample(self, model, prompts):
        G, n, t, p = (int(self.cfg["num_generations"]), int(self.cfg["max_new_tokens"]),
                      float(self.cfg["temperature"]), float(self.cfg["top_p"]))
        if self.cfg.get("sampler", "hf") == "vllm":
            from bioreason.vllm_sampler import VLLMSampler

            if self.vllm is None:
                self.vllm = VLLMSampler(model, self.proc, float(self.cfg.get("vllm_gpu_memory_utilization") or 0.3))
            self.vllm.sync(model, self.get_step())
            return self.vllm.sample(model, prompts, G, n, t, p)
        from bioreason.sampling import sample_groups

        return sample_groups(model, self.proc, prompts, G, n, t, p)

    def prepare(self, examples) -> GRPOBatch:
        from bioreason.rl import compute_rewards, group_advantages

        G = int(self.cfg["num_generations"])
        model = self.get_model()
        was_training = model.training
        model.eval()
        prompts = [e.to_messages(self.system, self.mode, with_answer=False) for e in examples]
        with self.autocast():
            samples = self._sample(model, prompts)
        model.train(was_training)
        columns = {"label": [e.meta["label"] for e in examples for _ in range(G)],
                   "label_set": [self.labels] * (len(examples) * G) if self.labels else None}
        total, per, names = compute_rewards(samples.texts, dict(self.cfg["rewards"]), columns)
        adv = group_advantages(total, G)
        stats = {"reward": float(total.nanmean()), "reward_std": float(total.std())}
        for j, n in enumerate(names):
            stats[f"reward_{n}"] = float(per[:, j].nanmean())
            stats[f"reward_{n}_std"] = float(per[:, j].std())
        units = float(samples.completion_mask.sum()) if self.cfg["loss_type"] == "dapo" else float(len(samples.texts))
        return GRPOBatch(samples, adv, units, stats)

    def loss(self, model, batch: GRPOBatch):
        from bioreason.modeling import unwrap_dna_llm
        from bioreason.rl import grpo_loss, shared_prefix_logprobs

        s, G = batch.samples, int(self.cfg["num_generations"])
        device = next(model.parameters()).device
        base = model.module if hasattr(model, "module") else model
        inner = unwrap_dna_llm(model)
        feats = None
        if s.enc["dna_input_ids"].numel():  # once per prompt, with gradients into the projector
            feats = inner.get_dna_features(s.enc["dna_input_ids"].to(device), s.enc["dna_attention_mask"].to(device))
        # each prompt runs once; its G completions continue from its repeated KV cache
        args = (s.enc["input_ids"].to(device), s.enc["attention_mask"].to(device), s.completion_ids.to(device),
                s.completion_mask.to(device), G)
        logp = shared_prefix_logprobs(model, *args, dna_features=feats, prefix_len=s.prefix_len)
        ref = None
        beta = float(self.cfg.get("beta") or 0.0)
        if beta:
            with torch.no_grad(), base.disable_adapter():
                ref = shared_prefix_logprobs(model, *args, dna_features=None if feats is None else feats.detach(),
                                             prefix_len=s.prefix_len)
        mask = s.completion_mask.to(device)
        loss, st = grpo_loss(logp, logp.detach(), batch.advantages.to(device), mask, ref_logp=ref, beta=beta,
                             epsilon=float(self.cfg["epsilon"]), loss_type=self.cfg["loss_type"], global_tokens=1.0)
        if self.cfg["loss_type"] == "grpo":
            loss = loss * len(s.texts)  # back to a sum over sequences; the trainer divides by all sequences
        return loss, {**batch.stats, **st}


def stage_recipe(recipe: dict) -> dict:
    """The recipe as the GRPO stage sees it: ``grpo.init/output_dir`` and ``grpo.max_steps/lr/batch_size/
    grad_accum/warmup_steps/save_every`` override the model and train sections."""
    import copy

    r = copy.deepcopy(recipe)
    g = r["grpo"]
    if g.get("init"):
        r["model"]["init"] = g["init"]
    r["train"]["output_dir"] = g.get("output_dir") or str(r["train"]["output_dir"]).rstrip("/") + "-grpo"
    for key in ("max_steps", "lr", "batch_size", "grad_accum", "warmup_steps", "save_every"):
        if g.get(key) is not None:
            r["train"][key] = g[key]
    return r


def prompt_records(examples: list, which: str) -> list:
    """The records GRPO prompts with (``grpo.prompts``): ``all``, or ``ambiguous``: those whose question (KEGG's
    pathway question, ``meta['group']``) has more than one answer among these records, so the sequences decide; a
    group of samples there is likelier to disagree and give GRPO an advantage to learn from. Counted on the training
    records alone, so a holdout's answers do not choose them."""
    from bioreason.errors import RecipeError

    if which == "all":
        return examples
    if which != "ambiguous":
        raise RecipeError(f"grpo.prompts={which!r}: choose all or ambiguous")
    from bioreason.kegg_data.tasks import question_answers, question_group

    answers = question_answers(examples)
    chosen = [e for e in examples if len(answers[question_group(e)]) > 1]
    if not chosen:
        raise RecipeError("grpo.prompts=ambiguous: no training question has more than one answer in these records "
                          "(it needs a task with question groups, such as kegg); use grpo.prompts=all")
    return chosen


def build_trainer(recipe: dict):
    """(trainer, step): the GRPO stage a recipe describes (``stage_recipe``, ``grpo.prompts``), its step wired to
    the trainer's model, processor, step count and mixed precision (``run``, and ``benchmarks/profile_recipe.py``)."""
    from bioreason.kegg_data.build import build_examples
    from bioreason.kegg_data.tasks import SYSTEM_PROMPT
    from bioreason.trainer import Trainer

    recipe = stage_recipe(recipe)
    skipped: list = []
    examples, labels = build_examples(recipe["data"], dna_length=recipe["data"].get("window") or 1024,
                                      skipped=skipped)
    examples = prompt_records(examples, recipe["grpo"].get("prompts") or "all")
    step = GRPOStep(None, recipe["grpo"], labels, SYSTEM_PROMPT, recipe["data"].get("mode", "dna"))
    trainer = Trainer(recipe, step, examples, "grpo")
    step.proc = trainer.proc
    trainer.label_set, trainer.skipped = labels, skipped
    step.get_model = lambda: trainer.unwrapped
    step.get_step = lambda: trainer.step
    step.autocast = trainer.acc.autocast
    return trainer, step


def run(recipe: dict, progress: bool = True):
    trainer, step = build_trainer(recipe)
    try:
        history = trainer.run(progress=progress)
    finally:
        if step.vllm is not None:
            step.vllm.close()  # its temporary copy of the LLM
    folder = trainer.save_final()
    return trainer, history, folder


def main(argv=None) -> int:
    """``python -m bioreason.training.grpo`` (what torchrun/accelerate launch): the same as ``bioreason train grpo``."""
    from bioreason.app.cli import main as cli

    return cli(["train", "grpo", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
