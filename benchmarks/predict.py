"""``predict`` throughput on real BRCA1 variants with the embedded default, side by side in one run.

Prints: ``--score-only`` variants/s on ``--n`` (default 200) real SGE variants (median of ``--reps``), with prefix
caching off and on (the system turn + chat template's KV cache computed once per model load) and the largest
change of any label probability between the two; ``--traces`` variants/s batched
(``--trace-batch`` per generate call) vs a per-variant generate loop on ``--n-traces`` variants, with the same
``--new-tokens``; prefill model-FLOPs utilisation of the score-only pass against fp32 and bf16 matmul peaks
measured in this run (1024^3 matmuls); peak RSS. Goals on 2 CPU cores: score-only >= 7 variants/s with MFU >= 40%;
batched traces >= 4x the loop; peak RSS <= 1.5 GiB.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def matmul_peak(dtype, n: int = 1024, reps: int = 10) -> float:
    import torch

    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    a @ b
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(reps):
            a @ b
        times.append(time.perf_counter() - t0)
    return 2 * n ** 3 * reps / min(times) / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--n-traces", type=int, default=16)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--trace-batch", type=int, default=8)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    ap.add_argument("--model", default="default",
                    help="default (the shipped checkpoint), base (the untrained embedded model) or a folder")
    ap.add_argument("--reps", type=int, default=3, help="score-only repetitions (the median is printed)")
    args = ap.parse_args()
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    from bioreason import rl
    from bioreason.app.options import model_arg
    from bioreason.checkpoints import load_model
    from bioreason.kegg_data.bundled import bundled_fasta
    from bioreason.kegg_data.variants import VariantReader
    from bioreason.predict import PredictConfig, VariantPredictor

    variants = []
    for v in VariantReader(ROOT / "examples" / "brca1_sge_part1.vcf", bundled_fasta()):
        variants.append(v)
        if len(variants) == args.n:
            break
    folder = model_arg(args.model)
    model, proc = load_model(folder, dtype=args.dtype)
    config = PredictConfig.for_model(folder) if folder else PredictConfig(labels=("LOF", "FUNC"))
    pred = VariantPredictor(model, proc, config)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.dtype}, model {args.model}, "
          f"{len(variants)} real variants")
    peak32, peak16 = matmul_peak(torch.float32), matmul_peak(torch.bfloat16)
    print(f"matmul peak measured now: fp32 {peak32:.0f} GFLOP/s, bf16 {peak16:.0f} GFLOP/s")

    def score_only(caching: bool):
        rl.PREFIX_CACHING = caching
        pred.prefix_cache.entries.clear()
        pred.predict(variants[:args.batch])  # warm-up (and, with caching, the one prefix computation)
        times, results = [], []
        for _ in range(args.reps):
            t0 = time.perf_counter()
            results = [r for i in range(0, len(variants), args.batch) for r in pred.predict(variants[i:i + args.batch])]
            times.append(time.perf_counter() - t0)
        return sorted(times)[len(times) // 2], results

    dt_off, off = score_only(False)
    dt, on = score_only(True)
    delta = max(abs(a["probs"][k] - b["probs"][k]) for a, b in zip(off, on) for k in a["probs"])
    same = sum(a["label"] == b["label"] for a, b in zip(off, on))
    enc = proc([pred.messages(v) for v in variants[:args.batch]])
    shared = proc.prefix_len([pred.messages(v) for v in variants[:args.batch]], enc)
    print(f"prefix caching: {len(variants) / dt_off:.2f} -> {len(variants) / dt:.2f} variants/s "
          f"({dt_off / dt:.2f}x; {shared} of {float(enc['attention_mask'].sum()) / args.batch:.0f} prompt tokens "
          f"shared); labels equal {same}/{len(on)}, largest probability change {delta:.1e}")
    tokens_per_variant = float(enc["attention_mask"].sum()) / args.batch + 2 * 10  # prompt + 2 candidates
    non_embed = sum(p.numel() for n, p in model.language_model.named_parameters() if "embed" not in n)
    flops = 2 * non_embed * tokens_per_variant * len(variants)
    achieved = flops / dt / 1e9
    rate = len(variants) / dt
    print(f"--score-only: {rate:.2f} variants/s (goal >= 7); {tokens_per_variant:.0f} LLM tokens per variant; "
          f"{achieved:.0f} GFLOP/s = MFU {achieved / peak16:.0%} of bf16 peak, {achieved / peak32:.0%} of fp32 peak "
          f"(goal >= 40%)")
    rss_score = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20

    sub = variants[:args.n_traces]
    tr = VariantPredictor(model, proc, PredictConfig(labels=("LOF", "FUNC"), traces=True,
                                                     max_new_tokens=args.new_tokens))
    tr.predict(sub[:2])
    t0 = time.perf_counter()
    for i in range(0, len(sub), args.trace_batch):
        tr.predict(sub[i:i + args.trace_batch])
    batched = len(sub) / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for v in sub:  # a per-variant loop: one generate call per variant
        tr.predict([v])
    loop = len(sub) / (time.perf_counter() - t0)
    print(f"--traces ({args.new_tokens} new tokens): batched {batched:.2f} variants/s, per-variant loop "
          f"{loop:.2f} variants/s: {batched / loop:.1f}x (goal >= 4x)")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"peak RSS: {rss_score:.2f} GiB after score-only, {rss:.2f} GiB overall (goal <= 1.5 GiB)")


if __name__ == "__main__":
    sys.exit(main())
