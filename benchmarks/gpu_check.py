"""GPU path check (run on a CUDA machine): the tiny model end to end on the GPU, with pass/fail lines.

Checks that the code paths tested on CPU also hold on CUDA: forward/backward in bf16, ``generate`` equal to
step-by-step greedy decoding, candidate scoring equal to a full forward pass, group sampling with a shared
prefill (also on a LoRA model, whose bf16 weights come back bit for bit; and with prompts queued for the rows
of finished ones, ``bioreason.decoding``), the inverse-CDF sampler, SFT
with the accelerate trainer in bf16 lowering the loss, GRPO steps, and variant prediction.
Prints timings. Usage: ``python benchmarks/gpu_check.py`` (exit code 1 if a check fails).
"""

from __future__ import annotations

import sys
import tempfile
import time


def main() -> int:
    import torch

    if not torch.cuda.is_available():
        print("no CUDA device: nothing to check")
        return 0
    from bioreason.processing import user_message
    from bioreason.rl import score_candidates
    from bioreason.sampling import sample_groups
    from bioreason.tiny import build_tiny

    failures = []

    def check(name, ok, detail=""):
        print(f"{'PASS' if ok else 'FAIL'} {name} {detail}")
        if not ok:
            failures.append(name)

    print(torch.__version__, torch.cuda.get_device_name(0))
    torch.backends.cuda.matmul.allow_tf32 = False  # exact-equality checks need full fp32 (cuDNN convs default to TF32)
    torch.backends.cudnn.allow_tf32 = False
    model, proc = build_tiny(seed=0)
    model = model.cuda()
    conv = [user_message("What is this?", ["ACGT" * 30, "TTGA" * 20])]
    inputs = proc([conv]).to("cuda")
    with torch.no_grad():
        gen = model.generate(**inputs, max_new_tokens=10, do_sample=False, eos_token_id=None,
                             pad_token_id=proc.tokenizer.pad_token_id)
        ids = inputs["input_ids"]
        feats = model.get_dna_features(inputs["dna_input_ids"], inputs["dna_attention_mask"])
        for _ in range(10):
            logits = model(input_ids=ids, attention_mask=torch.ones_like(ids), dna_features=feats).logits
            ids = torch.cat([ids, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    check("generate == stepwise greedy (fp32, cuda)", gen.tolist() == ids.tolist())
    prompts = [conv, [user_message("Short?", ["ACGT" * 5])]]
    scores = score_candidates(model, proc, prompts, ["pathogenic", "benign"])
    enc = proc([prompts[1] + [{"role": "assistant", "content": "<think>\n\n</think>\n\nAnswer: benign"}]]).to("cuda")
    with torch.no_grad():
        lp = torch.log_softmax(model(**enc).logits[0, :-1].float(), -1).gather(-1, enc["input_ids"][0, 1:, None])
    full = lp.squeeze(-1)[enc["labels"][0, 1:] != -100].sum().item()
    check("score_candidates == full forward (cuda)", abs(scores[1, 1].item() - full) < 1e-3,
          f"{scores[1, 1].item():.5f} vs {full:.5f}")
    with torch.no_grad():  # larger weights, so greedy continuations vary and the comparison means something
        for prm in model.parameters():
            prm.add_(torch.randn_like(prm) * 0.5)
    greedy = sample_groups(model, proc, prompts, 2, 12, do_sample=False)
    penc = proc(prompts).to("cuda")
    with torch.no_grad():
        plain = model.generate(**penc, max_new_tokens=12, do_sample=False, eos_token_id=proc.tokenizer.eos_token_id,
                               pad_token_id=proc.tokenizer.pad_token_id)[:, penc["input_ids"].shape[1]:].cpu()
    same = all(greedy.completion_ids[r].cpu()[:int(greedy.completion_mask[r].sum())].tolist() ==
               plain[r // 2, :int(greedy.completion_mask[r].sum())].tolist() for r in range(4))
    check("group sampling (shared prefill) == plain generate, left-padded batch (fp32)", same)
    refill = sample_groups(model, proc, prompts, 2, 12, do_sample=False, slots=2)
    check("slot decoder with refill (2 slots for 4 rows) gives the same greedy tokens", refill.texts == greedy.texts)
    model = model.to(torch.bfloat16)
    model.train()
    b = proc([conv + [{"role": "assistant", "content": "<think>x</think>\n\nAnswer: benign"}]]).to("cuda")
    out = model(**b)
    out.loss.backward()
    check("bf16 forward/backward on cuda", torch.isfinite(out.loss).item() and
          model.projector.linear_1.weight.grad is not None)
    model.eval()
    s = sample_groups(model, proc, prompts, 4, 16)
    check("group sampling with a shared prefill (bf16)", s.completion_ids.shape[0] == 8)

    from bioreason.recipes import load_recipe
    from bioreason.training.grpo import run as grpo
    from bioreason.training.sft import run as sft

    out_dir = tempfile.mkdtemp()
    t0 = time.perf_counter()
    _, hist, folder = sft(load_recipe("tiny", [f"train.output_dir={out_dir}/sft", "train.max_steps=60",
                                               "train.mixed_precision=bf16"]), progress=False)
    dt = time.perf_counter() - t0
    check("SFT with accelerate on cuda (bf16 autocast) lowers the loss", hist[-1]["loss"] < 0.7 * hist[0]["loss"],
          f"{hist[0]['loss']:.3f} -> {hist[-1]['loss']:.3f}, {dt / 60 * 1000:.0f} ms/step")
    _, ghist, _ = grpo(load_recipe("tiny", [f"train.output_dir={out_dir}/g", f"model.init={folder}",
                                            "train.max_steps=3", "train.batch_size=8"]), progress=False)
    check("GRPO steps on cuda", len(ghist) == 3 and all(h["completion_length"] > 0 for h in ghist),
          f"reward {[round(h['reward'], 3) for h in ghist]}")

    from bioreason.checkpoints import load_model
    from bioreason.kegg_data.variants import Variant
    from bioreason.predict import PredictConfig, VariantPredictor

    m2, p2 = load_model(folder)
    check("load_model picks cuda by default", next(m2.parameters()).device.type == "cuda")
    ref = "ACGT" * 256
    v = Variant("chrT", 513, "A", "G", None, 0, 1, "chrT", 0, 512, ref, ref[:512] + "G" + ref[513:])
    res = VariantPredictor(m2, p2, PredictConfig(traces=True, max_new_tokens=16)).predict([v, v])
    check("variant prediction with traces on cuda", len(res) == 2 and abs(sum(res[0]["probs"].values()) - 1) < 1e-4)

    # the vLLM sampler's inputs, built on CUDA: merged LoRA weights and per-prompt embeddings
    from transformers import AutoModelForCausalLM

    from bioreason.modeling import apply_lora
    from bioreason.vllm_sampler import merged_llm_weights, prompt_embeddings

    m3, p3 = build_tiny(seed=5)
    peft = apply_lora(m3.cuda(), r=4, alpha=8, dropout=0.0).eval()
    with torch.no_grad():
        for name, prm in peft.named_parameters():
            if "lora_B" in name:
                prm.normal_(0, 0.5)
        tok_ids = torch.randint(5, m3.config.text_config.vocab_size, (2, 9), device="cuda")
        want = peft.get_base_model().language_model(input_ids=tok_ids).logits
        plain = AutoModelForCausalLM.from_config(m3.config.text_config)
        plain.load_state_dict(merged_llm_weights(peft), strict=False)
        got = plain.cuda().eval()(input_ids=tok_ids).logits
    _, embeds = prompt_embeddings(peft, p3, prompts)
    check("vLLM sampler inputs on cuda: merged LoRA weights reproduce the adapted LLM",
          torch.allclose(got, want, atol=1e-4) and len(embeds) == 2 and embeds[0].is_cuda)

    # GRPO's sampler on a LoRA model: adapter merged for the call, static cache, inverse-CDF draws
    p3enc = p3(prompts).to("cuda")
    g = sample_groups(peft, p3, prompts, 2, 10, do_sample=False)
    with torch.no_grad():
        pl = peft.generate(**p3enc, max_new_tokens=10, do_sample=False, eos_token_id=p3.tokenizer.eos_token_id,
                           pad_token_id=p3.tokenizer.pad_token_id)[:, p3enc["input_ids"].shape[1]:].cpu()
    same = all(g.completion_ids[r].cpu()[:int(g.completion_mask[r].sum())].tolist() ==
               pl[r // 2, :int(g.completion_mask[r].sum())].tolist() for r in range(4))
    peft.to(torch.bfloat16)
    before = {k: v.clone() for k, v in peft.state_dict().items()}
    sample_groups(peft, p3, prompts, 4, 16)
    kept = all(torch.equal(v, before[k]) for k, v in peft.state_dict().items())
    check("LoRA group sampling == generate with the unmerged adapter; bf16 weights restored bit for bit", same and kept)
    from bioreason.sampling import InverseCDFSampler

    logits = torch.tensor([[2.0, 1.0, float("-inf"), 0.0]], device="cuda")
    drawn = InverseCDFSampler(1.0, 1.0)(None, logits.expand(40_000, -1).clone()).argmax(-1)
    freq = torch.bincount(drawn, minlength=4).float().cpu() / 40_000
    gap = (freq - torch.softmax(logits.cpu(), -1)[0]).abs().max().item()
    check("inverse-CDF sampler on cuda draws softmax frequencies", gap < 0.01, f"max gap {gap:.4f}")
    print(f"{len(failures)} failed: {failures}" if failures else "all GPU checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
