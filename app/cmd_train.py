"""``bioreason train sft|grpo --recipe NAME [key=value ...]``: the thin training entry points, from the CLI.

One process here; for several (CPU with gloo, or GPUs) launch the same modules with torchrun or accelerate:
``torchrun --nproc_per_node 2 -m bioreason.training.sft --recipe tiny`` or
``accelerate launch --config_file training/recipes/accelerate_deepspeed_zero2.yaml -m bioreason.training.grpo ...``.
"""

from __future__ import annotations


def add_parser(sub) -> None:
    from bioreason.recipes import shipped_recipes

    p = sub.add_parser("train", help="fine-tune with SFT or GRPO from a YAML recipe",
                       description=f"Train from a recipe ({', '.join(shipped_recipes())}, or a YAML path) with "
                                   "key=value overrides, e.g. `bioreason train sft --recipe default-cpu "
                                   "train.max_steps=50`. Checkpoints every train.save_every steps; resume with "
                                   "train.resume=latest. The final model folder (OUTPUT_DIR/final) is what "
                                   "`bioreason ask --model` and `bioreason predict --model` load.")
    p.add_argument("stage", choices=("sft", "grpo"), help="sft (supervised) or grpo (reinforcement learning)")
    p.add_argument("--recipe", required=True, help="recipe name or YAML path")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="recipe overrides")
    p.add_argument("--force", action="store_true",
                   help="replace a previous run in train.output_dir (its final model, checkpoints and log); "
                        "without it such a folder is refused unless train.resume=latest continues it")
    p.set_defaults(handler=run)


def run(args) -> int:
    from bioreason.recipes import load_recipe

    recipe = load_recipe(args.recipe, [*args.overrides, *(["train.overwrite=true"] if args.force else [])])
    if args.stage == "sft":
        from bioreason.training.sft import run as train
    else:
        from bioreason.training.grpo import run as train
    trainer, history, folder = train(recipe)
    if not trainer.acc.is_main_process:
        return 0
    if history:
        first, last = history[0], history[-1]
        key = "loss" if args.stage == "sft" else "reward"
        print(f"{args.stage}: {len(history)} steps; {key} {first.get(key, 0):.4f} -> {last.get(key, 0):.4f}; "
              f"model in {folder}")
    else:
        print(f"{args.stage}: nothing to do (already at train.max_steps); model in {folder}")
    _say_labels(folder, recipe["data"].get("task"))
    return 0


def _say_labels(folder, task) -> None:
    """What ``predict`` will score with the folder: the labels its bioreason_task.json records, or for a task of
    your own without a label set, that ``--labels`` is needed."""
    import json
    from pathlib import Path

    from bioreason.predict import TASK_FILE

    spec = Path(folder) / TASK_FILE
    labels = json.loads(spec.read_text()).get("labels") if spec.is_file() else None
    if labels:
        shown = ", ".join(labels[:8]) + (f" and {len(labels) - 8} more" if len(labels) > 8 else "")
        print(f"labels it answers ({TASK_FILE}; predict scores these): {shown}")
    elif task in ("vcf", "user"):
        print("no label set recorded (answers are free text, or a label column that differs from them): give "
              "`bioreason predict` the answers to score with --labels")
