"""Where a recipe's training step spends its time: a few steps of ``training/recipes/<recipe>.yaml`` (SFT or GRPO,
as ``bioreason train`` runs them) under ``torch.profiler`` and ``cProfile``.

For the question a step-time figure alone cannot answer: on a lent H100 the KEGG recipe's SFT step took 1.26 s
(batch 2 x 4 micro-batches of ~450 tokens on a 135M model, which the GPU computes in tens of milliseconds) and its
GRPO step 8.7 s, so the time goes somewhere other than the GPU's arithmetic. Prints the wall time of the profiled
steps, the GPU's busy time within them (CUDA only), the torch operators by self CPU time and by device time, and
the Python functions by cumulative time. The first ``--warmup`` steps are run but not profiled.
Usage: ``python benchmarks/profile_recipe.py sft|grpo [--recipe kegg] [--steps 3] [key=value ...]``.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import tempfile
import time


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("stage", choices=("sft", "grpo"))
    ap.add_argument("--recipe", default="kegg")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--top", type=int, default=18)
    ap.add_argument("overrides", nargs="*", help="recipe key=value overrides")
    a = ap.parse_args()

    import torch
    from torch.profiler import ProfilerActivity, profile

    from bioreason.recipes import load_recipe

    out = tempfile.mkdtemp(prefix="bioreason-profile-")
    key = "train" if a.stage == "sft" else "grpo"
    recipe = load_recipe(a.recipe, [f"{key}.output_dir={out}", f"{key}.save_every=0", *a.overrides])
    if a.stage == "sft":  # the trainers `bioreason train` builds, so the profile is of the same step
        from bioreason.training.sft import build_trainer

        trainer = build_trainer(recipe)
    else:
        from bioreason.training.grpo import build_trainer

        trainer, _ = build_trainer(recipe)
    cuda = torch.cuda.is_available()
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    for _ in range(a.warmup):
        trainer.train_step()
    sync()
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    pr = cProfile.Profile()
    t0 = time.perf_counter()
    with profile(activities=acts) as prof:
        pr.enable()
        rows = [trainer.train_step() for _ in range(a.steps)]
        sync()
        pr.disable()
    wall = time.perf_counter() - t0
    dev = "cuda" if cuda else "cpu"
    print(f"{a.stage} on {torch.cuda.get_device_name() if cuda else 'CPU'} ({torch.get_num_threads()} threads), "
          f"recipe {a.recipe}: {a.steps} profiled steps in {wall:.2f} s ({wall / a.steps:.3f} s/step; "
          f"logged {', '.join(str(r.get('loss', r.get('reward'))) for r in rows)})")
    ev = prof.key_averages()
    if cuda:
        busy = sum(e.self_device_time_total for e in ev) / 1e6
        print(f"GPU busy {busy:.2f} s of {wall:.2f} s wall ({busy / wall:.0%}); kernels launched: "
              f"{sum(e.count for e in ev if e.self_device_time_total > 0)}")
        print(ev.table(sort_by="self_device_time_total", row_limit=a.top, max_name_column_width=60))
    print(ev.table(sort_by="self_cpu_time_total", row_limit=a.top, max_name_column_width=60))
    s = io.StringIO()
    pstats.Stats(pr, stream=s).sort_stats("cumulative").print_stats(a.top + 12)
    print("\n".join(line for line in s.getvalue().splitlines() if line.strip())[:9000])
    print(f"(profiled on {dev})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
