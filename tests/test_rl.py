"""The RL core: rewards against adversarial completions, advantages and loss against hand computations."""

from __future__ import annotations

import math

import pytest
import torch

from bioreason.rl import (REWARDS, SCORE_PREFIX, compute_rewards, conciseness, correctness, format_reward, group_advantages,
                          grpo_loss, score_candidates)

LABELS = ["pathogenic", "benign"]
JUNK = "".join(chr(33 + (i * 7919) % 90) for i in range(10_000))

ADVERSARIAL = [  # (completion, correctness vs gold 'pathogenic', format, conciseness)
    ("<think>The stop codon truncates the protein.</think>\nAnswer: pathogenic", 1, 1, 1),
    ("<think>Could be either.</think>\nAnswer: pathogenic or benign", 0, 1, 1),  # both labels
    ("<think>Answer: pathogenic</think>", 0, 0, 0),  # only inside <think>
    ("<think>Answer: pathogenic", 0, 0, 0),  # <think> never closed
    ("", 0, 0, 0),  # empty
    (JUNK, 0, 0, 0),  # 10,000 characters of junk
    ("<think>r</think>\nAnswer: PATHOGENIC", 1, 1, 1),  # wrong case still the label
    ("<think>r</think>\nAnswer: pathogenic.", 1, 1, 1),  # trailing punctuation
    ("<think>r</think>\nAnswer: benign", 0, 1, 1),  # the other label
    ("pathogenic pathogenic pathogenic", 0, 0, 0),  # label without an Answer line
    ("<think>r</think>\nAnswer: nonpathogenic", 0, 1, 1),  # not a whole-word match
    ("<think>r</think>\nAnswer: benign\nAnswer: pathogenic", 1, 0, 1),  # last Answer line counts; format wants one
    ("<think>r</think>\nAnswer: it is clearly a pathogenic variant affecting the BRCT domain of the protein", 1, 1, 0),
    ("<think></think>\nAnswer: pathogenic", 1, 0, 1),  # empty reasoning is not the format
    ("<think>r</think><think>s</think>\nAnswer: pathogenic", 1, 0, 1),
]


@pytest.mark.parametrize("text,corr,fmt,conc", ADVERSARIAL)
def test_rewards_on_adversarial_completions(text, corr, fmt, conc):
    assert correctness([text], label=["pathogenic"], label_set=[LABELS]) == [float(corr)]
    assert format_reward([text]) == [float(fmt)]
    assert conciseness([text]) == [float(conc)]


def test_correctness_open_set_and_registry():
    assert correctness(["<think>x</think>\nAnswer: Cushing Syndrome."], label=["cushing syndrome"]) == [1.0]
    assert correctness(["<think>x</think>\nAnswer: cushing syndrome and acromegaly"], label=["cushing syndrome"]) == [0.0]
    assert {"correctness", "format", "conciseness"} <= set(REWARDS)


def test_compute_rewards_weights_and_none():
    from bioreason.rl import register_reward

    @register_reward("test_none")
    def none_reward(completions, **_):
        return [None, 1.0]

    try:
        total, per, names = compute_rewards(
            ["<think>r</think>\nAnswer: benign", "x"], {"correctness": 2.0, "test_none": 0.5},
            {"label": ["benign", "benign"], "label_set": [LABELS, LABELS]})
        assert names == ["correctness", "test_none"]
        assert total.tolist() == [2.0, 0.5] and math.isnan(per[0, 1])
    finally:
        REWARDS.pop("test_none")


def test_group_advantages_hand_computed():
    r = torch.tensor([1.0, 0.0, 0.0, 1.0, 2.0, 2.0, 2.0, 2.0])
    adv = group_advantages(r, 4)
    std = math.sqrt(1 / 3)  # sample std of [1,0,0,1]
    assert adv[:4].tolist() == pytest.approx([0.5 / (std + 1e-4), -0.5 / (std + 1e-4)] * 1 + [-0.5 / (std + 1e-4),
                                                                                             0.5 / (std + 1e-4)])
    assert adv[4:].tolist() == [0.0] * 4  # equal rewards: no signal
    nan = group_advantages(torch.tensor([1.0, float("nan"), 0.0, 0.0]), 4)
    assert nan[1] == 0 and nan[0] > 0 > nan[2]


def test_grpo_loss_hand_computed():
    logp = torch.tensor([[-1.0, -2.0], [-0.5, -1.5]], requires_grad=True)
    old = torch.tensor([[-1.2, -2.0], [-0.5, -1.0]])
    adv = torch.tensor([1.0, -1.0])
    mask = torch.tensor([[1, 1], [1, 0]])
    loss, stats = grpo_loss(logp, old, adv, mask, epsilon=0.2, loss_type="dapo")
    r = [[math.exp(0.2), 1.0], [1.0, math.exp(-0.5)]]
    # token terms: -min(r*A, clip(r)*A)
    t00 = -min(r[0][0] * 1, min(r[0][0], 1.2) * 1)  # ratio 1.2214 clipped to 1.2 -> -1.2
    t01 = -1.0
    t10 = 1.0  # A=-1, ratio 1
    assert loss.item() == pytest.approx((t00 + t01 + t10) / 3)
    assert stats["clip_fraction"] == pytest.approx(1 / 3)
    seq, _ = grpo_loss(logp, old, adv, mask, loss_type="grpo")
    assert seq.item() == pytest.approx(((t00 + t01) / 2 + t10) / 2)
    ref = torch.tensor([[-1.0, -1.0], [-0.5, -1.5]])
    kl_loss, kl_stats = grpo_loss(logp, old, adv, mask, ref_logp=ref, beta=0.1)
    k3 = math.exp(1.0) - 1.0 - 1  # token (0,1): d = ref - logp = 1
    assert kl_stats["kl"] == pytest.approx(k3 / 3)
    assert kl_loss.item() == pytest.approx((t00 + t01 + t10 + 0.1 * k3) / 3)
    loss.backward()
    assert logp.grad[0, 0] == 0  # clipped token carries no gradient


def test_score_candidates_equals_full_forward(tiny_session):
    from bioreason.processing import user_message

    model, proc = tiny_session
    prompts = [[user_message("q", ["ACGT" * 10])], [user_message("a longer question", ["ACGT" * 30, "AC"])]]
    scores = score_candidates(model, proc, prompts, ["pathogenic", "benign"])
    for b, conv in enumerate(prompts):
        for k, cand in enumerate(["pathogenic", "benign"]):
            enc = proc([conv + [{"role": "assistant", "content": f"{SCORE_PREFIX}{cand}"}]])
            with torch.no_grad():
                logits = model(**enc).logits[0, :-1]
            lp = torch.log_softmax(logits, -1).gather(-1, enc["input_ids"][0, 1:, None]).squeeze(-1)
            assert scores[b, k].item() == pytest.approx(lp[enc["labels"][0, 1:] != -100].sum().item(), abs=1e-4)
