"""A recipe's training step with the trainer's CPU speed-ups off and on, alternating in one process on the same data.

The host's speed drifts by up to 1.5x between days and by 10-20% within an hour, so a step-time figure from another
run says little; this builds the trainer ``bioreason train sft|grpo --recipe NAME`` builds and times its work under
each arm in turn, each round on the same examples. SFT (``--stage sft``): the whole step, the step counter set back
each round (the weights move on, which does not change the work); arms ``base`` (torch's flash-kernel sdpa,
micro-batches as drawn: ``train.cpu_attention=sdpa train.pair_by_length=false``), ``blocks`` (causal attention by
query blocks, ``bioreason.attention.grouped_attention``), ``sorted`` (the step's examples paired by length,
``Trainer.micro_batches``), ``both`` (the defaults). GRPO (``--stage grpo``, needs the SFT stage's folder,
``grpo.init``): each round samples one step's completions once (timed apart: attention there is inference, the same
in every arm), then times the loss pass, forward and backward, on them under ``base`` (sdpa) and ``blocks``. Prints
each arm's median seconds and its ratio to ``base`` (each SFT round prints its loss and padding share; each GRPO
round the relative difference of the arms' gradient norms). Usage: ``python benchmarks/recipe_ab.py
[--stage sft|grpo] [--recipe kegg] [--rounds 3] [--start 100] [key=value ...]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time

ARMS = {"sft": ("base", "blocks", "sorted", "both"), "grpo": ("base", "blocks")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--stage", choices=sorted(ARMS), default="sft")
    ap.add_argument("--recipe", default="kegg")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--start", type=int, default=100, help="the first step whose batches are timed")
    ap.add_argument("--arms", default=None, help="comma-separated, of the stage's: sft " + ",".join(ARMS["sft"]) +
                    "; grpo " + ",".join(ARMS["grpo"]))
    ap.add_argument("overrides", nargs="*", help="recipe key=value overrides")
    a = ap.parse_args()

    from bioreason import cpu_math
    from bioreason.recipes import load_recipe

    print(f"oneDNN fp32 matmuls: {cpu_math.configure_from_env()}")  # as the CLI's train command sets them
    out = tempfile.mkdtemp(prefix="bioreason-ab-")
    recipe = load_recipe(a.recipe, [f"train.output_dir={out}", "train.save_every=0", f"grpo.output_dir={out}-grpo",
                                    "grpo.save_every=0", *a.overrides])
    arms = (a.arms or ",".join(ARMS[a.stage])).split(",")
    if set(arms) - set(ARMS[a.stage]):
        ap.error(f"--arms: {a.stage} has {', '.join(ARMS[a.stage])}")
    times = (sft_rounds if a.stage == "sft" else grpo_rounds)(recipe, arms, a.rounds, a.start)
    base = statistics.median(times[arms[0]])
    print(f"recipe {a.recipe} {a.stage}, steps {a.start}-{a.start + a.rounds - 1}, {a.rounds} rounds (arms "
          "alternating):")
    for name in arms:
        med = statistics.median(times[name])
        print(f"  {name:7s} median {med:7.3f} s  {base / med:5.2f}x {arms[0]}")
    return 0


def sft_rounds(recipe: dict, arms: list[str], rounds: int, start: int) -> dict[str, list[float]]:
    from bioreason.attention import train_by_blocks
    from bioreason.training.sft import build_trainer

    trainer = build_trainer(recipe)
    t = trainer.recipe["train"]
    ga = int(t["grad_accum"])

    def arm(name: str) -> None:
        train_by_blocks(trainer.model, name in ("blocks", "both"))
        t["pair_by_length"] = name in ("sorted", "both")

    def padding() -> float:
        cells = real = 0
        for part in trainer.micro_batches(ga, 0):
            n = [trainer._length(i, trainer.step_fn.length) for i in part]
            cells, real = cells + max(n) * len(n), real + sum(n)
        return 1 - real / cells

    times: dict[str, list[float]] = {k: [] for k in arms}
    trainer.step = start
    trainer.train_step()  # warm-up: oneDNN's primitives, the allocator
    for r in range(rounds):
        for name in arms if r % 2 == 0 else arms[::-1]:
            arm(name)
            trainer.step = start + r
            pad = padding()
            t0 = time.perf_counter()
            row = trainer.train_step()
            times[name].append(time.perf_counter() - t0)
            print(f"round {r} {name:7s} {times[name][-1]:7.3f} s  loss {row['loss']:.4f}  padding {pad:.1%}",
                  flush=True)
    return times


def grpo_rounds(recipe: dict, arms: list[str], rounds: int, start: int) -> dict[str, list[float]]:
    from bioreason.attention import train_by_blocks
    from bioreason.training.grpo import build_trainer

    trainer, step = build_trainer(recipe)
    times: dict[str, list[float]] = {k: [] for k in arms}

    def loss_pass(batch) -> float:
        """Forward and backward; returns the gradient's norm (GRPO's loss value does not depend on the log-probs
        at the first update, its gradient does)."""
        trainer.model.train()
        with trainer.acc.autocast():
            loss, _ = step.loss(trainer.model, batch)
            trainer.acc.backward(loss / batch.units)
        norm = sum(float(p.grad.float().square().sum()) for p in trainer.model.parameters() if p.grad is not None)
        trainer.opt.zero_grad(set_to_none=True)
        return norm ** 0.5

    for r in range(-1, rounds):  # round -1: warm-up
        trainer.step = start + max(r, 0)
        t0 = time.perf_counter()
        batch = step.prepare([trainer.examples[i] for i in trainer.micro_batches(1, 0)[0]])
        sampled = time.perf_counter() - t0
        norms = {}
        for name in arms if r % 2 == 0 else arms[::-1]:
            train_by_blocks(trainer.model, name == "blocks")
            t0 = time.perf_counter()
            norms[name] = loss_pass(batch)
            if r >= 0:
                times[name].append(time.perf_counter() - t0)
        if r >= 0:
            spread = (max(norms.values()) - min(norms.values())) / max(max(norms.values()), 1e-30)
            print(f"round {r} sampling {sampled:6.2f} s ({int(batch.units)} completion tokens)  "
                  + "  ".join(f"{n} {times[n][-1]:6.3f} s" for n in arms)
                  + f"  gradient norms differ by {spread:.1e} (relative)", flush=True)
    return times


if __name__ == "__main__":
    sys.exit(main())
