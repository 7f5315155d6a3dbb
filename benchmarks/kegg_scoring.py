"""KEGG's 37 disease names scored by likelihood with the shipped ``kegg-v1``: packed candidates vs one per call.

``eval --task kegg`` labels each record by the length-normalised log-likelihood of each of the 37 names after the
prompt (``evaluation.llm_predictions`` -> ``candidates.score_candidates``). On a CPU, four or more candidates run
packed, side by side in one model call on the prompts' one KV cache (``candidates._packed_logprobs``); with
``CPU_PACK_FROM`` raised past 37 they run one name per call, as before packing. This script scores the same
``--n`` real records of the seen-pathway validation part both ways, alternating, ``--reps`` times each, and prints
items/s (median), the ratio, the predictions that differ and the largest probability change, with this machine's
fp32/bf16 matmul peaks measured in the same run (machines differ by 1.5x from day to day: compare ratios).
``--quantize`` as ``eval`` resolves it (``auto``: bf16 products where they pay, as the CLI scores).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
HOLDOUT = {"part": "seen", "fraction": 0.15, "seen": 0.08, "seed": 0}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=16, help="records of the seen-pathway part (default 16)")
    p.add_argument("--reps", type=int, default=3, help="timed runs of each arrangement (default 3)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--quantize", default="auto", help="as eval's --quantize (default auto)")
    args = p.parse_args(argv)

    import torch

    from predict import matmul_peak

    from bioreason import candidates, cpu_math
    from bioreason import evaluation as ev
    from bioreason.checkpoints import load_model
    from bioreason.hub import named_model
    from bioreason.kegg_data.build import build_examples
    from bioreason.kegg_data.tasks import SYSTEM_PROMPT
    from bioreason.predict import PredictConfig
    from bioreason.quantize import resolve_mode

    cpu_math.configure_from_env()  # as the CLI: oneDNN fp32 matmuls where they keep full precision
    path = named_model("kegg-v1")
    pcfg = PredictConfig.for_model(path)
    mode = resolve_mode(args.quantize, "cpu", False) if args.quantize == "auto" else args.quantize
    model, proc = load_model(path, quantize=mode)
    data = {"task": "kegg", "source": str(ROOT / "examples" / "kegg"), "split": "train", "limit": None,
            "options": {**(pcfg.kegg or {}), "holdout": HOLDOUT}}
    examples, _ = build_examples(data, proc.max_nucleotides)
    examples = examples[:args.n]
    labels = list(pcfg.labels)
    peaks = {k: matmul_peak(d) for k, d in (("fp32", torch.float32), ("bf16", torch.bfloat16))}
    print(f"kegg-v1, {len(examples)} seen-pathway records x {len(labels)} names, batch {args.batch_size}, "
          f"--quantize {mode}, {torch.get_num_threads()} threads, oneDNN fp32 matmuls {cpu_math.onednn_in_use()}; "
          f"matmul peak fp32 {peaks['fp32']:.0f}, "
          f"bf16 {peaks['bf16']:.0f} GFLOP/s", flush=True)

    def score():
        return ev.llm_predictions(model, proc, examples, labels, pcfg.system or SYSTEM_PROMPT, "dna",
                                  args.batch_size, pcfg.label_log_prior, pcfg.decision, normalise=True)

    packed_from = candidates.CPU_PACK_FROM
    arrangements = {"one name per call": 10 ** 9, "packed": packed_from}
    times: dict[str, list[float]] = {k: [] for k in arrangements}
    preds: dict[str, list] = {}
    try:
        score()  # warm-up: the template prefix cache and oneDNN's kernels
        for _ in range(args.reps):
            for name, pack_from in arrangements.items():
                candidates.CPU_PACK_FROM = pack_from
                t = time.perf_counter()
                preds[name] = score()
                times[name].append(time.perf_counter() - t)
    finally:
        candidates.CPU_PACK_FROM = packed_from
    rate = {k: len(examples) / statistics.median(v) for k, v in times.items()}
    for name in arrangements:
        print(f"{name:>18}: {rate[name]:.2f} items/s (median of {args.reps}: "
              f"{', '.join(f'{t:.1f}' for t in times[name])} s)")
    one, packed = preds["one name per call"], preds["packed"]
    differ = sum(a["pred"] != b["pred"] for a, b in zip(one, packed))
    drift = max(abs(a["probs"][k] - b["probs"][k]) for a, b in zip(one, packed) for k in labels)
    print(f"packed / one per call: {rate['packed'] / rate['one name per call']:.2f}x; predictions differing "
          f"{differ} of {len(examples)}; largest probability change {drift:.1e}")
    return 0 if differ == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
