"""``bioreason.attention``: the few-query path, fp32 prefills and the training blocks give sdpa's attention
(grouped-query heads, bool and additive masks, padded rows, a row with no key, queries on a cache), with sdpa's
gradients; bf16 inference goes to sdpa untouched, and a model switched to it scores, decodes and trains as with
sdpa."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch

from bioreason.attention import MAX_QUERIES, NAME, TRAIN_SWITCH, few_query_attention, use_few_query_attention


def _reference(query, key, value, mask):
    """sdpa on keys and values repeated per query head, as transformers' eager layout has them."""
    g = query.shape[1] // key.shape[1]
    out = torch.nn.functional.scaled_dot_product_attention(
        query, key.repeat_interleave(g, 1), value.repeat_interleave(g, 1), attn_mask=mask)
    return out.transpose(1, 2)


@pytest.mark.parametrize("queries,kind", [(1, "bool"), (3, "bool"), (12, "bool"), (1, "additive"),
                                          (12, "additive"), (1, "none")])  # no mask: a decode step attends to all
def test_few_query_attention_equals_sdpa(queries, kind):
    torch.manual_seed(queries)
    B, H, Hk, L, D = 3, 6, 2, 20, 8
    query, key, value = torch.randn(B, H, queries, D), torch.randn(B, Hk, L, D), torch.randn(B, Hk, L, D)
    keep = torch.ones(B, 1, queries, L, dtype=torch.bool)
    keep[0, :, :, :5] = False  # a left-padded row
    keep[1, :, :, -2:] = False  # columns not written yet
    mask = {"bool": keep, "additive": torch.zeros(keep.shape).masked_fill(~keep, float("-inf")), "none": None}[kind]
    module = SimpleNamespace(training=False, num_key_value_groups=H // Hk)
    got, _ = few_query_attention(module, query, key, value, mask)
    assert got.shape == (B, queries, H, D)
    torch.testing.assert_close(got, _reference(query, key, value, mask), atol=2e-6, rtol=1e-5)


def test_a_row_with_no_key_is_finite_and_others_are_unaffected():
    torch.manual_seed(0)
    query, key, value = torch.randn(2, 4, 1, 8), torch.randn(2, 2, 10, 8), torch.randn(2, 2, 10, 8)
    keep = torch.ones(2, 1, 1, 10, dtype=torch.bool)
    keep[0] = False  # a finished slot's row
    got, _ = few_query_attention(SimpleNamespace(training=False), query, key, value, keep)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got[1:], _reference(query[1:], key[1:], value[1:], keep[1:]), atol=2e-6, rtol=1e-5)


@pytest.mark.parametrize("cached", [0, 7])
@pytest.mark.parametrize("kind", ["left-padded", "after-prefix", "none"])
def test_a_prefill_by_blocks_equals_sdpa(kind, cached, monkeypatch):
    """An fp32 inference prefill (more than MAX_QUERIES queries) by query blocks: sdpa's causal attention, with left
    padding, with the padding between a cached prefix and the rest (``rl.prefill``), or with no mask at all."""
    import transformers.integrations.sdpa_attention as sdpa

    from bioreason import attention

    monkeypatch.setattr(sdpa, "sdpa_attention_forward", None)  # not called

    torch.manual_seed(cached)
    B, H, Hk, L, D = 3, 6, 2, 150, 8
    Q = L - cached
    query, key, value = torch.randn(B, H, Q, D), torch.randn(B, Hk, L, D), torch.randn(B, Hk, L, D)
    keep = torch.ones(L, L, dtype=torch.bool).tril()[cached:].expand(B, 1, Q, L).clone()
    pad = {"left-padded": slice(0, 20), "after-prefix": slice(10, 30), "none": slice(0, 0)}[kind]
    keep[0, :, :, pad] = False
    keep[0, :, range(Q), range(cached, L)] = True  # a padded query sees itself (sdpa_mask's rows are never empty)
    module = SimpleNamespace(training=False, is_causal=True, num_key_value_groups=H // Hk)
    got, _ = few_query_attention(module, query, key, value, None if kind == "none" else keep)
    assert Q > MAX_QUERIES and attention.PREFILL_BLOCK and Q > 2 * attention.PREFILL_BLOCK  # several blocks
    torch.testing.assert_close(got, _reference(query, key, value, keep), atol=2e-6, rtol=1e-5)


@pytest.mark.parametrize("case", ["prefill", "training", "bf16"])
def test_everything_else_goes_to_sdpa_unchanged(case, monkeypatch):
    import transformers.integrations.sdpa_attention as sdpa

    from bioreason import attention

    calls = []
    monkeypatch.setattr(sdpa, "sdpa_attention_forward", lambda *a, **k: calls.append(a) or ("sdpa", None))
    monkeypatch.setattr(attention, "PREFILL_BLOCK", None)  # prefills to sdpa
    q = MAX_QUERIES + 1 if case == "prefill" else 2
    dtype = torch.bfloat16 if case == "bf16" else torch.float32
    module = SimpleNamespace(training=case == "training", is_causal=case == "prefill", num_key_value_groups=2)
    out = few_query_attention(module, torch.randn(1, 4, q, 8, dtype=dtype), torch.randn(1, 2, 30, 8, dtype=dtype),
                              torch.randn(1, 2, 30, 8, dtype=dtype), torch.ones(1, 1, q, 30, dtype=torch.bool))
    assert out[0] == "sdpa" and len(calls) == 1


def test_a_model_switched_to_it_scores_and_decodes_as_with_sdpa(tiny_session, monkeypatch):
    from bioreason.modeling import unwrap_dna_llm
    from bioreason.processing import user_message
    from bioreason.rl import score_candidates
    from bioreason.sampling import sample_groups

    from bioreason import attention

    model, proc = tiny_session
    seen = []

    def spy(module, query, *args, **kwargs):
        seen.append(query.shape[2])
        return few_query_attention(module, query, *args, **kwargs)

    monkeypatch.setattr(attention, "few_query_attention", spy)  # what register() hands transformers
    fast = copy.deepcopy(model).eval()
    assert use_few_query_attention(fast)
    assert unwrap_dna_llm(fast).language_model.config._attn_implementation == NAME
    assert unwrap_dna_llm(model).language_model.config._attn_implementation == "sdpa"
    prompts = [[user_message("q", ["ACGT" * 10])], [user_message("a longer question", ["ACGT" * 30, "AC"])]]
    with torch.inference_mode():
        want = score_candidates(model.eval(), proc, prompts, ["LOF", "LOF gain", "FUNC"])
        got = score_candidates(fast, proc, prompts, ["LOF", "LOF gain", "FUNC"])
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
        a = sample_groups(model, proc, prompts, 1, 10, do_sample=False, slots=1).completion_ids
        b = sample_groups(fast, proc, prompts, 1, 10, do_sample=False, slots=1).completion_ids
    assert torch.equal(a, b)
    assert 1 in seen and any(1 < q <= MAX_QUERIES for q in seen) and any(q > MAX_QUERIES for q in seen)
    monkeypatch.undo()
    attention.register()  # the real function again, for the rest of the session


@pytest.mark.parametrize("kind", ["none", "right-padded", "additive"])
@pytest.mark.parametrize("block", [7, 160])  # 3 query blocks of a 20-position sequence, and one
@pytest.mark.parametrize("cached", [0, 9])  # a whole sequence, or its last 11 positions on a cache of the first 9
def test_training_blocks_equal_sdpa_with_gradients(kind, block, cached):
    """Training's attention (query blocks reading only the keys before them) gives sdpa's causal attention and the
    same gradients for query, keys and values, on every position a right-padded row's loss can reach; also for the
    last positions of a sequence on the keys of its first (GRPO's completions on their prompts' cache)."""
    from bioreason.attention import grouped_attention

    torch.manual_seed(block + cached)
    B, H, Hk, L, D = 2, 6, 2, 20, 8
    Q = L - cached
    q = torch.randn(B, H, Q, D, requires_grad=True)
    k, v = (torch.randn(B, Hk, L, D, requires_grad=True) for _ in range(2))
    causal = torch.ones(L, L, dtype=torch.bool).tril()[cached:]  # (Q, L): query i is position cached + i
    keep = causal.expand(B, 1, Q, L).clone()
    keep[1, :, :, 15:] = False  # row 1 padded on the right from position 15
    mask = {"none": None, "right-padded": keep,
            "additive": torch.zeros(keep.shape).masked_fill(~keep, torch.finfo(torch.float32).min)}[kind]
    got = grouped_attention(q, k, v, mask, block=block)
    want = _reference(q, k, v, causal if mask is None else mask)
    valid = torch.ones(B, Q, 1, 1)
    if kind != "none":
        valid[1, 15 - cached:] = 0  # a padded query's output is never read
    torch.testing.assert_close(got * valid, want * valid, atol=2e-6, rtol=1e-5)
    grads = [torch.autograd.grad((out * valid).square().sum(), (q, k, v)) for out in (got, want)]
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_training_blocks_under_autocast_compute_in_bf16():
    """Under CPU autocast the LLM hands fp32 queries (rotary embedding in fp32) and bf16 values: scores, weights and
    output come out bf16, within bf16's rounding of the fp32 result."""
    from bioreason.attention import grouped_attention

    torch.manual_seed(1)
    q, k = torch.randn(2, 6, 40, 8), torch.randn(2, 2, 40, 8)
    v = torch.randn(2, 2, 40, 8)
    keep = torch.ones(40, 40, dtype=torch.bool).tril().expand(2, 1, 40, 40).clone()
    keep[0, :, :, 30:] = False
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = grouped_attention(q, k, v.bfloat16(), keep, block=16)
    assert got.dtype == torch.bfloat16
    want = _reference(q, k, v, keep)
    torch.testing.assert_close(got[1].float(), want[1], atol=0.05, rtol=0.05)
    torch.testing.assert_close(got[0, :30].float(), want[0, :30], atol=0.05, rtol=0.05)


def test_a_training_pass_takes_the_blocks_unless_switched_off(monkeypatch):
    import transformers.integrations.sdpa_attention as sdpa

    calls = []
    monkeypatch.setattr(sdpa, "sdpa_attention_forward", lambda *a, **k: calls.append(a) or ("sdpa", None))
    module = SimpleNamespace(training=True, is_causal=True, num_key_value_groups=2)
    for dtype in (torch.float32, torch.bfloat16):
        for queries in (30, 20):  # a whole sequence; its last 20 positions on a cache of the first 10
            q, kv = torch.randn(1, 4, queries, 8, dtype=dtype), torch.randn(1, 2, 30, 8, dtype=dtype)
            out, _ = few_query_attention(module, q, kv, kv, None)
            assert out.shape == (1, queries, 4, 8) and out.dtype == dtype and not calls
    setattr(module, TRAIN_SWITCH, False)  # train.cpu_attention=sdpa
    out = few_query_attention(module, torch.randn(1, 4, 30, 8), kv.float(), kv.float(), None)
    assert out[0] == "sdpa" and len(calls) == 1


def test_a_model_switched_to_it_trains_as_with_sdpa(tiny_session):
    """The tiny model in training mode on a right-padded SFT batch: the blocks' loss and gradients are sdpa's."""
    from bioreason.kegg_data.toy import toy_examples
    from bioreason.modeling import unwrap_dna_llm
    from bioreason.training.sft import SFTStep

    model, proc = tiny_session
    batch = SFTStep(proc, None).prepare(toy_examples(n=3, seed=2))
    assert not batch.inputs["attention_mask"].all()  # rows of different lengths, padded

    def sft_pass(m):
        loss, _ = SFTStep(proc, None).loss(m, batch)
        return loss, loss

    _assert_trains_as_with_sdpa(model, sft_pass)
    assert unwrap_dna_llm(model).language_model.config._attn_implementation == "sdpa"


def _assert_trains_as_with_sdpa(model, pass_):
    """``pass_(m)`` -> (values to compare, scalar to backpropagate), run in training mode on ``model`` (sdpa) and on
    a copy switched to ``bioreason_sdpa``: the values and every parameter's gradient agree."""
    fast = copy.deepcopy(model)
    assert use_few_query_attention(fast)
    results = []
    for m in (model, fast):
        m.train()
        m.zero_grad()
        values, loss = pass_(m)
        loss.backward()
        results.append((values.detach(), {n: p.grad for n, p in m.named_parameters() if p.grad is not None}))
    model.zero_grad()
    model.eval()
    (v0, g0), (v1, g1) = results
    torch.testing.assert_close(v1, v0, atol=1e-5, rtol=1e-5)
    assert g0.keys() == g1.keys() and g0
    for n in g0:
        torch.testing.assert_close(g1[n], g0[n], atol=1e-5, rtol=1e-4)


def test_grpo_passes_on_the_prompts_cache_train_as_with_sdpa(tiny_session):
    """GRPO's loss pass (prompts after their shared prefix on its cache, then completions on the prompts' cache,
    both with fewer queries than keys): the blocks' log-probs and gradients are sdpa's."""
    from bioreason import rl
    from bioreason.processing import user_message

    model, proc = tiny_session
    prompts = [[user_message("Which gene is it?", ["ACGTTGCA" * 6])], [user_message("And here?", ["GGCATT" * 5])]]
    enc = proc(prompts, padding_side="left")
    prefix = proc.prefix_len(prompts, enc)
    assert prefix > 1 and not enc["attention_mask"].all()  # a shared prefix, and a left-padded row
    torch.manual_seed(0)
    cont = torch.randint(5, 100, (4, 6))
    cmask = torch.ones_like(cont)
    cmask[1, 4:] = 0  # a completion that ended early

    def grpo_pass(m):
        feats = m.get_dna_features(enc["dna_input_ids"], enc["dna_attention_mask"])
        logp = rl.shared_prefix_logprobs(m, enc["input_ids"], enc["attention_mask"], cont, cmask, 2, feats,
                                         prefix_len=prefix) * cmask
        return logp, logp.sum()

    _assert_trains_as_with_sdpa(model, grpo_pass)
