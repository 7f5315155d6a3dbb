"""What a careful user expects of a genomics CLI (issue 13): --version, '-' for standard input, clear errors for a
directory / a BOM / a folder given as -o, provenance header lines, periodic progress in a log, no third-party
FutureWarnings; and a resumable predict that cannot be fooled: inputs compared by content, each progress line
keyed by its variants, no silent overwrite, one run per output prefix."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bioreason.app.cli import main

ROOT = Path(__file__).parents[1]
SGE24 = ROOT / "examples" / "brca1_sge_24.vcf"


def _cli(*argv, stdin=None, env=None):
    return subprocess.run([sys.executable, "-m", "bioreason.app.cli", *argv], input=stdin, capture_output=True,
                          timeout=600, env={**os.environ, **(env or {})})


def test_version_and_quiet_warnings(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.startswith("bioreason 0.")


def test_standard_input_bom_directory_and_prefix_errors(tmp_path, capsys):
    text = SGE24.read_bytes()
    run = _cli("windows", "-", "--fasta", "bundled", "-o", str(tmp_path / "in"), stdin=text)
    assert run.returncode == 0, run.stderr[-500:]
    assert len((tmp_path / "in.windows.jsonl").read_text().splitlines()) == 24
    assert not list(tmp_path.glob(".in.stdin-*"))  # the spooled copy is gone
    empty = _cli("windows", "-", "--fasta", "bundled", "-o", str(tmp_path / "e"), stdin=b"")
    assert empty.returncode == 2 and b"standard input (-) was empty" in empty.stderr
    bom = tmp_path / "bom.vcf"
    bom.write_bytes(b"\xef\xbb\xbf" + text)
    cases = [(["windows", str(bom)], "starts with a byte-order mark"), (["windows", str(tmp_path)], "is a directory"),
             (["predict", str(SGE24), "--fasta", str(tmp_path)], "FASTA"),
             (["windows", str(SGE24), "--fasta", str(tmp_path / "no.fa")], f"--fasta {tmp_path / 'no.fa'}: no such"),
             (["predict", str(SGE24), "-o", str(tmp_path) + "/"], "-o takes a prefix"),
             (["windows", str(SGE24), "-o", "-"], "so -o takes a prefix, not '-' (standard output)"),
             (["predict", str(SGE24), "-o", str(bom / "out")],  # a folder that cannot be made: before any model loads
              f"-o {bom / 'out'}: cannot write in the folder {bom} ("),
             # -o bom with --force would replace the input bom.vcf by its annotated copy: refused
             (["predict", str(bom), "-o", str(tmp_path / "bom"), "--force"], f"which is the input {bom}; choose"),
             (["windows", str(SGE24), "-o", str(tmp_path / "x"), "--gtf", str(tmp_path / "x.skipped.tsv")],
              "which is the input"),
             # before the model loads (was the first batch's 'DNA sequence 1 has 5,000 nt ...')
             (["predict", str(SGE24), "--window", "5000"],
              "--window 5000: this model's DNA encoder takes at most 1,024")]
    (tmp_path / "x.skipped.tsv").write_text("not a GTF\n")
    for argv, says in cases:
        argv = argv + (["--fasta", "bundled"] if "--fasta" not in argv else []) + (
            ["-o", str(tmp_path / "x")] if "-o" not in argv else [])
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert says in err and "Traceback" not in err, (argv, err)
    assert bom.read_bytes() == b"\xef\xbb\xbf" + text


def test_cut_off_corrupt_and_empty_vcf_named_before_any_model_loads(tmp_path, capsys):
    import gzip

    whole = gzip.compress((ROOT / "examples" / "brca1_sge_part1.vcf").read_bytes())
    cut = tmp_path / "cut.vcf.gz"  # an interrupted download: htslib and the progress count both stop mid-stream
    cut.write_bytes(whole[: len(whole) * 2 // 3])
    bad = bytearray(whole)
    bad[len(bad) // 2: len(bad) // 2 + 64] = bytes(64)
    corrupt = tmp_path / "corrupt.vcf.gz"
    corrupt.write_bytes(bytes(bad))
    empty = tmp_path / "empty.vcf"
    empty.write_bytes(b"")
    head_cut = tmp_path / "head_cut.vcf.gz"  # cut inside the header: htslib cannot even open it
    head_cut.write_bytes(whole[:300])
    cases = [("windows", cut, "the compressed stream ends early: the file is cut off"),
             ("predict", head_cut, "the compressed stream ends early: the file is cut off"),
             ("predict", cut, "the compressed stream ends early: the file is cut off"),
             ("windows", corrupt, "the compressed stream is corrupt"),
             ("predict", empty, "is empty (0 bytes)")]
    for cmd, vcf, says in cases:  # predict's default model is never loaded: each fails on its input first
        assert main([cmd, str(vcf), "--fasta", "bundled", "-o", str(tmp_path / cmd)]) == 2
        err = capsys.readouterr().err
        assert f"{vcf}:" in err and says in err and "gzip -t" in err or says == "is empty (0 bytes)" and says in err
        assert "Traceback" not in err, err
    assert not list(tmp_path.glob("windows.*")) and not list(tmp_path.glob("predict.*"))
    fasta = tmp_path / "ref.fa.gz"  # ask reads a --dna FASTA before the model loads
    fasta.write_bytes(gzip.compress((ROOT / "examples" / "kegg" / "ref.fa").read_bytes())[:300])
    assert main(["ask", "--dna", str(fasta), "--dna", "ACGT", "which disease?"]) == 2
    err = capsys.readouterr().err
    assert f"{fasta}: the compressed stream ends early" in err and "Traceback" not in err, err


def test_predict_from_stdin_with_provenance_and_progress_lines(tiny_model_dir, tmp_path):
    bare = "".join(x for x in SGE24.read_text().splitlines(keepends=True) if not x.startswith("##contig"))
    run = _cli("predict", "-", "--fasta", "bundled", "--model", str(tiny_model_dir), "-o", str(tmp_path / "p"),
               "--batch-size", "4", "--progress-interval", "0", stdin=bare.encode())
    assert run.returncode == 0, run.stderr[-800:]
    err = run.stderr.decode()
    assert "predict: 24/24 (100.0%) alleles" in err  # a line per report when stderr is not a terminal
    assert "FutureWarning" not in err and "Traceback" not in err
    vcf = (tmp_path / "p.vcf").read_text()
    assert "##bioreasonVersion=0." in vcf and "##bioreasonCommand=bioreason predict - --fasta bundled" in vcf
    assert "##contig=<ID=chr17,length=83257441>" in vcf  # the input had no ##contig line: the FASTA's is added
    assert len((tmp_path / "p.jsonl").read_text().splitlines()) == 24


def _progress_run(model, vcf, prefix, *extra):
    return main(["predict", str(vcf), "--fasta", "bundled", "--model", str(model), "-o", str(prefix),
                 "--batch-size", "8", *extra])


def test_resume_after_an_edit_keeps_unchanged_batches_and_refuses_a_stale_key(tiny_model_dir, tmp_path, capsys,
                                                                             monkeypatch):
    vcf = tmp_path / "in.vcf"
    shutil.copy(SGE24, vcf)
    full = tmp_path / "full"
    assert _progress_run(tiny_model_dir, vcf, full) == 0
    assert _progress_run(tiny_model_dir, vcf, full, "--resume") == 2  # nothing to resume: no silent overwrite
    assert "exists; pass --force" in capsys.readouterr().err
    from bioreason.predict import VariantPredictor

    real, calls = VariantPredictor.predict, []

    def first_batch_only(self, variants, on_trace=None):  # as if killed after the first batch was saved
        calls.append(len(variants))
        if len(calls) > 1:
            raise KeyboardInterrupt
        return real(self, variants, on_trace)

    monkeypatch.setattr(VariantPredictor, "predict", first_batch_only)
    prefix = tmp_path / "cut"
    assert _progress_run(tiny_model_dir, vcf, prefix) == 130
    monkeypatch.undo()
    progress = Path(f"{prefix}.progress.rank0.jsonl")
    lines = progress.read_text().splitlines()
    assert len(lines) == 2 and set(json.loads(lines[1])["keys"]) == {str(i) for i in range(8)}
    saved = progress.read_text()
    original = vcf.read_text()
    assert _progress_run(tiny_model_dir, vcf, prefix, "--ref-check", "skip", "--resume") == 2  # other settings
    err = capsys.readouterr().err
    assert "ref_check differ(s) from this one" in err and progress.read_text() == saved

    def counted(self, variants, on_trace=None):
        calls.append(len(variants))
        return real(self, variants, on_trace)

    monkeypatch.setattr(VariantPredictor, "predict", counted)
    first, last = "chr17\t43045705\t.\tT\tA", original.rstrip("\n").rsplit("\n", 1)[1].split("\t", 5)
    for edit, redone in (("after", 2), ("inside", 3)):  # a record of the last batch, then one of the saved batch
        if edit == "after":
            text = original.replace("\t".join(last[:5]), "\t".join(last[:4] + ["G" if last[4] != "G" else "C"]))
        else:
            text = original.replace(first, "chr17\t43045705\t.\tT\tG", 1)
        assert text != original
        vcf.write_text(text)
        progress.write_text(saved)
        calls.clear()
        assert _progress_run(tiny_model_dir, vcf, prefix, "--resume") == 0, capsys.readouterr().err
        assert len(calls) == redone  # the saved batch kept only when its records are unchanged
        assert f"{3 - redone} of its 1 finished batches are unchanged and kept" in capsys.readouterr().err
        fresh = tmp_path / f"fresh-{edit}"
        assert _progress_run(tiny_model_dir, vcf, fresh) == 0
        assert Path(f"{prefix}.jsonl").read_text() == Path(f"{fresh}.jsonl").read_text()
    monkeypatch.undo()
    vcf.write_text(original)
    body = json.loads(lines[1])  # a saved line whose variant keys are not the input's (same fingerprint)
    progress.write_text(lines[0] + "\n" + json.dumps({**body, "keys": {k: "chr1:1:A:C" for k in body["keys"]}})
                        + "\n")
    assert _progress_run(tiny_model_dir, vcf, prefix, "--resume") == 2
    assert "the saved result for item 0 is for chr1:1:A:C, but the input has chr17:43045705:T:A" in (
        capsys.readouterr().err)
    progress.write_text(saved)
    assert _progress_run(tiny_model_dir, vcf, prefix, "--resume") == 0  # unchanged inputs: resumes
    assert Path(f"{prefix}.jsonl").read_text() == Path(f"{full}.jsonl").read_text()


def test_a_malformed_line_says_the_finished_batches_are_kept_and_a_fixed_input_resumes(tiny_model_dir, tmp_path,
                                                                                         capsys):
    good = SGE24.read_text()
    vcf = tmp_path / "in.vcf"
    vcf.write_text(good + "chr17\t-5\t.\tT\tA\t.\t.\t.\n")  # record 25: htslib cannot parse its position
    prefix = tmp_path / "p"
    assert _progress_run(tiny_model_dir, vcf, prefix) == 2
    err = capsys.readouterr().err
    assert "in.vcf:" in err and "could not parse this record" in err and "Traceback" not in err
    assert "The 3 batch(es) finished before it are saved in" in err and "--resume to keep them" in err
    vcf.write_text(good + "chr17\t43045800\t.\tT\tC\t.\t.\t.\n")  # the line fixed
    assert _progress_run(tiny_model_dir, vcf, prefix, "--resume") == 0
    assert "3 of its 3 finished batches are unchanged and kept, 0 are predicted again" in capsys.readouterr().err
    assert _progress_run(tiny_model_dir, vcf, tmp_path / "fresh") == 0
    assert Path(f"{prefix}.jsonl").read_text() == (tmp_path / "fresh.jsonl").read_text()


def test_a_ref_mismatch_part_way_also_says_the_finished_batches_are_kept(tiny_model_dir, tmp_path, capsys):
    vcf = tmp_path / "in.vcf"
    vcf.write_text(SGE24.read_text() + "chr17\t43045800\t.\tC\tT\t.\t.\t.\n")  # the FASTA has T there
    assert _progress_run(tiny_model_dir, vcf, tmp_path / "p") == 2
    err = capsys.readouterr().err
    assert "in.vcf:37: REF 'C' at chr17:43045800 does not match the FASTA ('T')" in err and "Traceback" not in err
    assert "The 3 batch(es) finished before it are saved in" in err and "--resume to keep them" in err


def test_standard_input_names_itself_in_errors_and_resumes_when_piped_again(tiny_model_dir, tmp_path):
    good = SGE24.read_text()
    args = ["predict", "-", "--fasta", "bundled", "--model", str(tiny_model_dir), "-o", str(tmp_path / "s"),
            "--batch-size", "8", "--quantize", "none"]
    cut = _cli(*args, stdin=(good + "chr17\tabc\t.\tT\tA\t.\t.\t.\n").encode())
    err = cut.stderr.decode()
    assert cut.returncode == 2 and "error: standard input:37: htslib could not parse this record" in err, err[-800:]
    assert ".stdin-" not in err and "--resume to keep them" in err  # not the spool file, which is gone
    again = _cli(*args, "--resume", stdin=good.encode())  # its spool file has another name: kept by content
    assert again.returncode == 0, again.stderr[-800:]
    assert "3 of its 3 finished batches are unchanged and kept" in again.stderr.decode()
    assert len((tmp_path / "s.jsonl").read_text().splitlines()) == 24


def test_one_run_per_output_prefix(tiny_model_dir, tmp_path, capsys):
    from bioreason.atomic import locked

    prefix = tmp_path / "locked"
    with locked(prefix, wait=False):  # another run holds the prefix
        assert _progress_run(tiny_model_dir, SGE24, prefix) == 2
        err = capsys.readouterr().err
        assert "is being written by process" in err and not Path(f"{prefix}.vcf").exists()
    assert _progress_run(tiny_model_dir, SGE24, prefix) == 0  # released (also when a holder dies: kernel flock)
    assert Path(f"{prefix}.vcf").is_file()


@pytest.mark.parametrize("flag,value", [("--batch-size", "0"), ("--trace-slots", "-2"), ("--max-new-tokens", "x")])
def test_sizes_below_one_are_refused_before_any_work(flag, value, tmp_path, capsys):
    """``--batch-size 0`` once ran silently: sizes, slots and token caps must be whole numbers >= 1."""
    with pytest.raises(SystemExit) as done:
        main(["predict", str(SGE24), "--fasta", "bundled", "-o", str(tmp_path / "o"), flag, value])
    err = capsys.readouterr().err
    assert done.value.code == 2 and f"argument {flag}: must be a whole number >= 1, not '{value}'" in err
    assert "Traceback" not in err and not list(tmp_path.iterdir())


@pytest.mark.parametrize("argv, says", [
    (["predict", str(SGE24), "--threads", "0"], "argument --threads: must be a whole number >= 1, not '0'"),
    (["predict", str(SGE24), "--progress-interval", "-1"], "argument --progress-interval: must be a number >= 0"),
    (["predict", str(SGE24), "--max-allele-len", "0"], "argument --max-allele-len: must be a whole number >= 1"),
    (["windows", str(SGE24), "--window", "-4"], "argument --window: must be a whole number >= 1, not '-4'"),
    (["predict", str(SGE24), "--labels", ","], "argument --labels: ',' has an empty label"),  # p_ columns, no name
    (["predict", str(SGE24), "--labels", "LOF"], "give at least two labels"),  # P = 1.000 for every variant
    (["predict", str(SGE24), "--labels", "A B,A_B"], "'A_B' is given twice (or differs from another label only"),
    (["ask", "--dna", "ACGT", "--max-new-tokens", "-1", "q"], "argument --max-new-tokens: must be a whole number"),
    (["ask", "--dna", "ACGT", "--temperature", "-1", "q"], "argument --temperature: must be a number >= 0"),
    (["ask", "--dna", "ACGT", "--temperature", "nan", "q"], "argument --temperature: must be a number >= 0"),
    (["demo", "--port", "70000"], "argument --port: must be a port number from 1 to 65535, not '70000'"),
    (["eval", "--task", "toy", "--limit", "0"], "argument --limit: must be a whole number >= 1, not '0'"),
    (["eval", "--task", "toy", "--bootstrap", "-5"], "argument --bootstrap: must be a whole number >= 0"),
    (["eval", "--task", "toy", "--traces", "-1"], "argument --traces: '-1': give a count >= 0 or 'all'"),
])
def test_out_of_range_numbers_are_refused_by_argparse(argv, says, tmp_path, capsys):
    """Each once reached torch or transformers (``max_new_tokens must be greater than 0`` with a traceback), ran
    as if unset (``--limit 0``: no limit), or skipped every variant (``--max-allele-len 0``)."""
    if argv[0] in ("predict", "windows"):
        argv = [*argv, "--fasta", "bundled", "-o", str(tmp_path / "o")]
    elif argv[0] == "eval":
        argv = [*argv, "-o", str(tmp_path / "o")]
    with pytest.raises(SystemExit) as done:
        main(argv)
    err = capsys.readouterr().err
    assert done.value.code == 2 and says in err and "Traceback" not in err and not list(tmp_path.iterdir())


def test_window_too_short_for_the_longest_allele_is_one_line(tmp_path, capsys):
    assert main(["windows", str(SGE24), "--fasta", "bundled", "-o", str(tmp_path / "w.jsonl"), "--window", "100"]) == 2
    err = capsys.readouterr().err
    assert "window 100 must exceed twice max_allele_len 64" in err and "--max-allele-len" in err
    assert "Traceback" not in err


def test_sigterm_stops_predict_like_ctrl_c_with_the_resume_hint(tiny_model_dir, tmp_path):
    """``kill``/``timeout``/a scheduler send SIGTERM, which ended predict with 'Terminated' (exit 143) and no word
    on the progress kept; now it stops as Ctrl-C does: exit 130 and how to go on, finished batches kept."""
    import os
    import signal
    import subprocess
    import sys
    import time

    prefix = tmp_path / "p"
    cmd = [sys.executable, "-m", "bioreason.app.cli", "predict", str(ROOT / "examples" / "brca1_sge_part1.vcf"),
           "--fasta", "bundled", "--model", str(tiny_model_dir), "-o", str(prefix), "--batch-size", "2"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    progress = Path(f"{prefix}.progress.rank0.jsonl")
    end = time.time() + 120
    while time.time() < end and proc.poll() is None and not (
            progress.is_file() and len(progress.read_text().splitlines()) >= 3):
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=60)[1].decode()
    assert proc.returncode == 130, err[-400:]
    assert "interrupted; finished batches are kept: run the same command with --resume" in err
    assert len(progress.read_text().splitlines()) >= 3 and "Traceback" not in err


def test_labels_with_vcf_reserved_characters_are_percent_encoded(tiny_model_dir, tmp_path):
    from cyvcf2 import VCF

    prefix = tmp_path / "o"
    assert main(["predict", str(SGE24), "--fasta", "bundled", "--model", str(tiny_model_dir), "-o", str(prefix),
                 "--labels", "likely benign,path;ogenic"]) == 0
    rec = next(iter(VCF(f"{prefix}.vcf")))
    assert rec.INFO["BR_LABEL"] in ("likely%20benign", "path%3Bogenic")
    assert rec.INFO["BR_P_likely_benign"] + rec.INFO["BR_P_path_ogenic"] == pytest.approx(1.0, abs=2e-6)


def test_a_batch_larger_than_free_memory_is_refused_before_it_runs(tiny_model_dir, tmp_path, capsys, monkeypatch):
    """--batch-size 2000 on the shipped model needs ~60 GB: the kernel killed the job without a word."""
    from bioreason import predict

    monkeypatch.setattr(predict, "free_memory_bytes", lambda device: 2**20)  # 1 MiB free
    assert _progress_run(tiny_model_dir, SGE24, tmp_path / "o") == 2
    err = capsys.readouterr().err
    assert "--batch-size 8: a batch of 8 variants needs about" in err and "use --batch-size" in err
    assert "Traceback" not in err
    assert predict.batch_bytes.__doc__ and predict.batch_bytes(_tiny(tiny_model_dir), 64) == 8 * predict.batch_bytes(
        _tiny(tiny_model_dir), 8)


def _tiny(folder):
    from bioreason.checkpoints import load_model

    return load_model(str(folder))[0]

