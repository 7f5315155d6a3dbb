"""1,000 malformed VCFs through predict and the demo (tests/fuzz_vcf.py) in a child process: zero crashes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_predict_and_demo_survive_a_thousand_malformed_vcfs(tiny_model_dir):
    run = subprocess.run([sys.executable, str(Path(__file__).parent / "fuzz_vcf.py"), str(tiny_model_dir), "1000"],
                         capture_output=True, text=True, timeout=3000)
    assert run.returncode == 0, (run.returncode, run.stdout[-2000:], run.stderr[-4000:])  # -11 would be a segfault
    stats = json.loads(run.stdout.strip().splitlines()[-1])
    print(stats)
    assert stats["examples"] == 1000
    assert stats["predicted_ok"] > 100 and stats["predict_errors"] > 100  # both outcomes exercised
