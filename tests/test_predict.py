"""``bioreason predict`` on real VCFs: outputs, INFO types, skips, kill -9 and resume, 2-process sharding."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bioreason.app.cli import main

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).parents[1]
SGE = ROOT / "examples" / "brca1_sge_part1.vcf"


@pytest.fixture(scope="module")
def tiny_dir(tiny_model_dir):
    return tiny_model_dir


@pytest.fixture(scope="module")
def sge_small(tmp_path_factory):
    lines = SGE.read_text().splitlines(keepends=True)
    head = [x for x in lines if x.startswith("#")]
    body = [x for x in lines if not x.startswith("#")][:40]
    path = tmp_path_factory.mktemp("vcf") / "sge40.vcf"
    path.write_text("".join(head + body))
    return path


def _same_output(a: Path, b: Path) -> bool:
    """Byte-identical, but for the VCF's ##bioreasonCommand line (each run's own command line)."""
    def body(p):
        return b"".join(x for x in p.read_bytes().splitlines(keepends=True) if not x.startswith(b"##bioreasonCommand="))
    return body(a) == body(b)


def _outputs(prefix):
    return [Path(f"{prefix}{s}") for s in (".vcf", ".jsonl", ".tsv", ".skipped.tsv")]


def test_predict_writes_all_outputs_typed_as_declared(tiny_dir, sge_small, tmp_path):
    prefix = tmp_path / "out"
    rc = main(["predict", str(sge_small), "--fasta", "bundled", "--model", str(tiny_dir), "-o", str(prefix),
               "--labels", "LOF,FUNC", "--batch-size", "16"])
    assert rc == 0 and all(p.is_file() for p in _outputs(prefix))
    rows = [json.loads(x) for x in Path(f"{prefix}.jsonl").read_text().splitlines()]
    assert len(rows) == 40 and all(r["status"] == "predicted" for r in rows)
    assert set(rows[0]["probs"]) == {"LOF", "FUNC"} and abs(sum(rows[0]["probs"].values()) - 1) < 1e-5
    assert rows[0]["window_length"] == 1024 and rows[0]["offset0"] == 512
    from cyvcf2 import VCF

    vcf = VCF(str(prefix) + ".vcf")
    for key, typ in (("BR_LABEL", "String"), ("BR_P_LOF", "Float"), ("BR_P_FUNC", "Float"), ("BR_MODEL", "String")):
        assert vcf.get_header_type(key)["Type"] == typ
    recs = list(vcf)
    assert len(recs) == 40 and recs[0].INFO.get("BR_LABEL") in ("LOF", "FUNC")
    assert isinstance(recs[0].INFO.get("BR_P_LOF"), float)
    assert recs[0].INFO.get("LABEL") == "FUNC"  # the input's INFO is kept
    if shutil.which("bcftools"):
        out = subprocess.run(["bcftools", "query", "-f", "%POS\t%BR_LABEL\t%BR_P_LOF\n", f"{prefix}.vcf"],
                             capture_output=True, text=True, check=True).stdout.splitlines()
        assert len(out) == 40 and float(out[0].split("\t")[2]) == pytest.approx(rows[0]["probs"]["LOF"], abs=1e-6)
    assert main(["predict", str(sge_small), "--fasta", "bundled", "--model", str(tiny_dir), "-o", str(prefix)]) == 2


def test_predict_skips_and_multiallelic_alleles(tiny_dir, tmp_path, capfd):
    prefix = tmp_path / "cv"
    rc = main(["predict", str(DATA / "clinvar_grch38_vep_testset.vcf.gz"), "--fasta",
               str(DATA / "hg38_chr2_1-2333275.fa.gz"), "--model", str(tiny_dir), "-o", str(prefix), "--bgzip"])
    assert rc == 0 and Path(f"{prefix}.vcf.gz").is_file()
    err = capfd.readouterr().err  # contig '2' is the FASTA's 'chr2': said once, not again by the writing pass
    assert err.count("contig '2' is named 'chr2' in hg38_chr2_1-2333275.fa.gz; using it") == 1, err
    rows = [json.loads(x) for x in Path(f"{prefix}.jsonl").read_text().splitlines()]
    assert len(rows) == 50 and sum(r["status"] == "predicted" for r in rows) == 2
    assert all(r["reason"].startswith("contig ") for r in rows if r["status"] == "skipped")
    assert len(Path(f"{prefix}.skipped.tsv").read_text().splitlines()) == 1 + 48
    from cyvcf2 import VCF

    labelled = [r for r in VCF(f"{prefix}.vcf.gz") if r.INFO.get("BR_LABEL")]
    assert [(r.CHROM, r.POS) for r in labelled] == [("2", 264985), ("2", 265015)]


def test_input_without_contig_lines_gets_no_htslib_noise(tiny_dir, tmp_path, capfd):
    """htslib's 'Contig 1 is not defined (index it with tabix)' and 'Could not retrieve index file' are handled
    here (skips, declared contigs), so they are not printed, in the reading pass or the writing one."""
    rc = main(["predict", str(DATA / "vcf_edge_cases" / "cyvcf2_no-seq-names.vcf"), "--fasta",
               str(DATA / "fixtures" / "tiny_ref.fa"), "--model", str(tiny_dir), "-o", str(tmp_path / "n")])
    got = capfd.readouterr()
    err = got.err
    assert rc == 0 and "skipped 1: contig not in the FASTA" in err + got.out
    assert "[W::" not in err and "[E::" not in err
    vcf = tmp_path / "chr22.vcf"  # nothing predictable: exit 0 with complete outputs, and a warning that says so
    vcf.write_text("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
                   "22\t17181903\trs7289170\tA\tG\t.\t.\t.\n")
    rc = main(["predict", str(vcf), "--fasta", "bundled", "--model", str(tiny_dir), "-o", str(tmp_path / "none")])
    err = capfd.readouterr().err
    assert rc == 0 and "no variant was predicted: all 1 alleles were skipped" in err and "another genome build" in err
    assert (tmp_path / "none.skipped.tsv").read_text().count("contig 22 not in the FASTA") == 1


def test_predict_with_traces(tiny_dir, sge_small, tmp_path):
    prefix = tmp_path / "tr"
    assert main(["predict", str(sge_small), "--fasta", "bundled", "--model", str(tiny_dir), "-o", str(prefix),
                 "--traces", "--max-new-tokens", "8", "--batch-size", "20"]) == 0
    rows = [json.loads(x) for x in Path(f"{prefix}.jsonl").read_text().splitlines()]
    assert all("trace" in r and "reasoning" in r for r in rows)
    forced = [r for r in rows if r.get("trace_forced")]  # the tiny model never ends within 8 tokens
    assert forced and all("\nAnswer:" in r["trace"] for r in forced)  # closed (no <think> opened: an Answer: line)
    assert main(["predict", str(sge_small), "--fasta", "bundled", "--model", str(tiny_dir), "-o", str(prefix),
                 "--traces", "--max-new-tokens", "8", "--batch-size", "20", "--answer-tokens", "0", "--force"]) == 0
    rows = [json.loads(x) for x in Path(f"{prefix}.jsonl").read_text().splitlines()]
    assert not any(r.get("trace_forced") for r in rows) and not any("Answer:" in r.get("trace", "") for r in rows)


def test_memory_freed_while_loading_is_given_back(tiny_dir, sge_small, tmp_path, monkeypatch):
    """glibc kept the fp32 copies a load replaced, fragmented, so a batch's peak landed on top of them (the shipped
    model's score-only peak 1.49 GiB, 1.19 with a trim once the model is loaded): the load ends with
    ``malloc_trim``, and ``predict --traces`` trims after each batch's decode too. Here the calls are counted."""
    from bioreason import checkpoints

    assert isinstance(checkpoints.release_freed_memory(), bool)  # glibc here: the real call, which must not fail
    calls = []
    monkeypatch.setattr(checkpoints, "_TRIM", lambda pad: calls.append(pad) or 1)
    model, _ = checkpoints.load_model(tiny_dir, quantize="bf16-matmul")
    assert calls and set(calls) == {0} and getattr(model, "_bioreason_quantized", None) == "bf16-matmul"
    from bioreason.predict import VariantPredictor

    counts, batches, predict = {}, [], VariantPredictor.predict
    monkeypatch.setattr(VariantPredictor, "predict", lambda self, *a, **k: batches.append(1) or predict(self, *a, **k))
    for traces in ([], ["--traces", "--max-new-tokens", "4"]):
        done, batches[:] = len(calls), []
        assert main(["predict", str(sge_small), "--fasta", "bundled", "--model", str(tiny_dir), "-o",
                     str(tmp_path / "t"), "--batch-size", "2", "--quantize", "none", "--force"] + traces) == 0
        counts[bool(traces)] = len(calls) - done
    assert counts[False] >= 1  # the CLI's load too
    assert counts[True] - counts[False] == len(batches) > 1  # with traces, after each batch's decode as well
    monkeypatch.setattr(checkpoints, "_TRIM", False)  # no malloc_trim (macOS, musl): nothing called, no error
    assert checkpoints.release_freed_memory() is False


def test_progress_without_resume_is_refused(tiny_dir, sge_small, tmp_path, capsys):
    prefix = tmp_path / "p"
    Path(f"{prefix}.progress.rank0.jsonl").write_text("{}\n")
    assert main(["predict", str(sge_small), "--fasta", "bundled", "--model", str(tiny_dir), "-o", str(prefix)]) == 2
    assert "--resume" in capsys.readouterr().err


def _run(args, **kw):
    return subprocess.Popen([sys.executable, "-m", "bioreason.app.cli", "predict", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kw)


@pytest.mark.slow
def test_kill_and_resume_is_byte_identical(tiny_dir, tmp_path):
    common = [str(SGE), "--fasta", "bundled", "--model", str(tiny_dir), "--batch-size", "16", "--labels", "LOF,FUNC",
              "--quantize", "none"]  # one mode in every process (auto's probe could differ between them)
    ref = _run(common + ["-o", str(tmp_path / "ref")])
    assert ref.wait() == 0, ref.stderr.read()
    prefix = tmp_path / "killed"
    progress = Path(f"{prefix}.progress.rank0.jsonl")

    def lines():
        return progress.read_bytes().count(b"\n") if progress.exists() else 0

    rng = random.Random(0)
    kills = 0
    args = common + ["-o", str(prefix)]
    for attempt in range(3):  # kill each run after it has finished 1-4 more batches, at a random moment
        proc = _run(args + (["--resume"] if attempt else []))
        start, want = lines(), rng.randint(1, 4)
        deadline = time.time() + 120
        while proc.poll() is None and lines() < start + want and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 0.4))
        if proc.poll() is not None:
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        # each output is renamed into place only when complete: a kill during the final renames may leave some
        # outputs in place, but every one present is whole, and the progress files still mark the run unfinished
        present = [p for p in _outputs(prefix) if p.exists()]
        if present:
            assert list(tmp_path.glob("killed.progress*"))
            for p in present:
                assert _same_output(p, tmp_path / p.name.replace("killed", "ref"))
    if list(tmp_path.glob("killed.progress*")) or not all(p.exists() for p in _outputs(prefix)):
        done = _run(args + ["--resume"])
        assert done.wait() == 0, done.stderr.read()
    assert kills == 3
    for a, b in zip(_outputs(tmp_path / "ref"), _outputs(prefix)):
        assert _same_output(a, b), a.name
    assert not list(tmp_path.glob("killed.progress*"))
    assert "##bioreasonCommand=bioreason predict" in _outputs(prefix)[0].read_text()


@pytest.mark.slow
def test_two_processes_equal_one(tiny_dir, sge_small, tmp_path):
    common = [str(sge_small), "--fasta", "bundled", "--model", str(tiny_dir), "--batch-size", "8",
              "--quantize", "none"]  # auto's probe can differ between 1 process of 2 threads and 2 of 1
    assert main(["predict", *common, "-o", str(tmp_path / "one")]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m",
                          "bioreason.app.cli", "predict", *common, "-o", str(tmp_path / "two")],
                         env=env, capture_output=True, text=True)
    assert two.returncode == 0, two.stderr[-3000:]
    for a, b in zip(_outputs(tmp_path / "one"), _outputs(tmp_path / "two")):
        assert _same_output(a, b), a.name


def test_output_folder_is_created_and_unwritable_is_one_line(tiny_dir, sge_small, tmp_path, capsys):
    prefix = tmp_path / "new" / "sub" / "out"
    assert main(["predict", str(sge_small), "--fasta", "bundled", "--model", str(tiny_dir), "-o", str(prefix)]) == 0
    assert Path(f"{prefix}.vcf").is_file()
    blocker = tmp_path / "file"
    blocker.write_text("x")
    rc = main(["predict", str(sge_small), "--fasta", "bundled", "--model", str(tiny_dir), "-o", str(blocker / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err and "error:" in err


def test_annotated_prompts_from_the_model_task_file(tiny_dir, sge_small, tmp_path):
    """A folder whose bioreason_task.json asks for annotated_variant prompts: predict reads the VCF's own
    annotation, records the prompt mode per variant, and --prompt-mode sequence turns it off."""
    model = tmp_path / "model"
    shutil.copytree(tiny_dir, model)
    (model / "bioreason_task.json").write_text(json.dumps(
        {"labels": ["LOF", "FUNC"], "prompt": "annotated_variant", "gene": "BRCA1", "strand": -1}))
    for mode in ("annotated", "sequence"):
        prefix = tmp_path / mode / "out"
        assert main(["predict", str(sge_small), "--fasta", "bundled", "-o", str(prefix), "--model", str(model),
                     "--prompt-mode", mode]) == 0
        rows = [json.loads(x) for x in Path(f"{prefix}.jsonl").read_text().splitlines()]
        assert {r["prompt_mode"] for r in rows} == {mode}
        assert all(set(r["probs"]) == {"LOF", "FUNC"} for r in rows)
        if mode == "annotated":
            assert {r["annotation"] for r in rows} >= {"Missense", "Synonymous"}
    from bioreason.kegg_data.annotated_variants import annotation_layouts
    from bioreason.kegg_data.bundled import bundled_fasta
    from bioreason.kegg_data.vcf_reader import VariantReader
    from bioreason.predict import PredictConfig, VariantPredictor

    cfg = PredictConfig.for_model(model)
    reader = VariantReader(sge_small, bundled_fasta(), info_fields=cfg.info_fields())
    v = next(iter(reader))
    pred = VariantPredictor(None, None, cfg, annotation_layouts(reader))
    assert "Annotation: consequence: Synonymous; hgvsc: c.5565A>T" in pred.example(v).question
    assert "in BRCA1" in pred.example(v).question


def test_bare_vcf_gets_the_computed_annotation_and_the_same_prompts(tiny_dir, sge_small, tmp_path):
    """INFO stripped: with the bundled transcript (--gtf auto) every prompt is the one the annotated file gives,
    so the probabilities are equal; outputs say the annotation was computed and carry BR_CSQ."""
    model = tmp_path / "model"
    shutil.copytree(tiny_dir, model)
    (model / "bioreason_task.json").write_text(json.dumps(
        {"labels": ["LOF", "FUNC"], "prompt": "annotated_variant", "gene": "BRCA1", "strand": -1}))
    bare = tmp_path / "bare.vcf"
    bare.write_text("".join(line if line.startswith("#") else "\t".join(line.split("\t")[:7] + ["."]) + "\n"
                            for line in sge_small.read_text().splitlines(keepends=True)
                            if not line.startswith("##INFO")))
    runs = {}
    for name, vcf, gtf in (("annotated", sge_small, "none"), ("bare", bare, "auto"), ("bare-none", bare, "none")):
        prefix = tmp_path / name / "out"
        assert main(["predict", str(vcf), "--fasta", "bundled", "-o", str(prefix), "--model", str(model),
                     "--gtf", gtf]) == 0
        runs[name] = [json.loads(x) for x in Path(f"{prefix}.jsonl").read_text().splitlines()]
    ann, bare_rows, none_rows = runs["annotated"], runs["bare"], runs["bare-none"]
    assert [r["probs"] for r in bare_rows] == [r["probs"] for r in ann]
    assert {r["annotation_source"] for r in bare_rows} == {"computed"}
    assert {r["annotation_source"] for r in ann} == {"vcf"}
    assert [r["annotation"] for r in bare_rows] == [r["annotation"] for r in ann]
    assert {r["prompt_mode"] for r in none_rows} == {"sequence"} and "csq" not in none_rows[0]  # nothing to say
    top = bare_rows[0]["csq"][0]
    assert top["hgvsc"] == "c.5565A>T" and top["so_terms"] == ["synonymous_variant"]
    tsv = Path(tmp_path / "bare" / "out.tsv").read_text().splitlines()
    assert tsv[0].split("\t")[-6:] == ["consequence", "hgvsc", "hgvsp", "annotation_source", "in_domain",
                                        "flags_or_reason"]
    assert tsv[1].split("\t")[-6:-2] == ["Synonymous", "c.5565A>T", "p.I1855=", "computed"]
    from cyvcf2 import VCF

    vcf = VCF(str(tmp_path / "bare" / "out.vcf"))
    assert "Format: Allele|Consequence|SYMBOL|Feature" in vcf.get_header_type("BR_CSQ")["Description"]
    recs = list(vcf)
    first = recs[0].INFO.get("BR_CSQ").split("|")
    assert first[:4] == ["A", "synonymous_variant", "BRCA1", "NM_007294.3"] and first[9] == "p.I1855%3D"
    if shutil.which("bcftools"):  # htslib reads the declared field back
        out = subprocess.run(["bcftools", "query", "-f", "%INFO/BR_CSQ\n", str(tmp_path / "bare" / "out.vcf")],
                             capture_output=True, text=True, check=True).stdout.splitlines()
        assert len(out) == 40 and out[0].startswith("A|synonymous_variant|BRCA1|NM_007294.3|")


def test_domain_and_decision_rule_from_the_task_file(tiny_dir, sge_small, tmp_path, capsys):
    """A folder that states its domain flags variants elsewhere in every output and warns once with a count; a
    folder with a decision threshold labels by it (label_source 'threshold') and keeps the probabilities."""
    model = tmp_path / "model"
    shutil.copytree(tiny_dir, model)
    task = {"labels": ["LOF", "FUNC"], "prompt": "annotated_variant", "gene": "BRCA1", "strand": -1,
            "decision": {"positive": "LOF", "threshold": 0.0}, "domain": {"genes": ["BRCA1"], "build": "GRCh38",
                                                                         "regions": [["chr17", 43044295, 43125483]]}}
    (model / "bioreason_task.json").write_text(json.dumps(task))
    prefix = tmp_path / "in" / "out"
    assert main(["predict", str(sge_small), "--fasta", "bundled", "-o", str(prefix), "--model", str(model)]) == 0
    rows = [json.loads(x) for x in Path(f"{prefix}.jsonl").read_text().splitlines()]
    assert {r["in_domain"] for r in rows} == {True} and {r["label"] for r in rows} == {"LOF"}  # threshold 0
    assert {r["label_source"] for r in rows} == {"threshold"} and ";BR_OOD" not in Path(f"{prefix}.vcf").read_text()
    prefix = tmp_path / "out" / "out"  # two real ClinVar records on chr2: outside the model's BRCA1 region
    capsys.readouterr()
    assert main(["predict", str(DATA / "clinvar_grch38_vep_testset.vcf.gz"), "--fasta",
                 str(DATA / "hg38_chr2_1-2333275.fa.gz"), "-o", str(prefix), "--model", str(model)]) == 0
    rows = [json.loads(x) for x in Path(f"{prefix}.jsonl").read_text().splitlines()]
    predicted = [r for r in rows if r["status"] == "predicted"]
    assert len(predicted) == 2 and {r["in_domain"] for r in predicted} == {False}
    out, err = capsys.readouterr()
    assert "  skipped 48: contig not in the FASTA" in out  # the skip reasons, summed up at the end
    assert err.count("lie outside the model's domain") == 1  # warned once, with the count
    assert "2 of 2 predicted variants lie outside the model's domain (BRCA1, GRCh38)" in err
    vcf_text = Path(f"{prefix}.vcf").read_text()
    assert "##INFO=<ID=BR_OOD,Number=0,Type=Flag" in vcf_text and vcf_text.count(";BR_OOD") == 2
    tsv = Path(f"{prefix}.tsv").read_text().splitlines()
    assert [line.split("\t")[-2] for line in tsv[1:] if "\tpredicted\t" in line] == ["no", "no"]


def test_predict_batches_stream_from_the_reader():
    """Batches are cut as the reader yields (nothing is collected first): a reader that fails after 20 items has
    already given two full batches of 8."""
    from bioreason.app.predict_job import batched_windows
    from bioreason.kegg_data.variants import Skip, Variant

    def reader():
        for i in range(20):
            if i % 5 == 4:
                yield Skip("chr1", i + 1, "A", "C", "a reason", i, 1)
            else:
                yield Variant("chr1", i + 1, "A", "C", None, i, 1, "chr1", 0, 0, "A", "C")
        raise RuntimeError("the rest of the file")

    got = []
    with pytest.raises(RuntimeError):
        for k, batch, read in batched_windows(reader(), 8):
            got.append((k, [i for i, _ in batch], read))
    assert got == [(0, [0, 1, 2, 3, 5, 6, 7, 8], 9), (1, [10, 11, 12, 13, 15, 16, 17, 18], 19)]


def test_without_a_task_file_predict_and_the_demo_cut_one_window_within_the_encoder(tiny_dir, sge_small, tmp_path,
                                                                                     capsys):
    """A folder without bioreason_task.json: predict, ask and the demo fall back to one rule (1,024 nt, or the DNA
    encoder's maximum when smaller), so the same model reads a variant the same way from each front end."""
    from bioreason.app.demo import DemoBackend
    from bioreason.predict import TASK_FILE, PredictConfig, encoder_max_nucleotides, model_window

    folder = tmp_path / "model"
    shutil.copytree(tiny_dir, folder)
    (folder / TASK_FILE).unlink(missing_ok=True)
    cfg_path = folder / "processor_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["dna_config"]["max_nucleotides"] = 256
    cfg_path.write_text(json.dumps(cfg))
    assert encoder_max_nucleotides(folder) == 256 and encoder_max_nucleotides(tmp_path) is None
    assert model_window(PredictConfig(), 4096) == 1024 and model_window(PredictConfig(window=160), 256) == 160

    prefix = tmp_path / "out"
    assert main(["predict", str(sge_small), "--fasta", "bundled", "--model", str(folder), "-o", str(prefix),
                 "--labels", "LOF,FUNC"]) == 0
    rows = [json.loads(x) for x in Path(f"{prefix}.jsonl").read_text().splitlines()]
    assert {r["window_length"] for r in rows} == {256}
    assert DemoBackend(str(folder), gtf="none").window() == 256
    capsys.readouterr()
    assert main(["predict", str(sge_small), "--fasta", "bundled", "--model", str(folder), "-o", str(prefix),
                 "--window", "512", "--force"]) == 2
    assert "takes at most 256 nt" in capsys.readouterr().err
