"""Core figures of the embedded default: prepare time, load time, ask tokens/s, peak RSS, LLM tokens per 1 kb.

Usage: ``python benchmarks/core.py [--fresh] [--repeats 3] [--new-tokens 64]``. ``--fresh`` prepares into a
temporary $BIOREASON_HOME to time a first build. Generation speed is the median of ``--repeats`` greedy runs of
``--new-tokens`` tokens on a real BRCA1 ref/alt window pair, in bf16 and in fp32, side by side.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--fresh", action="store_true")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--new-tokens", type=int, default=64)
    args = ap.parse_args()
    if args.fresh:
        os.environ["BIOREASON_HOME"] = tempfile.mkdtemp(prefix="bioreason-bench-")
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    from bioreason import checkpoints, hub
    from bioreason.app.cmd_ask import read_dna_argument
    from bioreason.inference import build_messages, generation_kwargs

    t0 = time.perf_counter()
    hub.prepare_default()
    prepare_s = time.perf_counter() - t0
    dna = [read_dna_argument(str(ROOT / "examples" / f)) for f in ("brca1_ref.fa", "brca1_alt.fa")]
    msgs = build_messages("What is the effect of the variant in the second sequence?", dna)
    print(f"torch threads: {torch.get_num_threads()}")
    print(f"prepare (first build if --fresh, else no-op): {prepare_s:.1f} s")
    for dtype in ("bfloat16", "float32"):
        t0 = time.perf_counter()
        model, proc = checkpoints.load_model(dtype=dtype)
        load_s = time.perf_counter() - t0
        inputs = proc([msgs])
        n_dna = int((inputs["input_ids"] == proc.dna_pad_id).sum())
        kw = generation_kwargs(proc, max_new_tokens=args.new_tokens)
        kw["eos_token_id"] = None  # fixed length, so rates compare
        rates, ttft = [], []
        with torch.inference_mode():
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                model(**inputs, logits_to_keep=1)
                ttft.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                out = model.generate(**inputs, **kw)
                rates.append((out.shape[1] - inputs["input_ids"].shape[1]) / (time.perf_counter() - t0))
        print(f"[{dtype}] load {load_s:.2f} s; prompt {inputs['input_ids'].shape[1]} tokens "
              f"({n_dna} DNA positions for 2 x 1,024 nt = {n_dna // 2} per 1 kb window); "
              f"prefill {statistics.median(ttft):.3f} s; ask greedy {statistics.median(rates):.1f} new tokens/s "
              f"(median of {args.repeats})")
        del model
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"peak RSS (both dtypes loaded in turn): {rss:.2f} GiB")


if __name__ == "__main__":
    sys.exit(main())
