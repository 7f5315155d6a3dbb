"""A recipe's SFT step with the trainer's CPU speed-ups off and on, alternating in one process on the same batches.

The host's speed drifts by up to 1.5x between days and by 10-20% within an hour, so a step-time figure from another
run says little; this builds the trainer ``bioreason train sft --recipe NAME`` builds and times its step under each
arm in turn, each round on the same step's examples (the step counter is set back; the weights move on, which does
not change the work). Arms: ``base`` (torch's flash-kernel sdpa, micro-batches as drawn), ``blocks`` (causal
attention by query blocks, ``bioreason.attention.causal_blocks``), ``sorted`` (the step's examples paired by length,
``Trainer.micro_batches``), ``both`` (what the trainer does). Prints each arm's median seconds per step and its
ratio to ``base``, with the step's padding share. Usage: ``python benchmarks/recipe_ab.py [--recipe kegg]
[--rounds 3] [--start 100] [key=value ...]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time

ARMS = ("base", "blocks", "sorted", "both")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--recipe", default="kegg")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--start", type=int, default=100, help="the first step whose batches are timed")
    ap.add_argument("--arms", default=",".join(ARMS))
    ap.add_argument("overrides", nargs="*", help="recipe key=value overrides")
    a = ap.parse_args()

    from bioreason import attention, cpu_math
    from bioreason.recipes import load_recipe
    from bioreason.training.sft import build_trainer

    print(f"oneDNN fp32 matmuls: {cpu_math.configure_from_env()}")  # as the CLI's train command sets them
    out = tempfile.mkdtemp(prefix="bioreason-ab-")
    trainer = build_trainer(load_recipe(a.recipe, [f"train.output_dir={out}", "train.save_every=0", *a.overrides]))
    trains_causally, length = attention._trains_causally, trainer.step_fn.length
    ga = int(trainer.recipe["train"]["grad_accum"])

    def arm(name: str) -> None:
        attention._trains_causally = trains_causally if name in ("blocks", "both") else (lambda *x: False)
        trainer.step_fn.length = length if name in ("sorted", "both") else None

    def padding() -> float:
        cells = real = 0
        for part in trainer.micro_batches(ga, 0):
            n = [trainer._length(i, length) for i in part]
            cells, real = cells + max(n) * len(n), real + sum(n)
        return 1 - real / cells

    arms = a.arms.split(",")
    times: dict[str, list[float]] = {k: [] for k in arms}
    pads: dict[str, list[float]] = {k: [] for k in arms}
    trainer.step = a.start
    trainer.train_step()  # warm-up: oneDNN's primitives, the allocator
    for r in range(a.rounds):
        for name in arms if r % 2 == 0 else arms[::-1]:
            arm(name)
            trainer.step = a.start + r
            pads[name].append(padding())
            t0 = time.perf_counter()
            row = trainer.train_step()
            times[name].append(time.perf_counter() - t0)
            print(f"round {r} {name:7s} {times[name][-1]:7.3f} s  loss {row['loss']:.4f}", flush=True)
    arm("both")
    base = statistics.median(times[arms[0]])
    print(f"recipe {a.recipe}, steps {a.start}-{a.start + a.rounds - 1}, {a.rounds} rounds (arms alternating):")
    for name in arms:
        med = statistics.median(times[name])
        print(f"  {name:7s} median {med:7.3f} s/step  {base / med:5.2f}x {arms[0]}  padding "
              f"{statistics.mean(pads[name]):.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
