"""The training loop shared by SFT and GRPO, on accelerate: 1 CPU process, N processes, or GPUs with DeepSpeed/FSDP.

A step function object supplies ``prepare(examples)`` (tokenise, or sample and score for GRPO; returns an object
with ``units``, the number of loss units: label tokens, completion tokens or sequences) and ``loss(prepared)``
(the *sum* of the loss over those units, plus detached stats). The loop divides by the number of units over all
processes and micro-batches, so N processes with the same global batch give the same loss and gradients as one.
Data order is a pure function of (seed, step): each global step takes the next ``batch_size x processes x
grad_accum`` examples of a per-epoch seeded permutation, and rank r takes its slice (``data_order.py``). Checkpoints
(``checkpoints/step-N``, written to a temporary folder and renamed) hold model, optimiser, scheduler and RNG
states through ``accelerator.save_state``; with the deterministic data order this makes resume exact.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path

import torch

from bioreason.data_order import DataOrder, balance_keys, balanced_pool
from bioreason.errors import RecipeError
from bioreason.recipe_values import balance_setting

log = logging.getLogger(__name__)


def load_for_training(recipe: dict):
    """(model, processor, base_ref): the starting model with LoRA applied as the recipe says."""
    from bioreason import hub
    from bioreason.modeling import apply_lora

    m = recipe["model"]
    init = m["init"]
    if init == "tiny":
        from bioreason.tiny import build_tiny

        model, proc = build_tiny(seed=recipe["train"]["seed"])
        base = None
    elif init == "build":  # a new DNA-LLM from hub/folder components (users who are online)
        b = m.get("build") or {}
        if not b.get("llm"):
            raise RecipeError("model.init=build needs model.build.llm (a hub name or folder of a causal LM)")
        model, proc = hub.build_model(b["llm"], b.get("encoder", "hyena"), b.get("encoder_config"),
                                      b.get("encoder_weights"), b.get("pooling", "mean"), int(b.get("pool_stride", 16)),
                                      int(b.get("max_dna_tokens", 64)), int(recipe["train"]["seed"]), b.get("model_id"))
        base = None
    else:
        from bioreason.checkpoints import load_model

        init = hub.named_model(init)  # a shipped checkpoint by name (kegg-v1), as --model reads it
        if init != "default" and not Path(init).exists():
            raise RecipeError(f"model.init={init!r} (grpo.init for the GRPO stage) does not exist: give default, "
                              "tiny, build, a shipped model's name or a folder written by `bioreason train` (the "
                              "SFT stage's OUTPUT/final)")
        model, proc = load_model(None if init == "default" else init, dtype="float32")
        base = "default" if init == "default" else str(Path(init).resolve())
    if m.get("gradient_checkpointing"):
        model.language_model.gradient_checkpointing_enable()
        model.language_model.enable_input_require_grads()
    torch.manual_seed(recipe["train"]["seed"])
    if m.get("lora"):
        lo = m["lora"]
        model = apply_lora(model, r=lo["r"], alpha=lo["alpha"], dropout=lo["dropout"],
                           target_modules=tuple(lo["target_modules"]), train_encoder=m.get("train_encoder", False))
    else:
        model.set_trainable(encoder=m.get("train_encoder", False), llm=True, projector=True)
    return model, proc, base


def _portable(path):
    """A recipe path as a model folder records it: relative to the working directory when inside it (a shipped
    folder should not carry the path of the machine that trained it)."""
    import os

    if not path:
        return path
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def _plain(value):
    """JSON for what a recipe or scheduler state may hold beyond JSON types (paths, tuples, tensors)."""
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


class Trainer:
    def __init__(self, recipe: dict, step_fn, examples: list, kind: str):
        from accelerate import Accelerator

        t = recipe["train"]
        self.recipe, self.step_fn, self.examples, self.kind = recipe, step_fn, examples, kind
        self.skipped: list = []  # dataset records the build skipped (build_trainer sets them): OUTPUT/skipped.tsv
        self.out = Path(t["output_dir"])
        self.previous = [] if t.get("resume") else [  # a finished or started run there, not being continued
            p for p in (self.out / "final", self.out / "checkpoints", self.out / "log.jsonl") if p.exists()]
        if self.previous and not t.get("overwrite"):
            from bioreason.errors import OutputExistsError

            raise OutputExistsError(
                f"train.output_dir {self.out} holds a previous run ({', '.join(p.name for p in self.previous)}); "
                "continue it with train.resume=latest, start over with --force (train.overwrite=true), or give "
                "another train.output_dir")
        try:  # before the model loads: the folder must exist (it is made) and take files
            from bioreason.atomic import ensure_writable_folder

            ensure_writable_folder(self.out)
        except OSError as exc:
            raise RecipeError(f"train.output_dir {self.out}: cannot write there ({exc.strerror or exc}); set it to a "
                              "folder you can write, e.g. train.output_dir=runs/mine") from exc
        if t.get("threads"):
            torch.set_num_threads(int(t["threads"]))
        trackers = t.get("trackers", "auto")
        if trackers == "auto":
            import importlib.util

            trackers = "tensorboard" if importlib.util.find_spec("tensorboard") else None
        # cpu=True without CUDA lets accelerate form a gloo process group under torchrun (MULTI_CPU). A second
        # trainer in the same process (SFT then GRPO from Python) may ask for another mixed precision: accelerate
        # keeps one global state, so reset it (the process group, in PartialState, is kept).
        from accelerate.state import AcceleratorState

        AcceleratorState._reset_state(reset_partial_state=False)
        self.acc = Accelerator(mixed_precision=t.get("mixed_precision", "no"), log_with=trackers,
                               project_dir=str(self.out), cpu=not torch.cuda.is_available())
        from accelerate.utils import set_seed

        set_seed(int(t["seed"]))
        model, self.proc, self.base = load_for_training(recipe)
        if self.acc.device.type == "cpu":  # CPU attention (bioreason.attention), whatever model.init built
            from bioreason.attention import train_by_blocks, use_few_query_attention

            use_few_query_attention(model)  # a shipped or trained folder is switched already; tiny and build are not
            train_by_blocks(model, t.get("cpu_attention", "blocks") == "blocks")  # sdpa: as kegg-v1 was trained
        self.kept_casts = 0
        # frozen weights cast once, not per call (autocast_cache): on CPUs, where it was measured; on a GPU the copies
        # would take half the frozen weights' memory again for a cast that costs little there
        plain_cpu = self.acc.device.type == "cpu" and self.acc.distributed_type.value in ("NO", "MULTI_CPU")
        if self.acc.mixed_precision in ("bf16", "fp16") and plain_cpu:
            from bioreason.autocast_cache import keep_frozen_casts
            from bioreason.modeling import unwrap_dna_llm

            self.kept_casts = keep_frozen_casts(unwrap_dna_llm(model).language_model)
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            raise RecipeError("nothing to train: every parameter is frozen (check model.lora / train_encoder)")
        opt = torch.optim.AdamW(params, lr=float(t["lr"]), weight_decay=float(t["weight_decay"]))
        from transformers import get_scheduler

        self.sched = get_scheduler(t["scheduler"], opt, num_warmup_steps=int(t["warmup_steps"]),
                                   num_training_steps=int(t["max_steps"]))
        self.model, self.opt = self.acc.prepare(model, opt)
        # the scheduler (stepped by us once per step) is saved as JSON in trainer_state.json, not registered with
        # accelerate: its custom_checkpoint_*.pkl is unpickled with weights_only=False, so a crafted one runs code
        balance = balance_setting(recipe.get("data", {}).get("balance"))
        pool = balanced_pool(balance_keys(examples, balance[0]), balance[1]) if balance else len(examples)
        self.order = DataOrder(pool, int(t["seed"]), int(t["batch_size"]), self.acc.num_processes,
                               int(t["grad_accum"]))
        self.step = 0
        self._lengths: dict[int, int] = {}  # example index -> tokens, for micro_batches
        self.history: list[dict] = []
        if trackers:
            self.acc.init_trackers(f"bioreason-{kind}", config={k: v for k, v in t.items() if isinstance(
                v, (int, float, str, bool))})

    @property
    def unwrapped(self):
        return self.acc.unwrap_model(self.model)

    # --- checkpoints ---------------------------------------------------------------------------------------------
    def _ckpt_root(self) -> Path:
        return self.out / "checkpoints"

    def save_checkpoint(self) -> Path:
        final = self._ckpt_root() / f"step-{self.step:06d}"
        tmp = self._ckpt_root() / f".tmp-step-{self.step:06d}"
        if self.acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
        self.acc.wait_for_everyone()
        self.acc.save_state(str(tmp))
        self.acc.wait_for_everyone()
        if self.acc.is_main_process:
            (tmp / "trainer_state.json").write_text(json.dumps({
                "step": self.step, "kind": self.kind, "scheduler": self.sched.state_dict(),
                "recipe": self.resume_key()}, default=_plain))
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
            keep = int(self.recipe["train"]["save_total_limit"])
            done = sorted(p for p in self._ckpt_root().glob("step-*") if p.is_dir())
            for old in done[:-keep] if keep > 0 else []:
                shutil.rmtree(old, ignore_errors=True)
        self.acc.wait_for_everyone()
        return final

    def resume(self, where: str) -> None:
        root = self._ckpt_root()
        if where == "latest":
            done = sorted(p for p in root.glob("step-*") if (p / "trainer_state.json").is_file())
            if not done:
                log.warning("train.resume=latest but no checkpoint in %s; starting from step 0", root)
                return
            path = done[-1]
        else:
            path = Path(where)
        if not (path / "trainer_state.json").is_file():
            raise RecipeError(f"{path} is not a complete checkpoint (no trainer_state.json)")
        state = json.loads((path / "trainer_state.json").read_text())
        saved, now = state.get("recipe"), json.loads(json.dumps(self.resume_key(), default=_plain))
        if saved != now:
            diff = sorted(k for k in set(saved or {}) | set(now) if (saved or {}).get(k) != now.get(k))
            raise RecipeError(f"{path} was saved by a run with another recipe ({', '.join(diff) or 'unknown'} "
                              "differ); resume with the checkpoint's recipe, or start a new train.output_dir")
        if "scheduler" not in state:
            raise RecipeError(f"{path} has no scheduler state in trainer_state.json (an older checkpoint); "
                              "start a new train.output_dir")
        pickled = sorted(p.name for p in path.glob("custom_checkpoint_*.pkl"))
        if pickled:
            raise RecipeError(f"{path} holds {pickled[0]}, a pickled state that bioreason never writes (loading it "
                              "would run whatever code it holds); refusing to resume from it")
        self.acc.load_state(str(path))
        self.sched.load_state_dict(state["scheduler"])
        self.step = state["step"]
        log.info("resumed from %s at step %d", path, self.step)

    def resume_key(self) -> dict:
        """What must not change between a checkpoint and its resume: seed, batch shape, schedule and data."""
        t = self.recipe["train"]
        keys = ("seed", "batch_size", "grad_accum", "lr", "scheduler", "warmup_steps", "max_steps")
        prompts = ((self.recipe.get("grpo") or {}).get("prompts") or "all") if self.kind == "grpo" else "all"
        return {"kind": self.kind, "processes": self.acc.num_processes, **{k: t.get(k) for k in keys},
                "data": self.recipe.get("data"), **({"grpo_prompts": prompts} if prompts != "all" else {})}

    # --- the loop ----------------------------------------------------------------------------------------------------
    def _sum_all(self, value: float) -> float:
        if self.acc.num_processes == 1:
            return float(value)
        t = torch.tensor([float(value)], dtype=torch.float64, device=self.acc.device)
        return float(self.acc.reduce(t, reduction="sum").item())

    def micro_batches(self, ga: int, rank: int) -> list[list[int]]:
        """This process's examples for the step, in ``ga`` micro-batches. A step whose loss is normalised over all
        of them (SFT: ``step_fn.length``) gets them sorted by token length first, so the rows padded together are
        alike: the same gradient from less padding (KEGG's 8 examples: 9.5-10% of the cells padding in random pairs,
        3-4% paired); ``train.pair_by_length=false`` keeps the drawn pairs."""
        parts = [self.order.micro(self.step, m, rank) for m in range(ga)]
        length = getattr(self.step_fn, "length", None)
        if length is None or ga == 1 or not self.recipe["train"].get("pair_by_length", True):
            return parts
        flat = sorted((i for part in parts for i in part), key=lambda i: self._length(i, length))
        bs = len(parts[0])
        return [flat[m * bs:(m + 1) * bs] for m in range(ga)]

    def _length(self, i: int, length) -> int:
        if i not in self._lengths:
            self._lengths[i] = length(self.examples[i])
        return self._lengths[i]

    def train_step(self) -> dict:
        t = self.recipe["train"]
        ga = int(t["grad_accum"])
        rank = self.acc.process_index
        prepared = [self.step_fn.prepare([self.examples[i] for i in part]) for part in self.micro_batches(ga, rank)]
        units = self._sum_all(sum(p.units for p in prepared))
        if units == 0:
            raise RecipeError("a training step has no loss units (no answer tokens / completions)")
        self.model.train()
        loss_sum, stats = 0.0, {}
        for m, p in enumerate(prepared):
            sync = contextlib.nullcontext() if m == ga - 1 else self.acc.no_sync(self.model)
            with sync, self.acc.autocast():
                part, st = self.step_fn.loss(self.model, p)
                self.acc.backward(part / units * self.acc.num_processes)
            loss_sum += float(part.detach())
            for k, v in st.items():
                stats[k] = stats.get(k, 0.0) + v / ga
        if t.get("max_grad_norm"):
            self.acc.clip_grad_norm_([q for q in self.model.parameters() if q.requires_grad], float(t["max_grad_norm"]))
        self.opt.step()
        self.sched.step()
        self.opt.zero_grad(set_to_none=True)
        self.step += 1
        row = {"step": self.step, "loss": self._sum_all(loss_sum) / units, "lr": self.sched.get_last_lr()[0],
               **{k: self._sum_all(v) / self.acc.num_processes for k, v in stats.items()}}
        return row

    def write_skipped(self) -> None:
        """``OUTPUT/skipped.tsv``: the dataset records this run could not train on, each with its reason (the build
        warned about them); no file when none was skipped."""
        from bioreason.atomic import AtomicFile
        from bioreason.kegg_data.variants import SKIP_HEADER, skip_line

        path = self.out / "skipped.tsv"
        if not self.skipped:
            path.unlink(missing_ok=True)
            return
        with AtomicFile(path) as fh:
            fh.write(SKIP_HEADER + "".join(skip_line(s) for s in self.skipped))

    def run(self, progress: bool = True) -> list[dict]:
        from tqdm import tqdm

        t = self.recipe["train"]
        if t.get("resume"):
            self.resume(str(t["resume"]))
        max_steps, save_every, log_every = int(t["max_steps"]), int(t["save_every"] or 0), int(t["log_every"] or 1)
        if self.previous and self.acc.is_main_process:  # --force: the old run's model, checkpoints and log go
            for p in self.previous:
                shutil.rmtree(p) if p.is_dir() else p.unlink()
        self.acc.wait_for_everyone()
        self.out.mkdir(parents=True, exist_ok=True)
        if self.acc.is_main_process:
            self.write_skipped()
        bar = tqdm(total=max_steps, initial=self.step, desc=self.kind, unit="step",
                   disable=not (progress and self.acc.is_main_process))
        log_path = self.out / "log.jsonl"
        from bioreason.graceful_stop import StopRequest

        with StopRequest() as stop:  # Ctrl-C / SIGTERM: finish the step, save it, stop (work kept)
            while self.step < max_steps:
                t0 = time.perf_counter()
                row = self.train_step()
                row["seconds"] = round(time.perf_counter() - t0, 3)
                self.history.append(row)
                if self.acc.is_main_process:
                    with open(log_path, "a") as fh:
                        fh.write(json.dumps(row) + "\n")
                    if self.step % log_every == 0:
                        bar.set_postfix({k: f"{v:.4g}" for k, v in row.items() if k in ("loss", "reward", "lr")})
                self.acc.log({k: v for k, v in row.items() if k != "step"}, step=self.step)
                bar.update(1)
                stopping = self._any_process(stop.requested is not None)
                if (save_every and self.step % save_every == 0) or (stopping and self.step < max_steps):
                    saved = self.save_checkpoint()
                if stopping and self.step < max_steps:
                    bar.close()
                    if self.acc.is_main_process:
                        print(f"stopped at step {self.step} of {max_steps}; checkpoint {saved}; continue with the "
                              "same command and train.resume=latest", file=sys.stderr)
                    raise KeyboardInterrupt
        bar.close()
        return self.history

    def _any_process(self, flag: bool) -> bool:
        """Whether any process was asked to stop (all must save the checkpoint together)."""
        if self.acc.num_processes == 1:
            return flag
        return bool(self.acc.reduce(torch.tensor([float(flag)], device=self.acc.device), reduction="sum").item())

    def save_final(self) -> Path | None:
        """The final folder that ``bioreason ask/predict --model`` load. Written atomically by the main process."""
        from bioreason.checkpoints import is_adapter_folder, save_trained, stack_adapters
        from bioreason.kegg_data.build import task_spec

        self.acc.wait_for_everyone()
        folder = self.out / "final"
        if self.acc.is_main_process:
            fmt = self.recipe["train"].get("save_format", "auto")
            if fmt == "auto":
                fmt = "adapter" if self.base and hasattr(self.unwrapped, "peft_config") else "full"
            texts = self.examples[0].meta.get("label_texts") if self.examples else None
            save_trained(self.unwrapped, self.proc, folder, base=self.base, fmt=fmt,
                         meta={"kind": self.kind, "steps": self.step, "recipe": _portable(self.recipe.get("_path"))},
                         task=task_spec(self.recipe["data"], [e.meta.get("label") for e in self.examples],
                                        [self.examples[i].meta.get("label") for i in self.order.pool],
                                        label_set=getattr(self, "label_set", None),
                                        label_texts=texts, answers=[e.answer for e in self.examples]))
            if fmt == "adapter" and self.base != "default" and is_adapter_folder(self.base):
                stack_adapters(self.base, folder, folder)  # GRPO on an SFT adapter -> one adapter on the base
        self.acc.wait_for_everyone()
        self.acc.end_training()  # closes trackers and, with several processes, the process group: last
        return folder
