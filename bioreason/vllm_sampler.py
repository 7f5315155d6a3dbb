"""Optional vLLM sampling backend for GRPO on GPUs (``grpo.sampler: vllm``), imported lazily, never required.

vLLM runs the language model only; the DNA path stays ours. For each prompt our model builds the input
embeddings (text embeddings with the projected DNA features merged in, ``DNALLMForCausalLM.embed``) and vLLM
samples the G completions of the group from them (``prompt_embeds``, vLLM >= 0.10 started with
``enable_prompt_embeds=True``), so the DNA is encoded once per prompt here too. The engine starts from the
policy's LLM weights (LoRA merged in, written once to a temporary folder); before sampling after each optimiser
step, ``sync`` pushes the current merged weights into the engine (``load_weights``), so completions always come
from the current policy. The result has the layout of ``bioreason.sampling.sample_groups`` (the processor's
left-padded prompts, completion ids padded with the pad token, a mask up to and including the first end of turn),
so the GRPO loss does not change. ``merged_llm_weights`` (the weights to push) is tested on CPU; the engine calls
themselves need a GPU with vLLM installed and are not exercised by this project's tests.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import torch

from bioreason.errors import MissingDependencyError, RecipeError
from bioreason.modeling import is_fsdp, merged_lora, unwrap_dna_llm
from bioreason.sampling import Samples, completion_mask


def merged_llm_weights(model) -> dict[str, torch.Tensor]:
    """The LLM's weights with any LoRA adapter merged in, under the plain transformers names, as CPU copies.

    The model is left exactly as it was (``modeling.merged_lora``)."""
    if is_fsdp(model):
        raise RecipeError("grpo.sampler=vllm cannot take its weights from an FSDP-sharded model (each rank holds "
                          "shards); train with DeepSpeed ZeRO-2 (training/recipes/accelerate_deepspeed_zero2.yaml) "
                          "or plain data parallel instead")
    with merged_lora(model):
        out = {}
        for name, p in unwrap_dna_llm(model).language_model.state_dict().items():
            if "lora_" in name:
                continue
            out[name.replace(".base_layer.", ".")] = p.detach().to("cpu", copy=True)
        return out


def prompt_embeddings(model, processor, prompts: list[list[dict]]):
    """(processor output with left padding, [one (T_i, H) embedding tensor per prompt, padding removed])."""
    inner = unwrap_dna_llm(model)
    device = next(inner.parameters()).device
    enc = processor(prompts, padding_side="left")
    with torch.no_grad():
        emb = inner.embed(enc["input_ids"].to(device), enc["dna_input_ids"].to(device),
                          enc["dna_attention_mask"].to(device))
    keep = enc["attention_mask"].bool()
    return enc, [emb[i, keep[i].to(device)] for i in range(emb.shape[0])]


class VLLMSampler:
    """G completions per prompt from a vLLM engine that holds a copy of the policy's LLM."""

    def __init__(self, model, processor, gpu_memory_utilization: float = 0.3, seed: int = 0):
        try:
            import vllm
        except ImportError as exc:
            raise MissingDependencyError("grpo.sampler=vllm needs vLLM on a CUDA machine: pip install 'vllm>=0.10' "
                                         "(or use grpo.sampler=hf, the default)") from exc
        from transformers import AutoModelForCausalLM

        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # engine in this process: weights can be pushed
        self.vllm, self.proc = vllm, processor
        inner = unwrap_dna_llm(model)
        self.folder = tempfile.mkdtemp(prefix="bioreason-vllm-")
        plain = AutoModelForCausalLM.from_config(inner.config.text_config)
        plain.load_state_dict(merged_llm_weights(model), strict=False)
        plain.save_pretrained(self.folder)
        processor.tokenizer.save_pretrained(self.folder)
        del plain
        self.llm = vllm.LLM(model=self.folder, enable_prompt_embeds=True, dtype="bfloat16", seed=seed,
                            gpu_memory_utilization=gpu_memory_utilization)
        self.synced_step = 0

    def _engine_model(self):
        engine = self.llm.llm_engine
        for path in ("model_executor.driver_worker.worker.model_runner.model",
                     "model_executor.driver_worker.model_runner.model"):
            obj = engine
            try:
                for attr in path.split("."):
                    obj = getattr(obj, attr)
                return obj
            except AttributeError:
                continue
        raise RuntimeError("cannot reach the vLLM engine's model to push weights (vLLM layout changed); "
                           "use grpo.sampler=hf")

    def sync(self, model, step: int) -> None:
        """Push the policy's current merged weights into the engine, once per optimiser step."""
        if step == self.synced_step:
            return
        self._engine_model().load_weights(list(merged_llm_weights(model).items()))
        self.synced_step = step

    def sample(self, model, prompts, group: int, max_new_tokens: int = 64, temperature: float = 1.0,
               top_p: float = 1.0, do_sample: bool = True) -> Samples:
        tok = self.proc.tokenizer
        enc, embeds = prompt_embeddings(model, self.proc, prompts)
        params = self.vllm.SamplingParams(n=group, max_tokens=max_new_tokens, top_p=top_p,
                                          temperature=temperature if do_sample else 0.0)
        outputs = self.llm.generate([{"prompt_embeds": e.to(torch.bfloat16).cpu()} for e in embeds], params,
                                    use_tqdm=False)
        rows = []
        for out in outputs:
            for c in out.outputs:
                ids = list(c.token_ids)
                if c.finish_reason == "stop" and (not ids or ids[-1] != tok.eos_token_id):
                    ids.append(tok.eos_token_id)
                rows.append(ids or [tok.eos_token_id])
        return pack_completions(rows, tok.pad_token_id, tok.eos_token_id, enc, tok)

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def pack_completions(rows: list[list[int]], pad_id: int, eos_id: int, enc: dict, tok) -> Samples:
    """Token-id lists -> ``Samples``: right-padded ids and a mask over each row's own tokens (to its first end)."""
    width = max(len(r) for r in rows)
    comp = torch.full((len(rows), width), pad_id, dtype=torch.long)
    own = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        comp[i, :len(r)] = torch.tensor(r, dtype=torch.long)
        own[i, :len(r)] = 1
    cmask = completion_mask(comp, eos_id) * own
    comp = torch.where(cmask.bool(), comp, torch.full_like(comp, pad_id))
    return Samples(comp, cmask, tok.batch_decode(comp, skip_special_tokens=True), enc)
