"""The KEGG disease-reasoning task as kegg-v1 trains and serves it: variants read from the two sequences, the
prompt options (compact gene list, stated variant, cut trace), the question-grouped holdout, the task spec a
trained folder records, ``ask``'s prompt for a KEGG model, sklearn-style macro-F1, and ``eval --task kegg`` with
generated answers and the LLM-only baseline. Real records: the first 50 of the KEGG train split."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bioreason.kegg_data.tasks import get_task, kegg_example, kegg_facts, kegg_question, kegg_trace, kegg_variant

DATA = Path(__file__).parent / "data"
FLANK = "ACGT" * 500  # 2,000 nt


def test_kegg_variant_reads_snvs_and_indels_from_the_records_layout():
    assert kegg_variant(FLANK + "C" + FLANK, FLANK + "T" + FLANK) == ("C", "T", 2000)
    assert kegg_variant(FLANK + "AG" + FLANK, FLANK + "AGTTAG" + FLANK) == ("AG", "AGTTAG", 2000)
    assert kegg_variant(FLANK + "CTTA" + FLANK, FLANK + "C" + FLANK) == ("CTTA", "C", 2000)
    # other layouts: the one differing segment, an indel keeping its anchor base as VCF does
    assert kegg_variant("AAACAAA", "AAATAAA") == ("C", "T", 3)
    assert kegg_variant("ACGTTTGCA", "ACGTTTTGCA") == ("T", "TT", 5)  # after the repeat, anchor kept
    assert kegg_variant("ACGT", "ACGT") is None


def test_long_variants_are_stated_by_their_size_past_max_variant_nt():
    from bioreason.kegg_data.tasks import variant_text

    assert variant_text("C", "T", 12) == "C>T" and variant_text("AG", "AGTTAG", 12) == "AG>AGTTAG"
    assert variant_text("CTG" * 8, "CTG" * 30, None) == f"{'CTG' * 8}>{'CTG' * 30}"  # no option: spelt out
    assert variant_text("CTG" * 8, "CTG" * 30, 12) == "a 66-nt insertion"  # shared bases trimmed, anchor kept
    assert variant_text("G" + "CAG" * 10, "G", 12) == "a 30-nt deletion"
    assert variant_text("ACGTACGTAC", "TTTTTTTTTTTT", 12) == "a 10-nt to 12-nt replacement"
    assert variant_text("AAAAAAAAAC", "AAAAAAAAAT", 12) == "C>T"  # long only before trimming
    facts = kegg_facts("Network Definition of the pathway: ATXN3*", FLANK + "CTG" * 8 + FLANK,
                       FLANK + "CTG" * 30 + FLANK, max_variant_nt=12)
    assert facts["change"] == "a 66-nt insertion"
    ex = kegg_example("Network Definition of the pathway: ATXN3*\nGiven this context, what disease does this "
                      "ATXN3 allele contribute to?", FLANK + "CTG" * 8 + FLANK, FLANK + "CTG" * 30 + FLANK,
                      "spinocerebellar ataxia", "Step 1: An expansion.", state_variant=True, trace_steps=1,
                      max_variant_nt=12)
    assert ex.question.startswith("Variant: a 66-nt insertion\n")
    assert ex.reasoning.startswith("The variant is a 66-nt insertion in ATXN3.")


def test_gene_description_keeps_the_asked_genes_product_in_prompt_and_trace():
    q = ("Network Definition of the pathway: SNCA* -> PRKN\nGenes in the pathway: SNCA; synuclein alpha | PRKN; "
         "parkin RBR E3 ubiquitin protein ligase\n\nGiven this context, what is the biological effect of this SNCA "
         "allele, specifically what disease does this contribute to?")
    kw = dict(compact_genes=True, state_variant=True, trace_steps=1)
    ex = kegg_example(q, FLANK + "C" + FLANK, FLANK + "T" + FLANK, "parkinson's disease",
                      "Step 1: SNCA encodes alpha-synuclein.", gene_description=True, **kw)
    assert "Genes in the pathway: SNCA (synuclein alpha), PRKN\n" in ex.question
    assert ex.reasoning.startswith("The variant is C>T in SNCA (synuclein alpha).\nStep 1:")
    assert "product" not in ex.meta  # the facts traces are checked against are unchanged
    plain = kegg_example(q, FLANK + "C" + FLANK, FLANK + "T" + FLANK, "parkinson's disease",
                         "Step 1: SNCA encodes alpha-synuclein.", **kw)
    assert "Genes in the pathway: SNCA, PRKN\n" in plain.question and "(synuclein" not in plain.reasoning
    other = kegg_example(q.replace("this SNCA", "this GBA1"), FLANK + "C" + FLANK, FLANK + "T" + FLANK, "x",
                         "Step 1: x.", gene_description=True, **kw)  # a gene the list lacks: nothing added
    assert "Genes in the pathway: SNCA, PRKN\n" in other.question and other.reasoning.startswith(
        "The variant is C>T in GBA1.")


def test_the_datasets_reasoning_states_the_variant_read_from_its_sequences():
    """On the 50 real records, the computed variant is what the Claude-written reasoning names in >= 80%."""
    rows = [json.loads(x) for x in (DATA / "kegg_sample.jsonl").read_text().splitlines()]
    facts = [kegg_facts(r["question"], r["reference_sequence"], r["variant_sequence"]) for r in rows]
    assert all(f["change"] for f in facts)
    assert sum(f["change"] in r["reasoning"] for f, r in zip(facts, rows)) / len(rows) >= 0.8
    assert facts[0] == {"starred": "PDE11A,PDE8B", "gene": "PDE11A", "change": "C>T"}


def test_prompt_options_rewrite_the_question_and_cut_the_trace():
    row = json.loads((DATA / "kegg_sample.jsonl").read_text().splitlines()[0])
    facts = kegg_facts(row["question"], row["reference_sequence"], row["variant_sequence"])
    q = kegg_question(row["question"], facts, compact_genes=True, state_variant=True)
    assert q.startswith("Variant: C>T\nChromosome Number: 4")
    assert "Genes in the pathway: PDE11A, PDE8B, PRKAR1A" in q and "phosphodiesterase" not in q.split("Genes")[1]
    assert q.endswith("what disease does this contribute to?")
    assert kegg_question(row["question"], facts) == row["question"]  # no options: unchanged
    trace = kegg_trace(row["reasoning"], facts, steps=2)
    lines = trace.splitlines()
    assert lines[0] == "The variant is C>T in PDE11A." and [x[:7] for x in lines[1:]] == ["Step 1:", "Step 2:"]
    assert kegg_trace(row["reasoning"], facts, None) == row["reasoning"]


def test_holdout_groups_by_the_datasets_question_even_with_the_variant_stated(tmp_path):
    """With ``state_variant`` every prompt of a pathway differs; the holdout still keeps a pathway on one side."""
    from bioreason.kegg_data.build import build_examples

    data = {"task": "kegg", "source": str(DATA / "kegg_sample.jsonl"), "split": "train",
            "options": {"state_variant": True, "compact_genes": True, "trace_steps": 3,
                        "holdout": {"part": "train", "fraction": 0.3, "seed": 0}}}
    train, labels = build_examples(data)
    val, _ = build_examples({**data, "options": {**data["options"], "holdout": {"part": "validation",
                                                                                "fraction": 0.3}}})
    assert len(train) + len(val) == 50 and len(val) >= 15
    assert all(isinstance(e.meta["question_decides"], bool) for e in train + val)
    assert not {e.meta["group"] for e in train} & {e.meta["group"] for e in val}
    assert len({e.question for e in val}) > len({e.meta["group"] for e in val})  # stated variants differ
    # the closed set is taken before the holdout: names only the validation part has are in it
    assert len(labels) == len({json.loads(x)["answer"] for x in (DATA / "kegg_sample.jsonl").open()})
    from bioreason.errors import RecipeError

    with pytest.raises(RecipeError, match=r"\['stated_variant'\] mean nothing to the kegg task"):
        build_examples({**data, "options": {"stated_variant": True}})
    # YAML's {part:validation} (no space) is the key 'part:validation': an error, not the train part in silence
    with pytest.raises(RecipeError, match=r"option holdout: unknown key 'part:validation' \(YAML needs a space"):
        build_examples({**data, "options": {"holdout": {"part:validation": None}}})
    with pytest.raises(RecipeError, match=r"option holdout='seen': give a mapping \{part: train\|validation\|seen"):
        build_examples({**data, "options": {"holdout": "seen"}})


def test_a_seen_holdout_keeps_its_questions_in_training_and_the_three_parts_do_not_overlap():
    """``seen`` draws single records whose pathway questions other training records still ask (as BioReason's own
    random val/test split does); the three parts cover the split once, and the draw does not follow file order."""
    from bioreason.errors import RecipeError
    from bioreason.kegg_data.build import build_examples

    data = {"task": "kegg", "source": str(DATA / "kegg_sample.jsonl"), "split": "train"}
    hold = {"fraction": 0.3, "seen": 0.2, "seed": 0}
    parts = {p: build_examples({**data, "options": {"holdout": {**hold, "part": p}}})[0]
             for p in ("train", "validation", "seen")}
    rows = {p: {e.meta["row"] for e in ex} for p, ex in parts.items()}
    assert sum(map(len, rows.values())) == 50 and len(set().union(*rows.values())) == 50
    assert 0 < len(rows["seen"]) <= round(0.2 * (50 - len(rows["validation"])))
    groups = {p: {e.meta["group"] for e in ex} for p, ex in parts.items()}
    assert not groups["validation"] & (groups["train"] | groups["seen"])
    assert groups["seen"] <= groups["train"]  # their questions stay in training
    assert sorted(rows["seen"]) != list(range(min(rows["seen"]), min(rows["seen"]) + len(rows["seen"])))
    # the grouped part is the same with or without a seen fraction
    assert rows["validation"] == {e.meta["row"] for e in build_examples(
        {**data, "options": {"holdout": {"part": "validation", "fraction": 0.3}}})[0]}
    with pytest.raises(RecipeError, match="holdout part 'seen' is empty"):
        build_examples({**data, "options": {"holdout": {"part": "seen", "fraction": 0.3}}})
    with pytest.raises(RecipeError, match="holdout part 'test'"):
        build_examples({**data, "options": {"holdout": {"part": "test"}}})


def test_names_are_scored_as_the_data_writes_them(tiny_session):
    """The label ``alzheimer s disease`` (normalised) is scored as the trained answer ``alzheimer's disease``: the
    normalised form put the three possessive names last (31 of 37 likelihood errors on kegg-v1's seen part)."""
    import torch

    from bioreason.evaluation import llm_predictions
    from bioreason.kegg_data.build import build_examples
    from bioreason.rl import score_candidates

    examples, labels = build_examples({"task": "kegg", "source": str(DATA / "kegg_sample.jsonl"), "split": "train",
                                       "options": {"holdout": {"part": "validation", "fraction": 0.3}}})
    texts = examples[0].meta["label_texts"]
    assert set(texts) == set(labels) and texts["alzheimer s disease"] == "alzheimer's disease"
    assert texts["cushing syndrome"] == "cushing syndrome"
    model, proc = tiny_session
    preds = llm_predictions(model, proc, examples[:2], labels, normalise=True)
    prompts = [e.to_messages(None, "dna", with_answer=False) for e in examples[:2]]
    want = torch.softmax(score_candidates(model, proc, prompts, [texts[lab] for lab in labels], normalise=True), 1)
    got = torch.tensor([[p["probs"][lab] for lab in labels] for p in preds])
    assert torch.allclose(got, want, atol=1e-6)
    plain = torch.softmax(score_candidates(model, proc, prompts, labels, normalise=True), 1)
    assert not torch.allclose(got, plain, atol=1e-4)  # the possessive names score differently as written


def test_a_kegg_folder_records_its_prompt_and_ask_rebuilds_it():
    from bioreason.errors import InputFormatError
    from bioreason.inference import model_messages
    from bioreason.kegg_data.build import task_spec
    from bioreason.predict import PredictConfig

    opts = {"compact_genes": True, "state_variant": True, "trace_steps": 3, "max_variant_nt": 12}
    spec = task_spec({"task": "kegg", "window": 512, "options": {**opts, "holdout": {"part": "train"}}},
                     ["b", "a", "b"], label_set=["c", "a", "b"])
    assert spec["prompt"] == "kegg" and spec["labels"] == ["a", "b", "c"] and spec["kegg"] == opts
    assert spec["mode"] == "dna" and "label_texts" not in spec
    written = task_spec({"task": "kegg"}, label_set=["a s b"], label_texts={"a s b": "a's b"})
    assert PredictConfig(label_texts=written["label_texts"]).label_texts == {"a s b": "a's b"}
    cfg = PredictConfig(**{k: v for k, v in spec.items() if k in PredictConfig.__dataclass_fields__})
    row = json.loads((DATA / "kegg_sample.jsonl").read_text().splitlines()[0])
    msgs = model_messages(row["question"], [row["reference_sequence"], row["variant_sequence"]], cfg, None, 512)
    dna = [p for p in msgs[-1]["content"] if p["type"] == "dna"]
    assert [len(p["sequence"]) for p in dna] == [512, 512]
    assert dna[0]["sequence"][256] == "C" and dna[1]["sequence"][256] == "T"  # the variant in the middle
    assert dna[0]["sequence"][:256] == dna[1]["sequence"][:256]
    training = get_task("kegg", dna_length=512, **opts).to_example(row, 0)
    assert msgs == training.to_messages(spec["system"], "dna", with_answer=False)  # ask == training prompt
    with pytest.raises(InputFormatError, match="two sequences.*got 1"):
        model_messages(row["question"], [row["reference_sequence"]], cfg, None, 512)
    plain = model_messages("what is this?", ["ACGT"], PredictConfig(), None, 512)  # other models: plain chat
    assert plain[-1]["content"][-1]["text"] == "what is this?"


def test_example_without_dna_for_the_llm_only_baseline():
    e = kegg_example("Q?", FLANK + "C" + FLANK, FLANK + "T" + FLANK, "melanoma")
    assert e.to_messages(None, "none", with_answer=False) == [{"role": "user", "content": [{"type": "text",
                                                                                           "text": "Q?"}]}]


def test_macro_f1_averages_the_classes_present_as_scikit_learn_does():
    from sklearn.metrics import f1_score

    from bioreason.kegg_data.metrics import classification_metrics

    golds, preds = ["a", "a", "b", "c"], ["a", "b", "b", "a"]
    m = classification_metrics(golds, preds, ["a", "b", "c", "d", "e"])  # d, e: neither present nor predicted
    assert m["macro_f1"] == pytest.approx(f1_score(golds, preds, average="macro"))


def test_kegg_eval_scores_generated_answers_and_the_llm_only_baseline(tiny_model_dir, tmp_path, capsys):
    from bioreason.app.cli import main

    out = tmp_path / "r"
    rc = main(["eval", "--task", "kegg", "--source", str(DATA / "kegg_sample.jsonl"), "--split", "train",
               "--limit", "6", "--model", str(tiny_model_dir), "--text-model", str(tiny_model_dir),
               "--traces", "all", "--max-new-tokens", "8", "--bootstrap", "10", "-o", str(out)])
    assert rc == 0
    report = json.loads((out / "report.json").read_text())
    assert {"dna-llm", "dna-llm-generated", "llm-only", "llm-only-generated"} <= set(report["systems"])
    err = capsys.readouterr().err  # each long step reports its progress
    for step in ("dna-llm scoring", "dna-llm traces", "llm-only scoring", "llm-only traces"):
        assert f"eval: {step}: 6/6 (100.0%) items" in err
    labels = report["labels"]  # a long label set is shown by its count, first three and last
    assert len(labels) > 6 and f"{len(labels)} labels: {', '.join(labels[:3])}, ..., {labels[-1]}" in err
    gen = report["systems"]["dna-llm-generated"]
    checks = report["trace_checks"]["dna-llm"]
    assert checks["n"] == 6 and gen["accuracy"] == pytest.approx(checks["answer_accuracy"])
    assert "top1_likelihood" not in gen  # generated answers have no likelihoods
    assert (out / "confusion_dna-llm-generated.png").is_file()
    # every item answered from the closed set: the traces' own names where valid, completed where the 8-token
    # trace named none (the tiny model's do)
    assert {"dna-llm-answered", "llm-only-answered"} <= set(report["systems"])
    items = report["items"]
    assert all(it["dna-llm-answered"]["pred"] in report["labels"] for it in items)
    for it in items:
        if it["dna-llm-generated"]["pred"] in report["labels"]:
            assert it["dna-llm-answered"]["pred"] == it["dna-llm-generated"]["pred"]
    assert checks["completed"] == sum(it["dna-llm-generated"]["pred"] not in report["labels"] for it in items) >= 1
    # the 8-token traces were closed at the cap by budget forcing (the default), and the report says so
    assert report["meta"]["traces"] == {"n": -1, "max_new_tokens": 8, "answer_tokens": 32}
    assert checks["forced"] == sum(it["forced"] for it in checks["items"]) >= 1


def test_the_answer_after_a_trace_is_scored_without_the_traces_own_answer():
    from bioreason.kegg_evaluation import answer_prefix_after

    done = "<think>\nThe variant is C>T in KRAS.\n</think>\n\nAnswer: melanoma"
    assert answer_prefix_after(done) == "<think>\nThe variant is C>T in KRAS.\n</think>\n\nAnswer: "
    assert answer_prefix_after("<think>\nStep 1: Answer: x\n</think>\n\nAnswer: y").endswith("</think>\n\nAnswer: ")
    assert answer_prefix_after("<think>\nGCTGCTGCT") == "<think>\nGCTGCTGCT\n</think>\n\nAnswer: "  # cut at the cap
    assert answer_prefix_after("<think>\nshort\n</think>\n") == "<think>\nshort\n</think>\n\nAnswer: "


def test_ask_a_kegg_model_with_two_fasta_files(tmp_path, capsys):
    """``bioreason ask --model KEGG --dna REF.fa --dna ALT.fa "question"`` on the shipped example (4,001-nt
    sequences, cropped around the variant); one sequence is a one-line error naming the fix."""
    from bioreason.app.cli import main
    from conftest import save_tiny_kegg

    folder = save_tiny_kegg(tmp_path / "kegg")
    ex = Path(__file__).parents[1] / "examples" / "kegg"
    question = (ex / "ask_question.txt").read_text()
    assert main(["ask", "--model", str(folder), "--dna", str(ex / "ref.fa"), "--dna", str(ex / "alt.fa"), question,
                 "--max-new-tokens", "4"]) == 0
    # 4 tokens name no disease: ask completes the answer with the most likely of the model's names, as written
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("Answer (completed: the trace named none of the model's 3 diseases")
    assert last.rsplit(": ", 1)[1] in ("parkinson's disease", "colorectal cancer", "melanoma")
    assert main(["ask", "--model", str(folder), "--dna", str(ex / "ref.fa"), question]) == 2
    assert "pass --dna REF --dna ALT" in capsys.readouterr().err
    assert main(["ask", "--model", str(folder), "--dna", str(ex / "ref.fa"), "--dna", str(ex / "ref.fa"), question,
                 "--max-new-tokens", "2"]) == 0  # the same sequence twice: answered, with a warning
    assert "warning: the reference and variant sequences are the same" in capsys.readouterr().err


def test_predict_refuses_a_kegg_model_with_a_clear_error(tmp_path, capsys):
    from bioreason.app.cli import main
    from conftest import save_tiny_kegg

    folder = save_tiny_kegg(tmp_path / "kegg")
    vcf = Path(__file__).parents[1] / "examples" / "brca1_sge_24.vcf"
    assert main(["predict", str(vcf), "--fasta", "bundled", "--model", str(folder), "-o", str(tmp_path / "o")]) == 2
    assert "is a KEGG pathway model" in capsys.readouterr().err


def test_an_interrupted_trace_step_resumes_from_its_last_finished_chunk(tmp_path, monkeypatch):
    """A KEGG eval with traces spends most of its time in one step; interrupted there, --resume redid every trace.
    Now each finished chunk of prompts is kept: the resumed run generates only the chunks not finished, and the
    report is the uninterrupted one."""
    from bioreason import sampling
    from bioreason.app.cli import main
    from conftest import save_tiny_kegg

    folder = save_tiny_kegg(tmp_path / "kegg")
    cmd = ["eval", "--task", "kegg", "--source", str(DATA / "kegg_sample.jsonl"), "--split", "train", "--limit", "12",
           "--model", str(folder), "--traces", "all", "--max-new-tokens", "4", "--batch-size", "1",
           "--bootstrap", "20"]  # 12 traces in chunks of 4 prompts
    assert main(cmd + ["-o", str(tmp_path / "whole")]) == 0
    real, calls = sampling.sample_groups, []

    def second_chunk_interrupted(*a, **k):
        calls.append(len(a[2]))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(sampling, "sample_groups", second_chunk_interrupted)
    out = tmp_path / "r"
    assert main(cmd + ["-o", str(out)]) == 130
    kept = sorted(p.name for p in (out / ".eval-steps" / "dna-llm-traces.chunks").iterdir())
    assert kept == ["0000000.json"]
    calls.clear()
    monkeypatch.setattr(sampling, "sample_groups", lambda *a, **k: (calls.append(len(a[2])), real(*a, **k))[1])
    assert main(cmd + ["--resume", "-o", str(out)]) == 0
    assert calls == [4, 4]  # the two unfinished chunks only
    assert (out / "report.json").read_text() == (tmp_path / "whole" / "report.json").read_text()


def test_eval_refuses_a_model_trained_for_another_task(tmp_path, capsys):
    """eval --task kegg with the BRCA1 model (or a KEGG model on variant effects) wrote a report of nonsense."""
    from bioreason.app.cli import main
    from conftest import save_tiny_kegg

    folder = save_tiny_kegg(tmp_path / "kegg")
    vcf = Path(__file__).parents[1] / "examples" / "brca1_sge_24.vcf"
    assert main(["eval", "--task", "annotated_vcf", "--source", str(vcf), "--fasta", "bundled", "--model",
                 str(folder), "-o", str(tmp_path / "a")]) == 2
    assert "is a KEGG pathway model (it names one of 3 diseases); evaluate it with --task kegg" in \
        capsys.readouterr().err
    assert main(["eval", "--task", "kegg", "--source", str(DATA / "kegg_sample.jsonl"), "--split", "train",
                 "-o", str(tmp_path / "b")]) == 2  # the default model is the BRCA1 one
    assert "was trained on annotated_variant prompts (labels LOF, FUNC), not on the KEGG task; --task kegg needs " \
           "a KEGG model, e.g. --model kegg-v1" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b" / "report.json").exists()
