"""Does ``torch.compile`` pay for decoding? One greedy decode step of the embedded default's LLM, eager vs compiled.

The LLM is the embedded default's architecture (SmolLM2-135M: 30 layers, hidden 576) with a static KV cache
(transformers ``StaticCache``, the cache our slot decoder uses), fed a prompt of ``--prompt`` tokens and then
``--steps`` single-token steps at each of ``--batches``. Compiled: ``torch.compile`` of the forward as transformers'
own ``generate`` does it for static caches (inductor, ``mode=reduce-overhead``: CUDA graphs on a GPU; plain
inductor on CPU), fixed shapes, the cache's tensors at static addresses. Prints new tokens/s eager and compiled, the
speed-up, the one-off compile time, and the largest logit difference between the two (random weights, seed 0:
speed does not depend on weight values, so this also runs where the real weights are not installed).
Usage: ``python benchmarks/compile_decode.py [--batches 1,8,64] [--device cuda]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", default="1,8,64")
    ap.add_argument("--prompt", type=int, default=256, help="prompt tokens (predict's prompts are about 265)")
    ap.add_argument("--steps", type=int, default=64)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    import torch
    from transformers import AutoModelForCausalLM, StaticCache
    from transformers.utils import logging as hf_logging

    from bioreason.configuration import DNALLMConfig
    from bioreason.hub import default_model_dir

    hf_logging.set_verbosity_error()
    warnings.filterwarnings("ignore", category=FutureWarning)  # past_key_values= (5.24 prefers cache=; 5.17 knows only this)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    cfg = DNALLMConfig.from_pretrained(default_model_dir()).text_config
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg).to(device=device, dtype=dtype).eval()
    mode = "reduce-overhead" if device == "cuda" else None
    where = torch.cuda.get_device_name(0) if device == "cuda" else f"{torch.get_num_threads()} CPU threads"
    print(f"torch {torch.__version__}, {where}, {str(dtype).split('.')[-1]}, prompt {args.prompt} tokens, "
          f"{args.steps} steps, compile mode {mode or 'default'}")

    for bsz in [int(b) for b in args.batches.split(",") if b]:
        ids = torch.randint(100, cfg.vocab_size, (bsz, args.prompt), device=device)
        results = {}
        for name in ("eager", "compiled"):
            cache = StaticCache(config=cfg, max_cache_len=args.prompt + args.steps)
            fwd = model.forward
            if name == "compiled":
                torch._dynamo.reset()
                fwd = torch.compile(model.forward, mode=mode, fullgraph=False, dynamic=False)

            def decode(fwd=fwd, cache=cache):
                """Prefill (eager: its shape differs from the steps'), then the steps; the steps' logits."""
                cache.reset()
                out = model(input_ids=ids, past_key_values=cache, use_cache=True,
                            cache_position=torch.arange(args.prompt, device=device), logits_to_keep=1)
                tok = out.logits[:, -1].argmax(-1, keepdim=True)
                logits = []
                for t in range(args.steps):
                    pos = torch.tensor([args.prompt + t], device=device)
                    out = fwd(input_ids=tok, past_key_values=cache, use_cache=True, cache_position=pos,
                              logits_to_keep=1)
                    step_logits = out.logits[:, -1].float().clone()
                    logits.append(step_logits)
                    tok = step_logits.argmax(-1, keepdim=True)
                sync()
                return torch.stack(logits, 1)

            with torch.inference_mode():
                t0 = time.perf_counter()
                first = decode()
                warm = time.perf_counter() - t0
                times = []
                for _ in range(args.reps):
                    t0 = time.perf_counter()
                    decode()
                    times.append(time.perf_counter() - t0)
            results[name] = (statistics.median(times), warm, first)
        (te, _, le), (tc, warm, lc) = results["eager"], results["compiled"]
        same = (le.argmax(-1) == lc.argmax(-1)).float().mean().item()
        print(f"batch {bsz}: eager {bsz * args.steps / te:.0f} new tokens/s, compiled {bsz * args.steps / tc:.0f} "
              f"({te / tc:.2f}x; first call {warm:.1f} s with compilation); greedy tokens equal {same:.1%}, largest "
              f"logit difference {(le - lc).abs().max().item():.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
