"""``predict`` throughput on real BRCA1 variants with the shipped checkpoint, every switch off and on in one run.

Prints, with this machine's fp32/bf16 matmul peaks and memory bandwidth measured in the same run: ``--score-only``
variants/s on ``--n`` (default 200) real SGE variants, prompted as ``bioreason predict`` prompts them (annotated
with consequences computed from the bundled transcript; ``--prompts sequence``: without, as before 2026-11-29,
session 32), median of ``--reps``: prefix caching off and on
(``rl.PREFIX_CACHING``) with fp32 matmuls on torch's BLAS, then on oneDNN (``bioreason.cpu_math``: what the CLI uses
on CPUs where oneDNN keeps fp32) with the attention ``load_model`` gives CPU models (``bioreason.attention``), with
its prefills on the flash kernel, and with transformers' sdpa throughout, then ``--quantize`` bf16-matmul (bfloat16
products, the rest fp32: the CLI's default for scoring where it pays), int8 and int8-weight (torchao) with caching
on, each with the labels equal to the fp32 model's (as the CLI runs it) and the largest probability change; prefill MFU;
``--traces`` (greedy, the model's own lengths up to ``--new-tokens``) on ``--n-traces`` variants: a per-variant
loop, batches of ``--trace-batch`` with row compaction and refill off (``decoding.COMPACTION``: every row runs until
the batch's longest trace ends), compaction on, and all of them queued into ``--trace-batch`` slots (continuous
batching), then the last again on BLAS, all without draft tokens; queued and looped with ``decoding.DRAFT`` draft
tokens per step (the CLI's default: ``bioreason.drafting``, each run drafting only from its own earlier variants),
and with ``--trace-quantize`` (default ``int8-decode`` (int8 weights for decode steps only) and ``bf16-matmul``
(what ``auto`` runs the shipped model's traces with where bf16 products pay), no drafts) queued and looped, with
how many traces stay identical; the traces must be identical across the fp32 arrangements; the
bandwidth roofline of batch-1 decoding (weights read once per token); peak RSS.
Goals on 2 CPU cores: score-only >= 7 variants/s; batched traces >= 4x the loop; peak RSS of predict <= 1.5 GiB
(``benchmarks/predict_memory.py`` measures it per process).
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def matmul_peak(dtype, device: str = "cpu", reps: int = 10) -> float:
    """Best-of-3 GFLOP/s of a square matmul (1024 on CPU, 8192 on a GPU) in ``dtype`` on ``device``."""
    import torch

    n = 8192 if device != "cpu" else 1024
    a, b = torch.randn(n, n, device=device).to(dtype), torch.randn(n, n, device=device).to(dtype)
    a @ b
    times = []
    for _ in range(3):
        times.append(_timed(lambda: [a @ b for _ in range(reps)], device))
    return 2 * n ** 3 * reps / min(times) / 1e9


def bandwidth_gbs(device: str = "cpu", mib: int = 512) -> float:
    """Read+write bandwidth of a large tensor copy (GB/s moved), best of 3."""
    import torch

    a = torch.empty(mib * 2**18, device=device)
    b = torch.empty_like(a)
    a.fill_(1.0)
    b.copy_(a)
    best = min(_timed(lambda: b.copy_(a), device) for _ in range(3))
    return 2 * a.numel() * 4 / best / 1e9


def _timed(fn, device: str = "cpu") -> float:
    import torch

    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t0


def compare(base: list[dict], other: list[dict]) -> str:
    same = sum(a["label"] == b["label"] for a, b in zip(base, other))
    delta = max(abs(a["probs"][k] - b["probs"][k]) for a, b in zip(base, other) for k in a["probs"])
    return f"labels equal {same}/{len(base)}, largest probability change {delta:.1e}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--n-traces", type=int, default=16)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--trace-batch", type=int, default=8)
    ap.add_argument("--new-tokens", type=int, default=96)
    ap.add_argument("--model", default="default",
                    help="default (the shipped checkpoint), base (the untrained embedded model) or a folder")
    ap.add_argument("--reps", type=int, default=3, help="repetitions of each timing (the median is printed)")
    ap.add_argument("--quantize", default=None,
                    help="CPU modes to compare with the unquantised model ('' for none; default "
                         "bf16-matmul,int8,int8-weight on CPU, none on a GPU)")
    ap.add_argument("--prompts", choices=("annotated", "sequence"), default="annotated",
                    help="annotated (as `bioreason predict` builds them: consequences computed from the bundled "
                         "BRCA1 transcript) or sequence (no annotation: the prompts of this benchmark before "
                         "2026-11-29, session 32, for comparisons with earlier figures)")
    ap.add_argument("--trace-quantize", default="int8-decode,bf16-matmul",
                    help="CPU modes whose --traces speed (slots and loop) to compare with fp32's ('' for none)")
    ap.add_argument("--device", default="auto", help="auto (CUDA when there), cpu or cuda")
    ap.add_argument("--dtype", default="auto", help="auto (float32 on CPU, bfloat16 on a GPU), float32 or bfloat16")
    ap.add_argument("--decode-batches", default="",
                    help="batch sizes at which to time greedy decoding of exactly --decode-tokens new tokens per "
                         "row, generate vs the slot decoder (e.g. 1,8,64; '' to skip)")
    ap.add_argument("--decode-tokens", type=int, default=64)
    ap.add_argument("--cpu-matmul", default="auto", choices=("auto", "onednn", "blas"),
                    help="fp32 matmul backend for everything after the BLAS-vs-oneDNN score-only comparison (as "
                         "BIOREASON_CPU_MATMUL; auto = oneDNN where it keeps fp32, as the CLI)")
    args = ap.parse_args()
    import dataclasses
    import statistics

    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    from bioreason.quantize import quiet_torchao_logs

    quiet_torchao_logs()
    from bioreason.app.options import model_arg
    from bioreason.kegg_data.bundled import bundled_fasta
    from bioreason.kegg_data.vcf_reader import VariantReader

    from bioreason import attention, cpu_math, decoding, rl
    from bioreason.checkpoints import load_model
    from bioreason.drafting import NgramDrafter
    from bioreason.predict import PredictConfig, VariantPredictor
    from bioreason.quantize import resolve_mode

    variants = []
    reader = VariantReader(ROOT / "examples" / "brca1_sge_part1.vcf", bundled_fasta())
    for v in reader:
        variants.append(v)
        if len(variants) == args.n:
            break
    prompting = {}  # what predict adds for annotated prompts: the header's layouts, consequences computed
    if args.prompts == "annotated":
        from bioreason.kegg_data.annotated_variants import annotation_layouts
        from bioreason.kegg_data.consequence import Annotator
        from bioreason.kegg_data.transcripts import resolve_gtf

        prompting = {"layouts": annotation_layouts(reader),
                     "annotator": Annotator(resolve_gtf("bundled", None), reader.reference)}
    folder = model_arg(args.model)
    config = PredictConfig.for_model(folder) if folder else PredictConfig(labels=("LOF", "FUNC"))
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    quantize = args.quantize if args.quantize is not None else ("bf16-matmul,int8,int8-weight" if device == "cpu"
                                                                else "")
    model, proc = load_model(folder, dtype=args.dtype, device=device)
    dtype = next(model.language_model.parameters()).dtype
    pred = VariantPredictor(model, proc, config, **prompting)
    where = torch.cuda.get_device_name(0) if device.startswith("cuda") else f"{torch.get_num_threads()} threads"
    print(f"torch {torch.__version__}, {where}, model {args.model} in {str(dtype).split('.')[-1]}, "
          f"{len(variants)} real variants, {args.prompts} prompts, batch {args.batch}, medians of {args.reps}")
    on_cpu = device == "cpu"
    with cpu_math.matmuls("blas"):
        peak32, peak16 = matmul_peak(torch.float32, device), matmul_peak(torch.bfloat16, device)
        bw = bandwidth_gbs(device)
    with cpu_math.matmuls("onednn"):
        peak_dnn = matmul_peak(torch.float32, device) if on_cpu else peak32
    peak = peak16 if dtype == torch.bfloat16 else peak32
    print(f"measured now: matmul peak fp32 {peak32:.0f} GFLOP/s on BLAS, {peak_dnn:.0f} on oneDNN (full fp32 there: "
          f"{cpu_math.onednn_keeps_fp32()}), bf16 {peak16:.0f} GFLOP/s; memory bandwidth {bw:.1f} GB/s")

    def score_only(p, caching: bool = True):
        rl.PREFIX_CACHING = caching
        p.prefix_cache.entries.clear()
        p.predict(variants[:args.batch])  # warm-up (and, with caching, the one prefix computation)
        times, results = [], []
        for _ in range(args.reps):
            t0 = time.perf_counter()
            results = [r for i in range(0, len(variants), args.batch) for r in p.predict(variants[i:i + args.batch])]
            times.append(time.perf_counter() - t0)
        return statistics.median(times), results

    with cpu_math.matmuls("blas"):
        dt_off, off = score_only(pred, False)
        dt, on = score_only(pred, True)
    prompts = [pred.messages(v) for v in variants[:args.batch]]
    enc = proc(prompts)
    shared = proc.prefix_len(prompts, enc)
    print(f"score-only, prefix caching off -> on: {len(variants) / dt_off:.2f} -> {len(variants) / dt:.2f} "
          f"variants/s ({dt_off / dt:.2f}x; {shared} of {float(enc['attention_mask'].sum()) / args.batch:.0f} "
          f"prompt tokens shared); {compare(off, on)}")
    tokens_per_variant = float(enc["attention_mask"].sum()) / args.batch + 2 * 10  # prompt + 2 candidates
    non_embed = sum(p.numel() for n, p in model.language_model.named_parameters() if "embed" not in n)
    achieved = 2 * non_embed * tokens_per_variant * len(variants) / dt / 1e9
    print(f"score-only {str(dtype).split('.')[-1]}: {len(variants) / dt:.2f} variants/s (goal >= 7 on 2 CPU cores); "
          f"{tokens_per_variant:.0f} LLM tokens per variant; {achieved:.0f} GFLOP/s = MFU {achieved / peak:.1%} of "
          f"this dtype's peak (on BLAS)")
    if on_cpu and dtype == torch.float32:
        with cpu_math.matmuls("onednn"):
            d_dnn, dnn = score_only(pred, True)
            lm = model.language_model
            attn = lm.config._attn_implementation
            block, attention.PREFILL_BLOCK = attention.PREFILL_BLOCK, None  # prefills on the flash kernel
            d_flash, flash = score_only(pred, True)
            attention.PREFILL_BLOCK = block
            lm.set_attn_implementation("sdpa")
            d_sdpa, sdpa = score_only(pred, True)
            lm.set_attn_implementation(attn)
        print(f"score-only fp32, matmuls on oneDNN: {len(variants) / d_dnn:.2f} variants/s ({dt / d_dnn:.2f}x BLAS); "
              f"{compare(on, dnn)}; {achieved * dt / d_dnn:.0f} GFLOP/s = MFU {achieved * dt / d_dnn / peak_dnn:.1%} "
              f"of oneDNN's fp32 peak")
        print(f"  attention {attn} (as the CLI loads the model) vs transformers' sdpa: {len(variants) / d_sdpa:.2f} "
              f"-> {len(variants) / d_dnn:.2f} variants/s ({d_sdpa / d_dnn:.2f}x); {compare(sdpa, dnn)}")
        print(f"  of which prefills by blocks of {block} queries vs on the flash kernel: {len(variants) / d_flash:.2f} "
              f"-> {len(variants) / d_dnn:.2f} variants/s ({d_flash / d_dnn:.2f}x); {compare(flash, dnn)}")
    using = cpu_math.use_onednn_matmuls(args.cpu_matmul) if on_cpu else False
    print(f"from here on fp32 matmuls run on {'oneDNN' if using else 'BLAS'} (--cpu-matmul {args.cpu_matmul})")
    d_base, base = (d_dnn, dnn) if using and on_cpu and dtype == torch.float32 else (dt, on)
    auto = resolve_mode("auto", device)
    print(f"--quantize auto (the CLI's default for scoring) is {auto} here")
    for mode in [m for m in quantize.split(",") if m]:
        qmodel, qproc = load_model(folder, dtype="float32", quantize=mode)
        dq, res = score_only(VariantPredictor(qmodel, qproc, config, **prompting), True)
        mfu = f"; MFU {achieved * dt / dq / peak16:.1%} of the bf16 peak" if mode.startswith("bf16") else ""
        print(f"score-only --quantize {mode}: {len(variants) / dq:.2f} variants/s ({d_base / dq:.2f}x fp32 as the "
              f"CLI runs it; goal >= 7){mfu}; {compare(base, res)}")
        del qmodel
    rss_score = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    if args.decode_batches:
        decode_speed(model, proc, [pred.messages(v) for v in variants], args, device)

    # traces: the model's own lengths (greedy, up to --new-tokens), the same variants in every arrangement
    sub = variants[:args.n_traces]

    def traces(batch: int, slots: int, compaction: bool = True, m=model, draft: int = 0):
        decoding.COMPACTION, decoding.DRAFT = compaction, draft
        tr = VariantPredictor(m, proc, dataclasses.replace(config, traces=True, max_new_tokens=args.new_tokens,
                                                               trace_slots=slots), **prompting)
        tr.predict(sub[:2])
        times, out = [], []
        for _ in range(args.reps):
            out, tr.drafter = [], NgramDrafter()  # drafts from this run's earlier variants only, never a rerun's
            times.append(_timed(lambda: out.extend(r["trace"] for i in range(0, len(sub), batch)
                                                   for r in tr.predict(sub[i:i + batch])), device))
        decoding.COMPACTION, decoding.DRAFT = True, default_draft
        return len(sub) / statistics.median(times), out

    default_draft = decoding.DRAFT
    loop, t_loop = traces(1, 1)
    whole, t_whole = traces(args.trace_batch, args.trace_batch, compaction=False)
    comp, t_comp = traces(args.trace_batch, args.trace_batch)
    cont, t_cont = traces(len(sub), args.trace_batch)
    with cpu_math.matmuls("blas"):
        cont_blas, t_blas = traces(len(sub), args.trace_batch)
    drafted = traces(len(sub), args.trace_batch, draft=default_draft), traces(1, 1, draft=default_draft)
    decode_modes = [m for m in (args.trace_quantize if on_cpu else "").split(",") if m]
    quantized = {}
    for mode in decode_modes:
        qmodel, _ = load_model(folder, dtype="float32", quantize=mode)
        quantized[mode] = traces(len(sub), args.trace_batch, m=qmodel), traces(1, 1, m=qmodel)[0]
        del qmodel
    lengths = [len(proc.tokenizer(t[len(config.trace_prefix):], add_special_tokens=False)["input_ids"]) for t in t_loop]
    same = sum(a == b == c == d for a, b, c, d in zip(t_loop, t_whole, t_comp, t_cont))
    print(f"--traces, greedy, {len(sub)} variants, trace tokens median {statistics.median(lengths):.0f} "
          f"(min {min(lengths)}, max {max(lengths)}, cap {args.new_tokens}); identical traces {same}/{len(sub)}")
    print(f"  per-variant loop {loop:.2f} variants/s; batches of {args.trace_batch}: compaction off {whole:.2f} "
          f"({whole / loop:.1f}x), on {comp:.2f} ({comp / loop:.1f}x); all {len(sub)} queued into "
          f"{args.trace_batch} slots {cont:.2f} ({cont / loop:.1f}x the loop; goal >= 4x); the same on BLAS "
          f"matmuls {cont_blas:.2f} (traces identical {sum(a == b for a, b in zip(t_cont, t_blas))}/{len(sub)})")
    (d_cont, t_dc), (d_loop, t_dl) = drafted
    print(f"  with {default_draft} draft tokens per step (decoding.DRAFT, the CLI's default; above: none): queued into "
          f"{args.trace_batch} slots {d_cont:.2f} variants/s ({d_cont / cont:.2f}x without), per-variant loop "
          f"{d_loop:.2f} ({d_loop / loop:.2f}x without); queued / loop {d_cont / d_loop:.1f}x, queued with drafts / "
          f"loop without {d_cont / loop:.1f}x; traces identical to those without drafts "
          f"{sum(a == b == c for a, b, c in zip(t_cont, t_dc, t_dl))}/{len(sub)}")
    for mode, ((q_cont, t_q), q_loop) in quantized.items():
        print(f"  --quantize {mode}: queued into {args.trace_batch} slots {q_cont:.2f} variants/s "
              f"({q_cont / cont:.2f}x fp32's), per-variant loop {q_loop:.2f} ({q_loop / loop:.2f}x fp32's); queued / "
              f"loop {q_cont / q_loop:.1f}x (goal >= 4x); traces identical to fp32's "
              f"{sum(a == b for a, b in zip(t_cont, t_q))}/{len(sub)}")
    weight_bytes = sum(p.numel() * p.element_size() for n, p in model.language_model.named_parameters()
                       if "embed_tokens" not in n)
    print(f"batch-1 decoding roofline: {bw * 1e9 / 2 / weight_bytes:.0f} tokens/s ({weight_bytes / 2**20:.0f} "
          f"MiB of LLM weights read per token at {bw / 2:.1f} GB/s read bandwidth)")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"peak RSS of this benchmark: {rss_score:.2f} GiB after score-only (fp32 and quantised models loaded in "
          f"turn), {rss:.2f} GiB overall")
    if device.startswith("cuda"):
        print(f"peak GPU memory allocated: {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")


def decode_speed(model, proc, prompts: list, args, device: str) -> None:
    """New tokens/s of greedy decoding, exactly ``--decode-tokens`` per row (prefill included, as the original's
    figure), at each of ``--decode-batches``: transformers' ``generate`` vs the slot decoder (``sample_groups``),
    without and with draft tokens (``decoding.DRAFT``)."""
    import statistics

    import torch

    from bioreason import decoding
    from bioreason.sampling import sample_groups

    n_new = args.decode_tokens
    for bsz in [int(b) for b in args.decode_batches.split(",") if b]:
        batch = (prompts * (bsz // len(prompts) + 1))[:bsz]
        enc = proc(batch, padding_side="left").to(device)
        kw = {"max_new_tokens": n_new, "min_new_tokens": n_new, "do_sample": False,
              "pad_token_id": proc.tokenizer.pad_token_id}
        line, default_draft = [], decoding.DRAFT
        for name, run, draft in (
                ("generate", lambda: model.generate(**enc, **kw), 0),
                ("slot decoder", lambda: sample_groups(model, proc, batch, 1, n_new, do_sample=False,
                                                       min_new_tokens=n_new), 0),
                (f"with {default_draft} draft tokens", lambda: sample_groups(model, proc, batch, 1, n_new,
                                                                            do_sample=False, min_new_tokens=n_new),
                 default_draft)):
            decoding.DRAFT = draft
            with torch.inference_mode():
                _timed(run, device)
                t = statistics.median(_timed(run, device) for _ in range(args.reps))
            decoding.DRAFT = default_draft
            line.append(f"{name} {n_new * bsz / t:.0f}")
        print(f"greedy decoding, batch {bsz}, {n_new} new tokens per row: new tokens/s " + ", ".join(line))


if __name__ == "__main__":
    sys.exit(main())
