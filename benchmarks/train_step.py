"""Training-step speed and memory on the embedded default's LLM, side by side in one run.

Workload (the reference shape from the peer notes): SmolLM2-135M-Instruct; each example a user turn with two
real 1,024-nt BRCA1 windows (reference and alternate, one SNV apart) and a question of about 40 tokens, plus an
assistant answer of about 60 tokens; torch with 2 threads; median of ``--steps`` steps after 2 warm-ups.
``--encoder hyena`` (default: HyenaDNA-tiny, the embedded default) or ``--encoder nt-tiny`` (a tiny random ESM,
hidden 128, 2 layers, 4 heads, 6-mer tokens: the peer notes' encoder; pool stride 3 keeps it at <= 64 positions).

Prints: LoRA SFT step (batch 2), full fine-tune step, peak RSS after LoRA SFT, greedy decoding tokens/s at batch 1
and 8 (transformers' ``generate``, our slot decoder with sdpa attention, then with the few-query attention the CLI
uses on CPU, alone and with each ``--quantize`` path; all without draft tokens, then the CLI's path and the first
``--quantize`` path with ``decoding.DRAFT`` draft tokens per step), GRPO step (G=4, 64 new tokens) / SFT step on the
same prompts (goal <= 8x; peers ~53x), both steps with the frozen weights' autocast casts kept and remade per call
(``bioreason.autocast_cache``, alternating), batched sampling vs a per-completion generate loop at batch 8 (goal >= 4x;
equal 64-token completions and sampled lengths, median of several runs), and the ratios to the original BioReason
run in the same session from ``../shared/peer/`` (``benchmarks/peer.py``: LoRA step, generation at batch 1 and 8,
positions/kb; said plainly when it is not there, and the full fine-tune step is always PEER-NOTES.md's figure from
another day).
``--no-peer`` skips it."""

from __future__ import annotations

import argparse
import contextlib
import resource
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUESTION = ("This variant lies on chromosome 17 in the BRCA1 gene, which encodes a tumour suppressor involved in "
            "homologous recombination repair. Based on the reference and variant sequences, what is its effect?")
ANSWER = ("The single-nucleotide change alters a codon in the BRCT domain and is predicted to disrupt protein "
          "folding, which abolishes the repair function of BRCA1 in the saturation genome editing assay.")


def rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def timed(fn, steps: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def kept_casts_ab(fn, reps: int) -> tuple[float, float]:
    """Medians of ``fn`` with the frozen weights' autocast copies remade per call (off) and kept (on), alternating."""
    from bioreason import autocast_cache

    off, on = [], []
    for _ in range(reps):
        for keep, times in ((False, off), (True, on)):
            autocast_cache.KEEP = keep
            times.append(timed(fn, 1, warmup=0))
    autocast_cache.KEEP = True
    return statistics.median(off), statistics.median(on)


def build(encoder: str, lora: bool):
    from bioreason import hub
    from bioreason.modeling import apply_lora

    llm = hub.prepare_llm()
    if encoder == "hyena":
        model, proc = hub.build_model(llm, "hyena", None, "anticapt", "mean", 16, 64)
    else:
        model, proc = hub.build_model(llm, "nucleotide-transformer", None, None, "mean", 3, 64)
    model.float()
    if lora:
        model = apply_lora(model, r=16, alpha=32, dropout=0.05)
    else:
        model.set_trainable(encoder=False, llm=True, projector=True)
    return model, proc


def workload(n: int):
    from bioreason.kegg_data.bundled import bundled_fasta
    from bioreason.kegg_data.examples import Example
    from bioreason.kegg_data.vcf_reader import VariantReader

    out = []
    for v in VariantReader(ROOT / "examples" / "brca1_sge_part1.vcf", bundled_fasta()):
        out.append(Example(QUESTION, [v.ref_window, v.alt_window], ANSWER, None, {"label": "LOF"}))
        if len(out) == n:
            break
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--encoder", choices=("hyena", "nt-tiny"), default="hyena")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-peer", action="store_true", help="do not run the original (ratios then use PEER-NOTES.md)")
    ap.add_argument("--quantize", default="int8-decode,bf16",
                    help="CPU inference paths (bioreason.quantize) whose decoding speed to add ('' for none)")
    ap.add_argument("--autocast", choices=("no", "bf16"), default="bf16",
                    help="CPU autocast for training forward/backward and GRPO's sampling (bf16 matmuls; weights "
                         "stay fp32, their casts kept as the trainer keeps them: bioreason.autocast_cache); "
                         "greedy decoding runs outside it, as predict does")
    ap.add_argument("--cpu-matmul", choices=("auto", "onednn", "blas"), default="auto",
                    help="fp32 matmul backend (bioreason.cpu_math, as BIOREASON_CPU_MATMUL in the CLI); the slot "
                         "decoder and an fp32 LoRA step are also timed on the other one")
    args = ap.parse_args()
    from peer import RECORDED, peer_figures

    PEER = dict(RECORDED) if args.no_peer else peer_figures()  # the original first, on the same machine state
    same = "original, same run" if PEER["measured"] else "original, PEER-NOTES.md, another day"
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    from bioreason.quantize import quiet_torchao_logs

    quiet_torchao_logs()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    from bioreason import cpu_math

    on_dnn = cpu_math.use_onednn_matmuls(args.cpu_matmul)
    other = "blas" if on_dnn else "onednn"
    from bioreason.autocast_cache import drop_frozen_casts, keep_frozen_casts
    from bioreason.kegg_data.tasks import SYSTEM_PROMPT
    from bioreason.modeling import unwrap_dna_llm
    from bioreason.sampling import sample_groups
    from bioreason.training.grpo import GRPOStep
    from bioreason.training.sft import SFTStep

    ac = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if args.autocast == "bf16" else contextlib.nullcontext
    examples = workload(8)
    print(f"torch {torch.__version__}, {args.threads} threads, encoder {args.encoder}, autocast {args.autocast}, "
          f"fp32 matmuls on {'oneDNN' if on_dnn else 'BLAS'} (full fp32 on oneDNN here: "
          f"{cpu_math.onednn_keeps_fp32()})")

    def sft_timer(model, proc):
        step = SFTStep(proc, None, "dna")
        batch = step.prepare(examples[:2])
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=1e-5)

        def one():
            with ac():
                loss, _ = step.loss(model, batch)
            (loss / batch.units).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        x = batch.inputs
        return one, int(x["attention_mask"].sum()) // 2, int((x["input_ids"] == proc.dna_pad_id).sum()) // 2

    model, proc = build(args.encoder, lora=True)
    model.train()
    lm = unwrap_dna_llm(model).language_model
    kept = keep_frozen_casts(lm) if args.autocast != "no" else 0  # as the trainer does under mixed precision
    one, tokens, dna_pos = sft_timer(model, proc)
    t_lora = timed(one, args.steps)
    rss_lora = rss_gib()
    print(f"LLM tokens per example: {tokens} ({dna_pos} DNA positions for 2 x 1,024 nt = {dna_pos // 2} per kb; "
          f"original: {PEER['positions_per_kb']} per kb)")
    print(f"LoRA SFT step, batch 2: {t_lora:.3f} s ({same}: {PEER['lora_step']} s: {PEER['lora_step'] / t_lora:.2f}x "
          f"faster); peak RSS so far {rss_lora:.2f} GiB (original {PEER['lora_rss']:.2f} GiB)")
    if kept:
        off, on = kept_casts_ab(one, args.steps)
        print(f"  frozen weights cast by autocast on every call -> cast once and kept ({kept} linears, "
              f"bioreason.autocast_cache), alternating: {off:.3f} -> {on:.3f} s ({off / on:.2f}x)")
    ac_was, ac = ac, contextlib.nullcontext
    fp32 = {}
    for mode in ("blas", "onednn"):
        with cpu_math.matmuls(mode):
            fp32[mode] = timed(one, args.steps)
    ac = ac_was
    print(f"LoRA SFT step without autocast (fp32): {fp32['blas']:.3f} s on BLAS, {fp32['onednn']:.3f} s on oneDNN "
          f"({fp32['blas'] / fp32['onednn']:.2f}x; autocast {args.autocast} above: {t_lora:.3f} s)")

    # GRPO step vs SFT step on the same 2 prompts
    cfg = {"num_generations": 4, "max_new_tokens": 64, "temperature": 1.0, "top_p": 1.0, "beta": 0.0,
           "epsilon": 0.2, "loss_type": "dapo", "rewards": {"correctness": 2.0, "format": 0.5}, "sampler": "hf"}
    grpo = GRPOStep(proc, cfg, ["LOF", "FUNC"], SYSTEM_PROMPT, "dna", get_model=lambda: model)
    grpo.autocast = ac  # sampling under the trainer's mixed precision, as build_trainer sets it
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-6)

    def grpo_one():  # as the trainer runs it: sampling, loss and backward under its autocast
        batch = grpo.prepare(examples[:2])
        with ac():
            loss, _ = grpo.loss(model, batch)
        (loss / max(batch.units, 1)).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    t_grpo = timed(grpo_one, max(2, args.steps // 2), warmup=1)
    print(f"GRPO step (2 prompts x G=4, 64 new tokens): {t_grpo:.2f} s = {t_grpo / t_lora:.1f}x the SFT step "
          f"(goal <= 8x; peers about 53x)")
    if kept:
        off, on = kept_casts_ab(grpo_one, max(2, args.steps // 2))
        print(f"  frozen weights cast by autocast on every call -> cast once and kept, alternating: {off:.2f} -> "
              f"{on:.2f} s ({off / on:.2f}x)")
        drop_frozen_casts(lm)  # decoding below runs outside autocast, as predict does

    # sampling: one batched call for 8 completions vs a loop of 8 single calls (DNA encoded and the prompt
    # prefilled each time), both through sample_groups; first exactly 64 tokens each (equal work), then
    # sampled lengths (the batch runs until its longest completion ends, the loop stops each one at its end)
    model.eval()
    prompt = [examples[0].to_messages(SYSTEM_PROMPT, with_answer=False)]
    reps = max(3, args.steps // 2)
    for label, least in (("exactly 64 tokens", 64), ("sampled lengths <= 64", 0)):
        ratios, tb, tl = [], [], []
        for r in range(reps):
            torch.manual_seed(r)
            t0 = time.perf_counter()
            sample_groups(model, proc, prompt, 8, 64, min_new_tokens=least)
            tb.append(time.perf_counter() - t0)
            torch.manual_seed(r)
            t0 = time.perf_counter()
            for _ in range(8):
                sample_groups(model, proc, prompt, 1, 64, min_new_tokens=least)
            tl.append(time.perf_counter() - t0)
            ratios.append(tl[-1] / tb[-1])
        print(f"8 completions, {label}: batched {statistics.median(tb):.2f} s, per-completion loop "
              f"{statistics.median(tl):.2f} s: median ratio {statistics.median(ratios):.1f}x of {reps} runs "
              f"(each {', '.join(f'{x:.1f}' for x in ratios)}; goal >= 4x)")

    # greedy generation throughput, exactly 64 new tokens (prefill included, as the original's figure), batch 1
    # and 8: transformers' generate, then our decode loop (the slot decoder predict and GRPO use), in fp32 with
    # sdpa attention, then as the CLI loads a model on CPU (few-query attention, bioreason.attention), alone and
    # with each inference path of --quantize (copies of the model: quantising merges the adapter for good); all
    # without draft tokens, then the CLI's path and the first --quantize path with them (decoding.DRAFT, the
    # default for greedy decoding: n-grams of the prompt and of the completion so far, bioreason.drafting)
    import copy

    from bioreason import decoding
    from bioreason.attention import use_few_query_attention
    from bioreason.quantize import quantize_model

    quantized = [m for m in args.quantize.split(",") if m]
    variants = [("generate", model), ("slot decoder", model), (f"slot decoder, fp32 matmuls on {other}", model),
                ("slot decoder, few-query attention", "lazy:none")]
    variants += [(f"slot decoder, few-query attention, --quantize {m}", "lazy:" + m) for m in quantized]
    draft = decoding.DRAFT
    variants += [(f"slot decoder, few-query attention{f', --quantize {m}' if m != 'none' else ''}, {draft} draft "
                  "tokens", "lazy:" + m) for m in ["none"] + quantized[:1]] if draft else []
    for name, m in variants:
        decoding.DRAFT = draft if "draft tokens" in name else 0
        if isinstance(m, str):  # "lazy:MODE": a copy with the few-query attention, quantised unless MODE is none
            mode, m = m.split(":", 1)[1], copy.deepcopy(model)
            use_few_query_attention(m)
            m = quantize_model(m, mode) if mode != "none" else m.eval()
        for bsz in (1, 8):
            prompts = [e.to_messages(SYSTEM_PROMPT, with_answer=False) for e in examples[:bsz]]
            enc = proc(prompts)
            kw = {"max_new_tokens": 64, "min_new_tokens": 64, "do_sample": False,
                  "pad_token_id": proc.tokenizer.pad_token_id}
            with torch.inference_mode():  # as predict runs it: no autocast
                if name == "generate":
                    def run(m=m, enc=enc, kw=kw):
                        return m.generate(**enc, **kw)
                else:
                    def run(m=m, prompts=prompts):
                        return sample_groups(m, proc, prompts, 1, 64, do_sample=False, min_new_tokens=64)
                with cpu_math.matmuls(other) if other in name else contextlib.nullcontext():
                    t = timed(run, args.steps, warmup=1)
            peer = PEER["gen_b1"] if bsz == 1 else PEER["gen_b8"]
            print(f"greedy decoding, {name}, batch {bsz}: {64 * bsz / t:.1f} new tokens/s ({same}: {peer}: "
                  f"{64 * bsz / t / peer:.2f}x; goal >= 4x)")
    decoding.DRAFT = draft
    del model, grpo, opt

    model, proc = build(args.encoder, lora=False)
    model.train()
    one, _, _ = sft_timer(model, proc)
    t_full = timed(one, max(2, args.steps // 2))
    print(f"full fine-tune SFT step, batch 2: {t_full:.3f} s (original, PEER-NOTES.md, another day: {PEER['full_step']} s: "
          f"{PEER['full_step'] / t_full:.1f}x faster)")
    print(f"peak RSS of the whole run: {rss_gib():.2f} GiB")


if __name__ == "__main__":
    sys.exit(main())
