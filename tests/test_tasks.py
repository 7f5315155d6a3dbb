"""Task classes on real KEGG records, the shared answer parser, metrics, and users' own datasets."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest

from bioreason.answers import extract_answer, match_label, split_think
from bioreason.errors import DatasetValidationError, InputFormatError
from bioreason.kegg_data.metrics import classification_metrics
from bioreason.kegg_data.tasks import TASKS, get_task
from bioreason.kegg_data.user_data import examples_from_vcf, load_user_dataset

DATA = Path(__file__).parent / "data"
CHR17 = Path(__file__).parents[1] / "kegg_data" / "data" / "GRCh38_chr17_BRCA1_Nmasked.fa.gz"


def test_kegg_real_records_load_and_render(tiny_session):
    task = get_task("kegg", dna_length=1024)
    examples = task.load(str(DATA / "kegg_sample.jsonl"))
    assert len(examples) == 50 and examples[0].meta["label"] == "cushing syndrome"
    raw = json.loads((DATA / "kegg_sample.jsonl").read_text().splitlines()[0])
    ex = examples[0]
    assert ex.dna[0] == raw["reference_sequence"][2000 - 512:2000 + 512]  # cropped around the variant
    assert ex.dna[0][512] != ex.dna[1][512]  # the SNV sits at the documented offset
    target = ex.target()
    assert target.startswith("<think>\nStep 1:") and target.endswith("Answer: cushing syndrome")
    _, proc = tiny_session
    batch = proc([task.to_messages(ex)])
    assert int((batch["input_ids"] == proc.dna_pad_id).sum()) == 128
    text = task.to_messages(ex, mode="text")
    assert "Reference sequence: " in text[-2]["content"][0]["text"] and text[-1]["role"] == "assistant"


def test_kegg_evaluate_perfect_and_wrong():
    task = get_task("kegg")
    examples = task.load(str(DATA / "kegg_sample.jsonl"))[:6]
    perfect = task.evaluate(examples, [e.target() for e in examples])
    assert perfect["accuracy"] == 1.0
    wrong = task.evaluate(examples, ["<think>x</think>\nAnswer: nothing"] * 6)
    assert wrong["accuracy"] == 0.0


@pytest.mark.parametrize("name", ["variant_effect_coding", "variant_effect_non_snv"])
def test_variant_effect_tasks_from_local_files(tmp_path, name):
    ref = "ACGT" * 1024  # 4,096 nt, like the non-SNV windows
    alt = ref[:2048] + "T" + ref[2049:]
    seq_col = "mutated_sequence" if name.endswith("non_snv") else "variant_sequence"
    rows = [{"question": "Is it pathogenic?", "answer": "pathogenic; ['Wilson_disease']", "reference_sequence": ref,
             seq_col: alt},
            {"question": "Is it pathogenic?", "answer": "benign", "reference_sequence": ref, seq_col: alt}]
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    task = get_task(name)
    ex = task.load(str(path))
    assert [e.meta["label"] for e in ex] == ["pathogenic", "benign"]
    assert len(ex[0].dna[0]) == 1024
    if name.endswith("non_snv"):
        assert ex[0].answer == "pathogenic; Wilson disease"
        assert ex[0].dna[1][512] == "T" and ex[0].dna[0][512] == ref[2048]
    out = task.evaluate(ex, ["<think>..</think>\nAnswer: Pathogenic.", "Answer: pathogenic and benign"])
    assert out["accuracy"] == 0.5 and out["unparsed"] == 1


def test_unknown_task_and_missing_column(tmp_path):
    with pytest.raises(DatasetValidationError, match="known tasks"):
        get_task("nope")
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps({"question": "q", "answer": "benign"}))
    with pytest.raises(DatasetValidationError, match="lacks column"):
        get_task("variant_effect_coding").load(str(path))
    assert set(TASKS) >= {"kegg", "variant_effect_coding", "variant_effect_non_snv"}


@pytest.mark.parametrize("text,answer", [
    ("<think>It is benign? No.</think>\nAnswer: pathogenic", "pathogenic"),
    ("<think>Answer: benign</think>", None),  # answered only inside <think>
    ("<think>never closed Answer: benign", None),
    ("no think at all\nanswer: Benign.", "Benign."),
    ("", None),
    ("Answer:   ", None),
])
def test_extract_answer(text, answer):
    assert extract_answer(text) == answer


def test_match_label_rules():
    labels = ("pathogenic", "benign")
    assert match_label("Pathogenic!", labels) == "pathogenic"
    assert match_label("pathogenic or benign", labels) is None  # both labels: no label
    assert match_label("nonpathogenic", labels) is None  # whole words only
    assert match_label("likely pathogenic", ("pathogenic", "likely pathogenic")) == "likely pathogenic"
    assert split_think("<think>a</think>b") == ("a", "b")


def test_metrics_hand_computed():
    m = classification_metrics(["a", "a", "b", "b"], ["a", "b", "b", None], ["a", "b"])
    assert m["accuracy"] == 0.5 and m["unparsed"] == 1
    assert m["per_class"]["a"] == {"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2}
    assert m["per_class"]["b"]["precision"] == 0.5 and m["per_class"]["b"]["recall"] == 0.5
    assert m["macro_f1"] == pytest.approx((2 / 3 + 0.5) / 2)
    assert m["confusion"]["b"] == {"b": 1, "<none>": 1}


# --- users' own datasets ------------------------------------------------------------------------------------------
def test_user_dataset_sequences_csv(tmp_path):
    path = tmp_path / "mine.csv"
    path.write_text("question,answer,reference_sequence,variant_sequence,reasoning\n"
                    "Is it bad?,benign,acgt,ACGA,The change is silent.\n")
    (ex,), skips = load_user_dataset(str(path))
    assert ex.dna == ["ACGT", "ACGA"] and ex.reasoning == "The change is silent." and not skips
    assert ex.target() == "<think>\nThe change is silent.\n</think>\n\nAnswer: benign"


@pytest.mark.parametrize("name", ["mine.jsonl.gz", "mine.csv.gz", "mine.tsv.gz"])
def test_user_dataset_gzipped(tmp_path, name):
    row = {"question": "Is it bad?", "answer": "benign", "reference_sequence": "ACGT", "variant_sequence": "ACGA"}
    sep = "\t" if ".tsv" in name else ","
    text = json.dumps(row) + "\n" if ".jsonl" in name else sep.join(row) + "\n" + sep.join(row.values()) + "\n"
    (tmp_path / name).write_bytes(gzip.compress(text.encode()))
    (ex,), skips = load_user_dataset(str(tmp_path / name))
    assert ex.dna == ["ACGT", "ACGA"] and ex.answer == "benign" and not skips


def test_user_dataset_bad_value_names_row_and_column(tmp_path):
    path = tmp_path / "mine.jsonl"
    rows = [{"question": "q", "answer": "a", "sequences": ["ACGT"]},
            {"question": "q", "answer": "a", "sequences": ["ACGT", "ACXT"]}]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    with pytest.raises(DatasetValidationError, match=r"mine.jsonl:2 \(row 2\), column 'sequences'.*'X' at position 3"):
        load_user_dataset(str(path))
    path.write_text(json.dumps({"question": "q", "answer": " ", "sequences": ["ACGT"]}))
    with pytest.raises(DatasetValidationError, match=r"mine.jsonl:1 \(row 1\), column 'answer': empty"):
        load_user_dataset(str(path))
    path.write_text(json.dumps({"question": "q", "answer": "a"}))
    with pytest.raises(DatasetValidationError, match="no DNA columns"):
        load_user_dataset(str(path))


HEADER = "question,answer,reference_sequence,variant_sequence\n"


@pytest.mark.parametrize("name, content, says", [
    ("comma.csv", HEADER + "q,benign,ACGT,ACGA\nIs this, benign?,benign,ACGT,ACGA\n",
     r"comma.csv:3: 5 fields where the header has 4 .*quote a value that contains a ','"),
    ("empty.csv", "", r"empty.csv: the file is empty; a CSV file needs a header line"),
    ("latin.csv", (HEADER + "Is th\xe9s benign?,benign,ACGT,ACGA\n").encode("latin-1"),
     r"latin.csv:2: not UTF-8 text \(byte 0xe9 at column 6\); save the file as UTF-8, e.g. `iconv"),
    ("quote.csv", HEADER + '"q?,benign,ACGT,ACGA\nq2,benign,ACGT,ACGA\n',
     r"quote.csv:2: a quoted value opened on this line runs on to line 3; close the quote"),
    ("broken.jsonl", '{"question": "q", "answer": "a", "sequences": ["ACGT"]}\n{"question": "q", broken\n',
     r"broken.jsonl:2: not a JSON object \(Expecting property name.*column 19\); each line of a JSONL file"),
    ("list.jsonl", '{"question": "q", "answer": "a", "sequences": ["ACGT"]}\n[1, 2]\n',
     r"list.jsonl:2: a JSON list, not an object"),
    ("array.json", '[\n{"question": "q", "answer": "a", "sequences": ["ACGT"]},\n{"question": "q"\n]\n',
     r"array.json:4: not valid JSON \(Expecting ',' delimiter"),
    ("object.json", '{\n "question": ["q"],\n "answer": ["a" "b"]\n}\n', r"object.json:3: not valid JSON"),
    ("lines.json", '{"question": "q", "answer": "a", "sequences": ["ACGT"]}\n{"question": \n',
     r"lines.json:2: not a JSON object"),  # JSON lines in a .json file: judged line by line
    ("text.parquet", "question,answer\n", r"text.parquet: not a readable parquet file"),
    ("twice.tsv", "question\tanswer\tquestion\tsequences\nq\tbenign\tq2\tACGT\n",  # pandas: 'question.1'
     r"twice.tsv:1: the header names column 'question' twice \(columns 1 and 3\); rename or remove one"),
    # gzipped files (str content is compressed by the test): the same checks, through the decompressed text
    ("twice.csv.gz", "question,answer,question,sequences\nq,benign,q2,ACGT\n",
     r"twice.csv.gz:1: the header names column 'question' twice"),
    ("latin.csv.gz", gzip.compress((HEADER + "Is th\xe9s benign?,benign,ACGT,ACGA\n").encode("latin-1")),
     r"latin.csv.gz:2: not UTF-8 text \(byte 0xe9 at column 6\); .* `zcat latin.csv.gz \| iconv"),
    ("broken.jsonl.gz", '{"question": "q", "answer": "a", "sequences": ["ACGT"]}\n{"question": "q", broken\n',
     r"broken.jsonl.gz:2: not a JSON object"),
    ("cut.jsonl.gz", gzip.compress(('{"question": "q", "answer": "a", "sequences": ["ACGT"]}\n' * 50).encode())[:30],
     r"cut.jsonl.gz: the compressed stream ends early: the file is cut off"),
])
def test_malformed_user_files_name_the_line_and_the_fix(tmp_path, capsys, name, content, says):
    """What datasets' builders raise with a traceback (pandas/pyarrow errors whose positions are relative to a
    parser block) becomes one line naming the file, the line and the fix; exit code 2 from the CLI."""
    from bioreason.app.cli import main

    path = tmp_path / name
    raw = content if isinstance(content, bytes) else content.encode()
    path.write_bytes(gzip.compress(raw) if name.endswith(".gz") and isinstance(content, str) else raw)
    with pytest.raises((DatasetValidationError, InputFormatError), match=says):
        load_user_dataset(str(path))
    rc = main(["train", "sft", "--recipe", "tiny", "data.task=user", f"data.source={path}", "train.max_steps=1",
               f"train.output_dir={tmp_path / 'run'}"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err and "Failed to read file" not in err
    assert re.search(says, err.strip().splitlines()[-1])


def test_user_dataset_coordinates_with_fasta(tmp_path):
    path = tmp_path / "coords.tsv"
    path.write_text("chrom\tpos\tref\talt\tquestion\tanswer\n"
                    "17\t43045705\tT\tA\tEffect?\tFUNC\n"
                    "17\t43045705\tG\tA\tEffect?\tFUNC\n"
                    "chr17\tx\tT\tA\tEffect?\tFUNC\n")
    with pytest.raises(DatasetValidationError, match=r"coords.tsv:4 \(row 3\), column 'pos'"):
        load_user_dataset(str(path), fasta=CHR17, ref_check="skip")
    packed = tmp_path / "coords.tsv.gz"  # gzipped: the same line (it counted no header line: line 3)
    packed.write_bytes(gzip.compress(path.read_bytes()))
    with pytest.raises(DatasetValidationError, match=r"coords.tsv.gz:4 \(row 3\), column 'pos'"):
        load_user_dataset(str(packed), fasta=CHR17, ref_check="skip")
    path.write_text("\n".join(path.read_text().splitlines()[:3]) + "\n")
    examples, skips = load_user_dataset(str(path), fasta=CHR17, ref_check="skip")
    assert len(examples) == 1 and examples[0].dna[0][512] == "T" and examples[0].dna[1][512] == "A"
    assert len(skips) == 1 and "does not match the FASTA" in skips[0].reason


def test_training_on_coordinates_names_its_fixes_as_recipe_keys_and_records_its_skips(tmp_path, capsys):
    """A REF mismatch in a training table suggests the recipe key (the predict flag --ref-check means nothing to
    `train`); with ref_check=skip the run warns how many rows it dropped, and why, and lists them in skipped.tsv."""
    from bioreason.app.cli import main

    path = tmp_path / "coords.csv"
    path.write_text("chrom,pos,ref,alt,question,answer\n17,43045705,T,A,Effect?,FUNC\n"
                    "17,43045705,G,A,Effect?,FUNC\nchr2,1000,A,T,Effect?,LOF\n")
    cmd = ["train", "sft", "--recipe", "tiny", "data.task=user", f"data.source={path}", "data.fasta=bundled",
           "data.options.window=160", "train.max_steps=1", f"train.output_dir={tmp_path / 'run'}"]
    assert main(cmd) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "coords.csv:3 (row 2): REF 'G' at 17:43045705 does not match the FASTA ('T')" in err
    assert "Set data.options.ref_check=skip (eval: --option ref_check=skip)" in err and "--ref-check" not in err
    assert main(cmd + ["data.options.ref_check=skip"]) == 0
    err = capsys.readouterr().err
    assert f"data.task=user: 2 of 3 records of {path} skipped, 1 became examples:" in err
    assert "1 x REF mismatch (first: 17:43045705 G>A: " in err and "1 x contig not in the FASTA" in err
    rows = (tmp_path / "run" / "skipped.tsv").read_text().splitlines()
    assert rows[0] == "chrom\tpos\tref\talt\treason" and [r.split("\t")[:4] for r in rows[1:]] == [
        ["17", "43045705", "G", "A"], ["chr2", "1000", "A", "T"]]


def test_a_model_trained_on_your_labels_predicts_them_and_one_without_says_so(tmp_path, capsys):
    """Training on a labelled VCF (data.task=vcf) records its labels, question and window in bioreason_task.json, so
    `predict` scores FUNC/INT/LOF on the trained 160-nt windows, not the default pathogenic/benign on 1,024 nt, and
    `eval` and the demo cut the same windows; a user table whose answers are free text names no label set, and
    `predict` warns that it scores the defaults."""
    from bioreason.app.cli import main
    from bioreason.kegg_data.user_data import DEFAULT_QUESTION

    vcf = Path(__file__).parents[1] / "examples" / "brca1_sge_24.vcf"
    common = ["--recipe", "tiny", "data.fasta=bundled", "data.options.window=160", "data.max_length=512",
              "train.max_steps=1"]
    assert main(["train", "sft", *common, "data.task=vcf", f"data.source={vcf}", "data.label_field=LABEL",
                 f"train.output_dir={tmp_path / 'vcf'}"]) == 0
    assert "labels it answers (bioreason_task.json; predict scores these): FUNC, INT, LOF" in capsys.readouterr().out
    spec = json.loads((tmp_path / "vcf" / "final" / "bioreason_task.json").read_text())
    assert spec["labels"] == ["FUNC", "INT", "LOF"] and spec["window"] == 160
    assert spec["question"] == DEFAULT_QUESTION and spec["prompt"] == "question"
    capsys.readouterr()
    assert main(["predict", str(vcf), "--fasta", "bundled", "--model", str(tmp_path / "vcf" / "final"),
                 "-o", str(tmp_path / "p")]) == 0
    assert "has no bioreason_task.json" not in capsys.readouterr().err
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert len(rows) == 24 and all(r["label"] in spec["labels"] for r in rows)
    assert all(r["window_length"] == 160 and set(r["probs"]) == set(spec["labels"]) for r in rows)
    assert main(["eval", "--task", "vcf", "--source", str(vcf), "--fasta", "bundled", "--model",
                 str(tmp_path / "vcf" / "final"), "-o", str(tmp_path / "ev")]) == 0  # eval prompts it the same way
    assert json.loads((tmp_path / "ev" / "report.json").read_text())["meta"]["options"] == {
        "window": 160, "question": DEFAULT_QUESTION}
    from bioreason.app.demo import DemoBackend  # and so does the demo's variant tab

    demo = DemoBackend(str(tmp_path / "vcf" / "final"), gtf="none")
    assert len(demo.windows_for("chr17:43045705 T>A", None).ref_window) == 160

    def user_run(name, answers):
        table = tmp_path / f"{name}.csv"
        table.write_text("chrom,pos,ref,alt,question,answer\n" + "".join(
            f"17,43045705,T,{alt},Effect?,{answer}\n" for alt, answer in zip("ACGAC", answers)))
        assert main(["train", "sft", *common, "data.task=user", f"data.source={table}",
                     f"train.output_dir={tmp_path / name}"]) == 0
        task = tmp_path / name / "final" / "bioreason_task.json"
        return json.loads(task.read_text()) if task.exists() else None

    assert user_run("labels", ["LOF", "FUNC", "LOF", "FUNC"])["labels"] == ["FUNC", "LOF"]  # as the model wrote them
    assert user_run("free", ["It truncates the protein.", "A silent change.", "It breaks splicing."]) is None
    assert "no label set recorded" in capsys.readouterr().out
    assert main(["predict", str(vcf), "--fasta", "bundled", "--model", str(tmp_path / "free" / "final"),
                 "--window", "160", "-o", str(tmp_path / "q")]) == 0
    err = capsys.readouterr().err
    assert "has no bioreason_task.json" in err and "scoring the default labels pathogenic,benign" in err


@pytest.mark.parametrize("task", ["vcf", "annotated_vcf"])
def test_a_vcf_without_the_label_field_says_why_it_gave_no_examples(task):
    from bioreason.errors import RecipeError
    from bioreason.kegg_data.build import build_examples

    data = {"task": task, "source": str(Path(__file__).parents[1] / "examples" / "brca1_sge_24.vcf"),
            "fasta": "bundled", "label_field": "NOPE", "options": {}}
    with pytest.raises(RecipeError, match=r"all 24 records of .*brca1_sge_24.vcf were skipped, e.g. chr17:43045705 "
                                          r"T>A: no label \(INFO/NOPE missing\); name the INFO field"):
        build_examples(data)


def test_labelled_vcf_route_info_and_tsv(tmp_path):
    ex, skips, stats = examples_from_vcf(DATA / "brca1_sge_findlay2018_grch38_part1.vcf", CHR17,
                                         label_field="LABEL")
    assert len(ex) == 1945 and {e.answer for e in ex} == {"FUNC", "INT", "LOF"}
    tsv = tmp_path / "labels.tsv"
    tsv.write_text("chrom\tpos\tref\talt\tlabel\nchr17\t43045705\tT\tA\tbenign\n")
    ex, skips, stats = examples_from_vcf(DATA / "brca1_sge_findlay2018_grch38_part1.vcf", CHR17, labels_tsv=tsv)
    assert len(ex) == 1 and ex[0].answer == "benign" and len(skips) == 1944
    assert stats.alleles == len(ex) + len(skips) and skips[0].reason.startswith("no label")


def test_missing_file_and_unreachable_hub_are_clear_errors(tmp_path, monkeypatch):
    from bioreason.kegg_data.examples import load_table

    with pytest.raises(DatasetValidationError, match="does not exist"):
        load_table(str(tmp_path / "nope.jsonl"))
    import datasets

    def unreachable(*a, **k):  # what datasets raises offline (after its retries), without the network or the wait
        raise ConnectionError("Couldn't reach 'wanglab/kegg' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", unreachable)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # past hub_unreachable's check, to datasets
    with pytest.raises(DatasetValidationError, match="cannot load 'wanglab/kegg' .*ConnectionError: Couldn't reach"
                                                     ".*check the name, the split and the network, or pass a local "
                                                     "copy .*eval --source"):
        load_table("wanglab/kegg", "test")


def test_a_hub_dataset_without_network_fails_at_once_with_the_local_copy_to_pass(offline_hub):
    """Offline, datasets retried five times with back-off (31 s) and printed each attempt before failing; now an
    unresolvable hub host with no cached copy is an error at once that names what to pass instead. A cached copy,
    a proxy or HF_HUB_OFFLINE leave it to datasets (which can read its cache)."""
    import datasets

    from bioreason.kegg_data import table_errors
    from bioreason.kegg_data.examples import load_table

    monkeypatch = offline_hub
    monkeypatch.setattr(table_errors, "hub_cached", lambda name: False)
    called = []
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: called.append(a) or ["row"])
    with pytest.raises(DatasetValidationError, match=r"cannot load 'wanglab/kegg' from the Hugging Face Hub: "
                                                     r"huggingface.co cannot be reached .*Name or service not known.*"
                                                     r"hf download wanglab/kegg --repo-type dataset"):
        load_table("wanglab/kegg", "test")
    assert not called
    monkeypatch.setenv("HF_ENDPOINT", "https://hf-mirror.example.org")
    with pytest.raises(DatasetValidationError, match="hf-mirror.example.org cannot be reached"):
        load_table("wanglab/kegg", "test")
    monkeypatch.setattr(table_errors, "hub_cached", lambda name: True)  # a cached copy: datasets may load it
    assert load_table("wanglab/kegg", "test") == ["row"] and called
    monkeypatch.setattr(table_errors, "hub_cached", lambda name: False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # offline mode: datasets reads its cache without the network
    assert load_table("wanglab/kegg", "test") == ["row"] and len(called) == 2


def test_small_local_table_loads_without_datasets_progress_bars(tmp_path, capfd, monkeypatch):
    """A small local table loads without 'Generating train split' (printed on each first load); a large one keeps
    the bar (the threshold lowered to 0 here), and the setting is restored after either."""
    datasets = pytest.importorskip("datasets")
    from bioreason.kegg_data import table_errors
    from bioreason.kegg_data.examples import load_table

    (tmp_path / "small.csv").write_text("question,answer\nq1,a\nq2,b\n")
    assert len(load_table(str(tmp_path / "small.csv"))) == 2
    assert "Generating" not in capfd.readouterr().err and datasets.is_progress_bar_enabled()
    monkeypatch.setattr(table_errors, "QUIET_BELOW_BYTES", 0)
    (tmp_path / "large.csv").write_text("question,answer\nq3,c\n")
    assert len(load_table(str(tmp_path / "large.csv"))) == 1
    assert "Generating train split" in capfd.readouterr().err and datasets.is_progress_bar_enabled()


def test_kegg_from_a_hub_snapshot_folder_and_a_question_grouped_holdout(tmp_path):
    """The real KEGG train split as a hub snapshot (data/train-00000-of-00001.parquet beside .gitattributes and a
    README): it loads from the root or its data/ folder; a split it lacks is an error naming the ones it has; the
    validation part made from train shares no question text with the rest."""
    datasets = pytest.importorskip("datasets")
    from bioreason.errors import DatasetValidationError
    from bioreason.kegg_data.build import build_examples
    from bioreason.kegg_data.examples import load_table

    rows = [json.loads(x) for x in (DATA / "kegg_sample.jsonl").read_text().splitlines()]
    (tmp_path / "data").mkdir()
    datasets.Dataset.from_list([{k: r[k] for k in ("question", "answer", "reasoning", "reference_sequence",
                                                   "variant_sequence")} for r in rows]).to_parquet(
        str(tmp_path / "data" / "train-00000-of-00001.parquet"))
    (tmp_path / ".gitattributes").write_text("*.parquet filter=lfs diff=lfs merge=lfs -text\n")
    (tmp_path / "README.md").write_text("# kegg\n")
    assert len(load_table(str(tmp_path), "train")) == 50 == len(load_table(str(tmp_path / "data"), "train"))
    with pytest.raises(DatasetValidationError, match="no 'val' split .* it has train"):
        load_table(str(tmp_path), "val")
    data = {"task": "kegg", "source": str(tmp_path), "split": "train"}
    parts = {p: build_examples({**data, "options": {"holdout": {"part": p, "fraction": 0.2}}}, 1024)[0]
             for p in ("train", "validation")}
    assert len(parts["train"]) + len(parts["validation"]) == 50 and len(parts["validation"]) >= 10
    assert not {e.question for e in parts["train"]} & {e.question for e in parts["validation"]}


def test_kegg_trace_checks_pass_on_the_datasets_own_reasoning():
    """The fact checks (gene named, base change stated, answer one of the names) accept the dataset's own
    Claude-written reasoning, and reject a trace that states none of them."""
    from bioreason.kegg_data.tasks import check_kegg_trace, get_task

    examples = get_task("kegg").load(str(DATA / "kegg_sample.jsonl"))
    names = sorted({e.meta["label"] for e in examples})
    assert examples[0].meta["gene"] == "PDE11A" and examples[0].meta["change"] == "C>T"
    checks = [check_kegg_trace(f"<think>{e.reasoning}</think>\n\nAnswer: {e.answer}", e.meta, names) for e in examples]
    assert sum(c["gene"] for c in checks) / len(checks) >= 0.9
    stated = [c["change"] for c in checks]  # SNVs and indels alike (REF>ALT read from the sequences)
    assert None not in stated and sum(stated) / len(stated) >= 0.8
    assert all(c["answer_in_set"] for c in checks)
    bad = check_kegg_trace("<think>no idea</think>\n\nAnswer: flu", examples[0].meta, names)
    assert bad == {"gene": False, "change": False, "answer_in_set": False}


def test_kegg_eval_with_likelihood_topk_tfidf_and_traces(tiny_model_dir, tmp_path):
    from bioreason.app.cli import main

    out = tmp_path / "r"
    rc = main(["eval", "--task", "kegg", "--source", str(DATA / "kegg_sample.jsonl"), "--split", "train",
               "--option", "holdout={part: validation, fraction: 0.3}", "--model", str(tiny_model_dir),
               "--baselines", "tfidf", "--traces", "3", "--bootstrap", "20", "-o", str(out)])
    assert rc == 0
    report = json.loads((out / "report.json").read_text())
    assert len(report["labels"]) == len({json.loads(x)["answer"] for x in (DATA / "kegg_sample.jsonl").open()})
    for name in ("dna-llm", "tfidf"):
        m = report["systems"][name]
        assert 0 <= m["top1_likelihood"] <= m["top3_likelihood"] <= 1
        assert m["top1_likelihood"] == pytest.approx(m["accuracy"])  # the prediction is the most likely name
    checks = report["trace_checks"]["dna-llm"]
    assert checks["n"] == 3 and {"gene", "change", "answer_in_set", "all_three", "answer_accuracy"} <= set(checks)


def test_a_vcf_given_to_a_table_task_says_which_tasks_read_vcfs(tmp_path):
    vcf = tmp_path / "x.vcf"
    vcf.write_text("##fileformat=VCFv4.2\n")
    with pytest.raises(DatasetValidationError, match=r"cannot tell the file format from \['.vcf'\]; .*; a labelled "
                                                     r"VCF is read by the vcf and annotated_vcf tasks, with a FASTA"):
        load_user_dataset(str(vcf))



def test_a_folder_of_tables_in_two_formats_is_named_as_such(tmp_path):
    """A folder with a .csv and a .jsonl (an export beside its source, say) was 'cannot tell the file format from
    ['.csv', '.jsonl']'; it says the folder mixes formats and what to give instead."""
    (tmp_path / "a.csv").write_text("question,answer\nq,a\n")
    (tmp_path / "b.jsonl").write_text('{"question": "q", "answer": "a"}\n')
    with pytest.raises(DatasetValidationError, match=r"the folder holds tables in several formats \(.csv, .jsonl\); "
                                                     r"give one file, or a folder of one format"):
        load_user_dataset(str(tmp_path))
