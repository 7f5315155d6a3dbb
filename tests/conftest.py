"""Shared fixtures: a tiny random DNA-LLM built in-process, and real DNA from the bundled GRCh38 slice."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"
SLICE_START = 43044294  # chr17 position of index 0 of the plain slice (see tests/data/PROVENANCE.md)

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")  # as the CLI sets it: bit-reproducible math before torch loads


@pytest.fixture(scope="session", autouse=True)
def cpu_matmuls_as_the_cli():
    """fp32 CPU matmuls on the backend the CLI picks (``bioreason.cpu_math``) from the first test on, so a test's
    figures do not depend on whether an earlier test ran the CLI in-process."""
    from bioreason.cpu_math import configure_from_env

    configure_from_env()


@pytest.fixture(scope="session")
def chr17_slice() -> str:
    text = (DATA / "GRCh38_chr17_43044294-43125363.fa").read_text()
    return "".join(text.split("\n", 1)[1].split())


@pytest.fixture(scope="session")
def real_windows(chr17_slice):
    """Three real 1,024-nt windows from BRCA1 exons/introns."""
    return [chr17_slice[i:i + 1024] for i in (1411, 5000, 19000)]


@pytest.fixture()
def tiny():
    from bioreason.tiny import build_tiny

    return build_tiny(seed=0)


@pytest.fixture(scope="session")
def tiny_session():
    from bioreason.tiny import build_tiny

    return build_tiny(seed=0)


def save_tiny(folder, seed: int = 0):
    """A tiny random DNA-LLM written as a model folder (what ``--model`` takes)."""
    from bioreason.tiny import build_tiny

    model, proc = build_tiny(seed=seed)
    model.save_pretrained(folder)
    proc.save_pretrained(folder)
    return folder


def save_tiny_kegg(folder, seed: int = 3, labels=("parkinson s disease", "colorectal cancer", "melanoma")):
    """A tiny random model folder that says it is a KEGG model, as a kegg-v1 training run writes it."""
    import json

    from bioreason.kegg_data.build import task_spec

    save_tiny(folder, seed=seed)
    spec = task_spec({"task": "kegg", "options": {"compact_genes": True, "state_variant": True}},
                     label_set=list(labels), label_texts={lab: lab.replace(" s ", "'s ") for lab in labels})
    (Path(folder) / "bioreason_task.json").write_text(json.dumps(spec))
    return folder


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    """A saved tiny model (seed 1), shared by the tests of one module."""
    return save_tiny(tmp_path_factory.mktemp("tiny-model"), seed=1)


@pytest.fixture()
def offline_hub(monkeypatch):
    """No network to the Hugging Face Hub: its host does not resolve, and no offline flag, proxy or endpoint set
    (``bioreason.hub.hub_unreachable`` then judges by the caches alone)."""
    import socket

    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy",
                 "HF_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)

    def no_dns(host, *a, **k):
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    return monkeypatch

