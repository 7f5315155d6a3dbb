"""DNALLMForCausalLM on a tiny random config: shapes, the merge check, generation, save/load, LoRA, freezing."""

from __future__ import annotations

import pytest
import torch

from bioreason.errors import PlaceholderCountError
from bioreason.processing import user_message


def _batch(proc, seqs=("ACGT" * 40, "ACGA" * 40), answer="<think>x</think>\nAnswer: benign"):
    conv = [user_message("Is this variant pathogenic?", list(seqs)), {"role": "assistant", "content": answer}]
    return proc([conv, [user_message("Why?", ["ACGTTT" * 10]), {"role": "assistant", "content": "Answer: no"}]])


def test_forward_backward_shapes(tiny):
    model, proc = tiny
    model.train()
    b = _batch(proc)
    out = model(**b)
    assert out.logits.shape == (*b["input_ids"].shape, model.config.text_config.vocab_size)
    out.loss.backward()
    assert model.projector.linear_1.weight.grad.abs().sum() > 0
    assert model.dna_encoder.embeddings.weight.grad is None  # frozen by default: no gradient computed


def test_encoder_gets_gradients_when_trainable(tiny):
    model, proc = tiny
    model.set_trainable(encoder=True, llm=False, projector=True)
    model(**_batch(proc)).loss.backward()
    assert model.dna_encoder.embeddings.weight.grad.abs().sum() > 0


def test_placeholder_mismatch_names_both_counts(tiny):
    model, proc = tiny
    b = _batch(proc)
    b["dna_input_ids"] = b["dna_input_ids"][:2]
    b["dna_attention_mask"] = b["dna_attention_mask"][:2]
    with pytest.raises(PlaceholderCountError, match=r"24 DNA placeholder tokens but the DNA gives 20"):
        model(**b)


def test_pooling_counts_match_processor():
    from bioreason.tiny import build_tiny

    for pooling in ("mean", "attention"):
        model, proc = build_tiny(pooling=pooling, pool_stride=16)
        assert proc.num_placeholders(1024) == 64
        assert proc.num_placeholders(1000) == 63
        b = proc([[user_message("q", ["A" * 1024, "C" * 1000, "G" * 17])]])
        feats = model.get_dna_features(b["dna_input_ids"], b["dna_attention_mask"])
        assert feats.shape == (64 + 63 + 2, 32)
        assert int((b["input_ids"] == proc.dna_pad_id).sum()) == feats.shape[0]


def test_mean_pool_ignores_padding(tiny):
    model, proc = tiny
    alone = proc.dna_tokenizer(["ACGTACGTAC"])
    padded = proc.dna_tokenizer(["ACGTACGTAC", "A" * 100])
    with torch.no_grad():
        a = model.get_dna_features(alone["input_ids"], alone["attention_mask"])
        b = model.get_dna_features(padded["input_ids"], padded["attention_mask"])
    assert torch.allclose(a[0], b[0], atol=1e-6)


def test_generate_equals_stepwise_greedy(tiny):
    model, proc = tiny
    inputs = proc([[user_message("What is this?", ["ACGT" * 30, "TTGA" * 20])]])
    with torch.no_grad():
        gen = model.generate(**inputs, max_new_tokens=12, do_sample=False, eos_token_id=None,
                             pad_token_id=proc.tokenizer.pad_token_id)
        ids = inputs["input_ids"]
        feats = model.get_dna_features(inputs["dna_input_ids"], inputs["dna_attention_mask"])
        for _ in range(12):  # no cache: full forward each step, DNA merged each time
            logits = model(input_ids=ids, attention_mask=torch.ones_like(ids), dna_features=feats).logits
            ids = torch.cat([ids, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert gen.tolist() == ids.tolist()


def test_batched_left_padded_generation_matches_single(tiny):
    model, proc = tiny
    convs = [[user_message("Short?", ["ACGT" * 5])], [user_message("A longer question here?", ["TTGA" * 40])]]
    kw = dict(max_new_tokens=6, do_sample=False, eos_token_id=None, pad_token_id=proc.tokenizer.pad_token_id)
    with torch.no_grad():
        both = model.generate(**proc(convs), **kw)[:, -6:]
        one = model.generate(**proc(convs[:1]), **kw)[:, -6:]
    assert both[0].tolist() == one[0].tolist()


def test_save_load_round_trip_identical_logits(tiny, tmp_path):
    from bioreason.modeling import DNALLMForCausalLM
    from bioreason.processing import DNALLMProcessor

    model, proc = tiny
    b = _batch(proc)
    model.save_pretrained(tmp_path)
    proc.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    again = DNALLMForCausalLM.from_pretrained(tmp_path).eval()
    proc2 = DNALLMProcessor.from_pretrained(tmp_path)
    b2 = _batch(proc2)
    assert torch.equal(b["input_ids"], b2["input_ids"])
    with torch.no_grad():
        assert torch.equal(model(**b).logits, again(**b2).logits)


def test_auto_classes_resolve(tiny, tmp_path):
    from transformers import AutoConfig, AutoModelForCausalLM

    from bioreason.modeling import DNALLMForCausalLM

    model, _ = tiny
    model.save_pretrained(tmp_path)
    assert type(AutoConfig.from_pretrained(tmp_path)).__name__ == "DNALLMConfig"
    assert isinstance(AutoModelForCausalLM.from_pretrained(tmp_path), DNALLMForCausalLM)


def test_lora_wraps_and_one_step_lowers_loss(tiny):
    pytest.importorskip("peft")
    from bioreason.modeling import apply_lora

    model, proc = tiny
    peft_model = apply_lora(model, r=4, alpha=8, dropout=0.0)
    trainable = {n for n, p in peft_model.named_parameters() if p.requires_grad}
    assert any("lora_A" in n for n in trainable) and any("projector" in n for n in trainable)
    assert not any("dna_encoder" in n for n in trainable)
    assert not any("lora" not in n and "language_model" in n for n in trainable)
    peft_model.train()
    b = _batch(proc)
    opt = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-2)
    before = peft_model(**b).loss
    before.backward()
    opt.step()
    with torch.no_grad():
        after = peft_model(**b).loss
    assert after.item() < before.item()
    with peft_model.disable_adapter(), torch.no_grad():  # the reference policy: same weights, adapter off
        assert peft_model(**b).loss.item() != pytest.approx(after.item())


def test_group_sampling_with_shared_prefix_equals_plain_generate(tiny):
    from bioreason.sampling import sample_groups

    model, proc = tiny
    torch.manual_seed(3)
    with torch.no_grad():  # a random tiny model repeats one token; larger weights make its continuations vary
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    prompts = [[user_message("What is this?", ["ACGT" * 30, "TTGA" * 20])], [user_message("Short?", ["ACGT" * 5])]]
    s = sample_groups(model, proc, prompts, 3, 12, do_sample=False)
    enc = proc(prompts)
    with torch.no_grad():
        plain = model.generate(**enc, max_new_tokens=12, do_sample=False, eos_token_id=proc.tokenizer.eos_token_id,
                               pad_token_id=proc.tokenizer.pad_token_id)[:, enc["input_ids"].shape[1]:]
    assert len(set(plain[0].tolist())) > 1  # a non-degenerate continuation, so the comparison means something
    for b in range(2):
        for g in range(3):
            row = s.completion_ids[b * 3 + g]
            n = int(s.completion_mask[b * 3 + g].sum())
            assert row[:n].tolist() == plain[b, :n].tolist()


def _lora(seed: int):
    from bioreason.modeling import apply_lora
    from bioreason.tiny import build_tiny

    model, proc = build_tiny(seed=seed)
    peft = apply_lora(model, r=4, alpha=8, dropout=0.0)
    torch.manual_seed(seed)
    with torch.no_grad():  # a non-zero adapter and larger weights, so merging and continuations both matter
        for name, p in peft.named_parameters():
            p.add_(torch.randn_like(p) * (0.5 if "lora_B" in name else 0.3))
    return peft.eval(), proc


def test_merged_lora_restores_bf16_weights_bit_for_bit():
    """Merging then subtracting the update again loses bits in bf16; ``merged_lora`` restores from copies."""
    from bioreason.modeling import merged_lora

    peft, _ = _lora(5)
    peft.to(torch.bfloat16)
    before = {k: v.clone() for k, v in peft.state_dict().items()}
    ids = torch.randint(5, 60, (2, 7))
    with torch.no_grad():
        want = peft(input_ids=ids).logits.float()
        with merged_lora(peft):
            inside = {k: v for k, v in peft.state_dict().items() if "base_layer" in k}
            assert any(not torch.equal(inside[k], before[k]) for k in inside)  # really merged
            got = peft(input_ids=ids).logits.float()
        assert (got - want).abs().max() < 0.1 * want.abs().max()  # same model, up to bf16 rounding
    assert all(torch.equal(v, before[k]) for k, v in peft.state_dict().items())
    assert not any(getattr(m, "merged", False) for m in peft.modules())
    peft.merge_adapter()  # the plain round trip drifts, so the check above means something
    peft.unmerge_adapter()
    assert any(not torch.equal(v, before[k]) for k, v in peft.state_dict().items())


def test_lora_group_sampling_equals_generate_with_the_unmerged_adapter():
    from bioreason.sampling import sample_groups

    peft, proc = _lora(6)
    prompts = [[user_message("What is this?", ["ACGT" * 30])], [user_message("Short?", ["TTGA" * 5])]]
    before = {k: v.clone() for k, v in peft.state_dict().items()}
    s = sample_groups(peft, proc, prompts, 2, 10, do_sample=False)
    assert all(torch.equal(v, before[k]) for k, v in peft.state_dict().items())
    enc = proc(prompts)
    with torch.no_grad():
        plain = peft.generate(**enc, max_new_tokens=10, do_sample=False, eos_token_id=proc.tokenizer.eos_token_id,
                              pad_token_id=proc.tokenizer.pad_token_id)[:, enc["input_ids"].shape[1]:]
    assert len(set(plain[0].tolist())) > 1
    for row in range(4):
        n = int(s.completion_mask[row].sum())
        assert n > 0 and s.completion_ids[row, :n].tolist() == plain[row // 2, :n].tolist()


def test_group_sampling_with_an_answer_prefix_continues_it(tiny):
    """``prefix`` is fed after the generation prompt: the completion equals generate() on prompt + prefix, and
    the text starts with the prefix (how ``predict --traces`` makes a model that learned empty thinks reason)."""
    from bioreason.sampling import sample_groups

    model, proc = tiny
    torch.manual_seed(4)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    prompts = [[user_message("What is this?", ["ACGT" * 30])]]
    prefix = "<think>\nThe"
    s = sample_groups(model, proc, prompts, 1, 8, do_sample=False, prefix=prefix)
    enc = proc(prompts)
    pre = torch.tensor([proc.tokenizer(prefix, add_special_tokens=False)["input_ids"]])
    ids = torch.cat([enc["input_ids"], pre], 1)
    with torch.no_grad():
        plain = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), dna_input_ids=enc["dna_input_ids"],
                               dna_attention_mask=enc["dna_attention_mask"], max_new_tokens=8, do_sample=False,
                               eos_token_id=proc.tokenizer.eos_token_id,
                               pad_token_id=proc.tokenizer.pad_token_id)[:, ids.shape[1]:]
    n = int(s.completion_mask[0].sum())
    assert s.completion_ids[0, :n].tolist() == plain[0, :n].tolist() and n > 0
    assert s.texts[0].startswith(prefix)
    unprefixed = sample_groups(model, proc, prompts, 1, 8, do_sample=False)
    assert unprefixed.completion_ids[0].tolist() != s.completion_ids[0].tolist()
    from bioreason.inference import stream_answer

    pieces = list(stream_answer(model, proc, prompts[0], prefix=prefix, max_new_tokens=8))
    assert pieces[0] == prefix and "".join(pieces).replace(" ", "") == s.texts[0].replace(" ", "")
    # budget forcing: a trace cut at the cap is closed and answered, the same way by both decoders
    cut = sample_groups(model, proc, prompts, 1, 3, do_sample=False, prefix=prefix)
    forced = sample_groups(model, proc, prompts, 1, 3, do_sample=False, prefix=prefix, answer_tokens=4)
    assert cut.forced == [False] and forced.forced == [True] and "Answer:" not in cut.texts[0]
    head, tail = forced.texts[0].split("\n</think>\n\nAnswer:")
    closing = len(proc.tokenizer("\n</think>\n\nAnswer:", add_special_tokens=False)["input_ids"])
    assert head == cut.texts[0] and 3 + closing < int(forced.completion_mask[0].sum()) <= 3 + closing + 4
    streamed = list(stream_answer(model, proc, prompts[0], prefix=prefix, max_new_tokens=3, answer_tokens=4))
    assert "\n</think>\n\nAnswer:" in "".join(streamed)  # streamed as its tokens come, like the rest
    assert "".join(streamed).replace(" ", "") == forced.texts[0].replace(" ", "")
    assert "Answer:" not in "".join(stream_answer(model, proc, prompts[0], prefix=prefix, max_new_tokens=3))


@pytest.mark.parametrize("temperature,top_p", [(1.0, 1.0), (0.5, 1.0), (1.0, 0.7)])
def test_inverse_cdf_sampler_draws_from_the_same_distribution_as_transformers(temperature, top_p):
    """The sampler's frequencies match softmax(logits / T) inside transformers' own top-p nucleus; suppressed
    (-inf) tokens and tokens outside the nucleus are never drawn."""
    from transformers import TemperatureLogitsWarper, TopPLogitsWarper

    from bioreason.sampling import InverseCDFSampler

    torch.manual_seed(0)
    logits = torch.tensor([[2.0, 1.0, 0.5, float("-inf"), -1.0, 0.0, 1.5]])
    want = TemperatureLogitsWarper(temperature)(None, logits.clone())
    if top_p < 1.0:
        want = TopPLogitsWarper(top_p)(None, want)
    want = torch.softmax(want, -1)[0]
    n = 40_000
    out = InverseCDFSampler(temperature, top_p)(None, logits.expand(n, -1).clone())
    assert ((out == 0).sum(-1) == 1).all() and (out[out != 0] == float("-inf")).all()
    freq = torch.bincount(out.argmax(-1), minlength=logits.shape[1]).float() / n
    assert freq[want == 0].sum() == 0 and freq[3] == 0
    assert (freq - want).abs().max() < 0.01, (freq, want)


def test_inverse_cdf_sampler_rejects_settings_that_do_not_sample():
    from bioreason.sampling import InverseCDFSampler

    for t, p in ((0.0, 1.0), (-1.0, 1.0), (1.0, 0.0), (1.0, 1.5)):
        with pytest.raises(ValueError, match=f"temperature={t}, top_p={p}"):
            InverseCDFSampler(t, p)
