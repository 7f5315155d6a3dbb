"""The parts of the vLLM sampler that run without a GPU: the merged weights it pushes to the engine, the prompt
embeddings it feeds it, the packing of its outputs, and the error when vLLM is missing."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from bioreason.errors import MissingDependencyError
from bioreason.modeling import apply_lora
from bioreason.tiny import build_tiny
from bioreason.vllm_sampler import merged_llm_weights, pack_completions, prompt_embeddings


@pytest.fixture()
def lora_model():
    model, proc = build_tiny(seed=3)
    peft = apply_lora(model, r=4, alpha=8, dropout=0.0)
    with torch.no_grad():  # a non-zero adapter, so merging changes the weights
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    return peft.eval(), proc


def test_merged_weights_give_the_adapted_llm_and_leave_the_model_alone(lora_model):
    from transformers import AutoModelForCausalLM

    peft, _ = lora_model
    inner = peft.get_base_model()
    ids = torch.randint(5, inner.config.text_config.vocab_size, (2, 9))
    with torch.no_grad():
        want = inner.language_model(input_ids=ids).logits
        weights = merged_llm_weights(peft)
        plain = AutoModelForCausalLM.from_config(inner.config.text_config)
        missing = plain.load_state_dict(weights, strict=False)
        assert not missing.unexpected_keys and not [k for k in missing.missing_keys if "lm_head" not in k]
        got = plain.eval()(input_ids=ids).logits
        assert torch.allclose(got, want, atol=1e-5)
        with peft.disable_adapter():  # the adapter is unmerged again: disabling it changes the output
            assert not torch.allclose(inner.language_model(input_ids=ids).logits, want, atol=1e-3)
        assert torch.allclose(inner.language_model(input_ids=ids).logits, want, atol=1e-5)


def test_prompt_embeddings_drop_padding_and_hold_the_dna(lora_model):
    peft, proc = lora_model
    inner = peft.get_base_model()
    prompts = [[{"role": "user", "content": [{"type": "dna", "sequence": "ACGT" * 16},
                                             {"type": "text", "text": "what is this?"}]}],
               [{"role": "user", "content": [{"type": "dna", "sequence": "GGCA" * 4},
                                             {"type": "text", "text": "and this much longer question here?"}]}]]
    enc, embeds = prompt_embeddings(peft, proc, prompts)
    for prompt, e in zip(prompts, embeds):
        alone = proc([prompt])
        with torch.no_grad():
            want = inner.embed(alone["input_ids"], alone["dna_input_ids"], alone["dna_attention_mask"])[0]
        assert e.shape == want.shape and torch.allclose(e, want, atol=1e-6)
    assert enc["attention_mask"][0, 0] == 0 or enc["attention_mask"][1, 0] == 0  # left padded like sample_groups


def test_pack_completions_masks_each_row_to_its_first_end(lora_model):
    _, proc = lora_model
    tok = proc.tokenizer
    eos, pad = tok.eos_token_id, tok.pad_token_id
    s = pack_completions([[7, 8, eos], [9], [10, eos, 11]], pad, eos, {}, tok)
    assert s.completion_mask.tolist() == [[1, 1, 1], [1, 0, 0], [1, 1, 0]]
    assert s.completion_ids[2, 2] == pad and len(s.texts) == 3


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
def test_vllm_sampler_without_vllm_says_how_to_install(tmp_path):
    from bioreason.recipes import load_recipe
    from bioreason.training.grpo import run as grpo

    recipe = load_recipe("tiny", [f"train.output_dir={tmp_path}", "grpo.sampler=vllm", "train.max_steps=1"])
    with pytest.raises(MissingDependencyError, match="pip install 'vllm"):
        grpo(recipe, progress=False)


def test_fsdp_sharded_models_are_not_merged_and_vllm_says_what_to_use(lora_model):
    """FSDP ranks hold weight shards: merging would corrupt them, so ``merged_lora`` leaves such a model alone and
    the vLLM sampler (which needs whole merged weights) stops with what to use instead."""
    from bioreason.errors import RecipeError
    from bioreason.modeling import merged_lora

    class FullyShardedDataParallel(torch.nn.Module):  # stands in for torch's wrapper (matched by class name)
        def __init__(self, inner):
            super().__init__()
            self.module = inner

    peft, _ = lora_model
    wrapped = FullyShardedDataParallel(peft)
    before = {k: v.clone() for k, v in peft.state_dict().items()}
    with merged_lora(wrapped):
        assert all(torch.equal(v, before[k]) for k, v in peft.state_dict().items())
    with pytest.raises(RecipeError, match="ZeRO-2"):
        merged_llm_weights(wrapped)


def test_grpo_refuses_a_temperature_that_does_not_sample(tmp_path):
    from bioreason.errors import RecipeError
    from bioreason.recipes import load_recipe
    from bioreason.training.grpo import run as grpo

    with pytest.raises(RecipeError, match=r"grpo.temperature=0: it takes a number > 0 \(GRPO samples"):
        load_recipe("tiny", [f"train.output_dir={tmp_path}", "grpo.temperature=0", "train.max_steps=1"])
    recipe = load_recipe("tiny", [f"train.output_dir={tmp_path}", "train.max_steps=1"])
    recipe["grpo"]["temperature"] = 0  # a recipe built in code, past load_recipe's checks: GRPO itself refuses
    with pytest.raises(RecipeError, match="temperature > 0"):
        grpo(recipe, progress=False)
