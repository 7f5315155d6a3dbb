"""The original BioReason, measured in the same run as our benchmarks (never a figure from another day).

``peer_figures()`` runs ``../shared/peer/bench_bioreason.py`` (the original code on the reference workload, see its
README) when that folder is there and returns its summary as ``{"lora_step", "lora_rss", "gen_b1", "gen_b8",
"positions_per_kb", "measured": True}``; without it, it says so and returns the figures PEER-NOTES.md recorded on
another day (``"measured": False``), which the caller must label as such.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PEER_DIR = ROOT.parent / "shared" / "peer"
RECORDED = {"lora_step": 6.04, "full_step": 8.19, "gen_b1": 13.6, "gen_b8": 41.8, "positions_per_kb": 176,
            "lora_rss": 3.8, "measured": False}  # PEER-NOTES.md, another day: only when the original cannot run


def peer_figures(phases: str = "sft_lora,gen_b1,gen_b8", reps: int = 3, timeout: int = 1800) -> dict:
    script = PEER_DIR / "bench_bioreason.py"
    if not script.is_file():
        print(f"the original BioReason is not here ({PEER_DIR} missing): ratios below use PEER-NOTES.md's figures "
              "from another day, not a side-by-side measurement", file=sys.stderr)
        return dict(RECORDED)
    with tempfile.TemporaryDirectory() as work:
        run = subprocess.run([sys.executable, str(script), "--phases", phases, "--reps", str(reps), "--warmup", "1",
                              "--work", work], capture_output=True, text=True, timeout=timeout)
    lines = [x for x in run.stdout.splitlines() if x.strip().startswith("{")]
    if run.returncode != 0 or not lines:
        print(f"the original's benchmark failed (exit {run.returncode}): {run.stderr[-500:]}; using PEER-NOTES.md's "
              "figures from another day", file=sys.stderr)
        return dict(RECORDED)
    s = json.loads(lines[-1]).get("summary", {})
    return {"lora_step": s.get("sft_lora_s_per_step"), "lora_rss": (s.get("sft_lora_peak_rss_mib") or 0) / 1024,
            "gen_b1": s.get("gen_b1_new_tokens_per_s"), "gen_b8": s.get("gen_b8_new_tokens_per_s"),
            "full_step": RECORDED["full_step"], "positions_per_kb": s.get("dna_pad_tokens_per_1024nt_seq", 176),
            "measured": True}
