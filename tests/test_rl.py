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


@pytest.mark.parametrize("per_pass, positions", [(0, 256), (0, 6), (1, 256), (2, 256)])
@pytest.mark.parametrize("candidates", [["LOF", "LOF gain", "FUNC"], ["benign", "benign"], ["pathogenic"]])
def test_candidates_sharing_a_lead_score_as_a_full_forward(tiny_session, candidates, per_pass, positions,
                                                           monkeypatch):
    """The answer prefix runs once for all candidates; a candidate that begins another, a repeated one and a single
    one still get exactly their full-forward log-likelihoods: packed side by side in one model call (CPU), packed
    in several calls (a small position budget), one per call or several on a repeated cache (GPU)."""
    from bioreason import candidates as cand
    from bioreason.processing import user_message

    monkeypatch.setattr(cand, "_candidates_per_pass", lambda batch, device, k: per_pass)
    monkeypatch.setattr(cand, "CPU_PACKED_POSITIONS", positions)  # 6 = 3 tokens per row of 2 prompts
    model, proc = tiny_session
    prompts = [[user_message("q", ["ACGT" * 10])], [user_message("a longer question", ["ACGT" * 30, "AC"])]]
    scores = score_candidates(model, proc, prompts, candidates, normalise=True)
    for b, conv in enumerate(prompts):
        for k, cand in enumerate(candidates):
            enc = proc([conv + [{"role": "assistant", "content": f"{SCORE_PREFIX}{cand}"}]])
            with torch.no_grad():
                logits = model(**enc).logits[0, :-1]
            lp = torch.log_softmax(logits, -1).gather(-1, enc["input_ids"][0, 1:, None]).squeeze(-1)
            want = lp[enc["labels"][0, 1:] != -100]
            assert scores[b, k].item() == pytest.approx(want.mean().item(), abs=1e-5)


def test_candidate_passes_leave_the_prompts_cache_as_it_was(tiny_session, monkeypatch):
    """Each candidate's pass attends to the prompts' (and answer prefix's) keys without storing the concatenation
    (``candidates._peek``): otherwise all layers' copies are held at once, a third copy of the cache at predict's
    peak. Packed candidates likewise."""
    from bioreason.processing import user_message

    model, proc = tiny_session
    calls, forward = [], model.forward

    def spy(*args, past_key_values=None, **kwargs):
        before = past_key_values.get_seq_length() if past_key_values is not None else None
        out = forward(*args, past_key_values=past_key_values, **kwargs)
        if before is not None:
            calls.append((before, past_key_values.get_seq_length()))
        return out

    monkeypatch.setattr(model, "forward", spy)
    prompts = [[user_message("q", ["ACGT" * 10])], [user_message("a longer question", ["ACGT" * 30, "AC"])]]
    score_candidates(model, proc, prompts, ["LOF", "FUNC", "LOF gain"])  # three: one call each
    lead, *candidates = calls[-4:]
    assert lead[1] > lead[0]  # the answer prefix is kept: the candidates run on it
    assert len(candidates) == 3 and all(after == before == lead[1] for before, after in candidates), calls
    score_candidates(model, proc, prompts, ["LOF", "FUNC", "LOF gain", "INT"])  # four: packed in one call
    prefix, lead, packed = calls[-3:]  # the prompts' prefill, the answer prefix, the candidates
    assert lead[1] > lead[0] == prefix[1] and packed[1] == packed[0] == lead[1], calls


# --- prefix caching -------------------------------------------------------------------------------------------------
SYSTEM = "You are BioReason, an assistant that reasons step by step about DNA variants."


def _chat(question, dna, system=SYSTEM):
    return [{"role": "system", "content": system},
            {"role": "user", "content": [*({"type": "dna", "sequence": s} for s in dna),
                                         {"type": "text", "text": question}]}]


PROMPTS = [_chat("Is this variant pathogenic?", ["ACGTACGTAC" * 6, "ACGTACGTAA" * 6]),
           _chat("benign?", ["ACGT" * 3]),
           _chat("a longer question about the variant, of a different length", ["ACGTTT" * 20, "ACGTTA" * 20])]


def test_prefix_len_is_the_template_part_all_prompts_share(tiny_session):
    _, proc = tiny_session
    enc = proc(PROMPTS, padding_side="left")
    n = proc.prefix_len(PROMPTS, enc)
    template = proc.template_prefix_ids(PROMPTS[0])
    assert n == len(template) > 10
    assert proc.tokenizer.decode(template).endswith("<|im_start|>user\n")  # system turn + user turn's opening
    other = [_chat("q", ["ACGT"], system="Another system prompt.")] + PROMPTS[:1]
    assert proc.prefix_len(other, proc(other, padding_side="left")) < n  # differs inside the system turn
    bare = [[{"role": "user", "content": "hi"}]]  # a one-token user turn: each row keeps two tokens of its own
    enc = proc(bare, padding_side="left")
    assert proc.prefix_len(bare, enc) <= enc["input_ids"].shape[1] - 2


def test_prefix_caching_changes_no_score_and_no_greedy_token(tiny_session):
    """The template prefix computed once (per call, or once for good with a PrefixCache) gives the same candidate
    log-likelihoods (to float rounding) and the same greedy traces as running every prompt whole."""
    from bioreason import rl
    from bioreason.sampling import sample_groups

    model, proc = tiny_session
    model.eval()
    cache = rl.PrefixCache()
    with torch.no_grad():
        try:
            rl.PREFIX_CACHING = False
            whole = rl.score_candidates(model, proc, PROMPTS, ["pathogenic", "benign"])
            greedy = sample_groups(model, proc, PROMPTS, 2, 12, do_sample=False).texts
        finally:
            rl.PREFIX_CACHING = True
        per_call = rl.score_candidates(model, proc, PROMPTS, ["pathogenic", "benign"])
        kept = [rl.score_candidates(model, proc, PROMPTS[i:i + 2], ["pathogenic", "benign"], prefix_cache=cache)
                for i in (0, 1)]
        cached_greedy = sample_groups(model, proc, PROMPTS, 2, 12, do_sample=False, prefix_cache=cache).texts
    assert torch.allclose(whole, per_call, atol=1e-4)
    assert torch.allclose(whole[:2], kept[0], atol=1e-4) and torch.allclose(whole[1:], kept[1], atol=1e-4)
    assert cache.computed == 1  # one prefix, computed once for three calls
    assert cached_greedy == greedy


def test_prefix_caching_keeps_grpo_gradients(tiny_session):
    """Training shares the prefix within a call, with gradients: the same log-probs and parameter gradients."""
    from bioreason import rl

    model, proc = tiny_session
    model.train()
    enc = proc(PROMPTS, padding_side="left")
    n = proc.prefix_len(PROMPTS, enc)
    cont = torch.randint(5, 100, (6, 7))
    cmask = torch.ones_like(cont)
    grads = []
    for prefix_len in (0, n):
        model.zero_grad()
        feats = model.get_dna_features(enc["dna_input_ids"], enc["dna_attention_mask"])
        logp = rl.shared_prefix_logprobs(model, enc["input_ids"], enc["attention_mask"], cont, cmask, 2, feats,
                                         prefix_len=prefix_len)
        logp.sum().backward()
        grads.append((logp.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]))
    model.eval()
    assert torch.allclose(grads[0][0], grads[1][0], atol=1e-4)
    assert len(grads[0][1]) == len(grads[1][1]) > 0
    assert all(torch.allclose(a, b, atol=1e-4) for a, b in zip(grads[0][1], grads[1][1]))


def test_own_token_scores_leave_out_a_long_shared_prefix(tiny_session):
    """After a long answer prefix (a generated trace), ``own_tokens`` means each candidate's mean log-probability
    over its own tokens only, as a full forward gives them; the plain normalised score averages in the prefix."""
    from bioreason.processing import user_message

    model, proc = tiny_session
    prompts = [[user_message("q", ["ACGT" * 10])]]
    lead = "<think>\nThe variant is C>T in KRAS.\nStep 1: a long trace of many words.\n</think>\n\nAnswer: "
    names = ["melanoma", "thyroid cancer", "prion disease"]
    own = score_candidates(model, proc, prompts, names, answer_prefix=lead, normalise=True, own_tokens=True)[0]
    mixed = score_candidates(model, proc, prompts, names, answer_prefix=lead, normalise=True)[0]
    ids = [proc.tokenizer(lead + n, add_special_tokens=False)["input_ids"] for n in names]
    shared = next(i for i in range(min(map(len, ids))) if len({tuple(x[:i + 1]) for x in ids}) > 1)
    assert shared >= len(proc.tokenizer(lead, add_special_tokens=False)["input_ids"]) - 1
    for k, name in enumerate(names):
        enc = proc([prompts[0] + [{"role": "assistant", "content": lead + name}]])
        with torch.no_grad():
            logits = model(**enc).logits[0, :-1]
        lp = torch.log_softmax(logits, -1).gather(-1, enc["input_ids"][0, 1:, None]).squeeze(-1)
        answer = lp[enc["labels"][0, 1:] != -100]  # the assistant's tokens, then the end of the turn
        n_own = len(ids[k]) - shared + 1
        assert n_own >= 2 and own[k].item() == pytest.approx(answer[-n_own:].mean().item(), abs=1e-5)
        assert mixed[k].item() == pytest.approx(answer.mean().item(), abs=1e-5)
        assert abs(own[k].item() - mixed[k].item()) > 1e-3
