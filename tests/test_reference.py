"""The reference FASTA (``kegg_data.reference.Reference``): plain and BGZF agree; a plain-gzip, cut-off, unindexable
or stale-indexed FASTA is refused with file, place and fix; a missing index is built (or, read-only, explained);
reads past a contig's edges are N-padded."""

from __future__ import annotations

import gzip
import logging
import os
import shutil
from pathlib import Path

import pytest

from bioreason.errors import InputFormatError, ReferenceFastaError
from bioreason.kegg_data.reference import Reference

DATA = Path(__file__).parent / "data"
FIX = DATA / "fixtures"
CHR17 = Path(__file__).parents[1] / "kegg_data" / "data" / "GRCh38_chr17_BRCA1_Nmasked.fa.gz"


def test_plain_and_bgzf_fasta_agree(chr17_slice):
    plain = Reference(DATA / "GRCh38_chr17_43044294-43125363.fa")
    bgzf = Reference(CHR17)
    name = next(iter(plain.lengths))
    for start in (0, 1000, 50000, 81000):
        assert plain.fetch(name, start, start + 70) == bgzf.fetch("chr17", 43044293 + start, 43044293 + start + 70)


def test_plain_gzip_fasta_is_refused_with_bgzip_hint(tmp_path):
    gz = tmp_path / "ref.fa.gz"
    with gzip.open(gz, "wb") as fh:
        fh.write((FIX / "tiny_ref.fa").read_bytes())
    with pytest.raises(ReferenceFastaError, match="bgzip"):
        Reference(gz)


def _fasta(path, seq, width, eol="\n", final=True):
    body = eol.join(seq[i:i + width] for i in range(0, len(seq), width))
    path.write_bytes(f">chrA long description{eol}{body}{eol}>chrB{eol}ACGT{eol if final else ''}".encode())


def test_an_index_made_for_another_version_of_the_fasta_is_rebuilt_or_refused(tmp_path):
    """pyfaidx only warns about an index older than its FASTA and reads at the old offsets: with the lines
    re-wrapped from 60 to 50 nt, a contig's tail read came back short and ``fetch`` looped for ever. Now a stale
    index is rebuilt where the folder is writable, and any index is checked against the file per contig."""
    import random

    import pyfaidx

    rng = random.Random(0)
    seq = "".join(rng.choice("ACGT") for _ in range(200_000))
    fa = tmp_path / "ref.fa"
    _fasta(fa, seq, 60)
    pyfaidx.Faidx(str(fa)).close()
    old_index = (tmp_path / "ref.fa.fai").read_bytes()
    _fasta(fa, seq, 50)
    os.utime(tmp_path / "ref.fa.fai", (1, 1))  # older than the FASTA: rebuilt
    assert Reference(fa).fetch("chrA", 199_900, 200_000) == seq[199_900:]
    (tmp_path / "ref.fa.fai").write_bytes(old_index)  # newer but for the 60-nt layout: refused, with the fix
    with pytest.raises(ReferenceFastaError, match=r"ref.fa.fai does not match .*ref.fa at contig chrA .*samtools "
                                                  r"faidx"):
        Reference(fa).fetch("chrA", 199_900, 200_000)
    for eol, final in (("\r\n", True), ("\n", False)):  # CRLF, and no newline at the end: valid indexes pass
        other = tmp_path / f"crlf{final}.fa"
        _fasta(other, seq, 70, eol, final)
        ref = Reference(other)
        assert ref.fetch("chrA", 199_900, 200_000) == seq[199_900:] and ref.fetch("chrB", 0, 4) == "ACGT"


def test_a_fasta_that_cannot_be_indexed_names_its_line_and_the_fix(tmp_path):
    """pyfaidx said 'Line length of fasta file is not consistent! ...' (no way out) and counted one of its line
    numbers from 0; now file:line, what is wrong, and for uneven lines a rewrap command that works."""
    import subprocess
    import sys

    uneven = tmp_path / "uneven.fa"
    uneven.write_text(">chrA\n" + "ACGT" * 15 + "\n" + "ACGT" * 10 + "\n" + "ACGT" * 15 + "\nAC\n")
    with pytest.raises(InputFormatError, match=r"uneven.fa:3: a sequence line of >chrA differs in length") as err:
        Reference(uneven)
    cmd = str(err.value).split("`")[1]
    subprocess.run(cmd, shell=True, check=True, cwd=tmp_path, executable="/bin/bash",
                   env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"})
    assert Reference(tmp_path / "uneven.rewrapped.fa").fetch("chrA", 0, 162) == "ACGT" * 40 + "AC"
    from Bio import bgzf

    with bgzf.BgzfWriter(tmp_path / "uneven.fa.gz", "wb") as fh:  # BGZF: the command reads it through gzip
        fh.write(uneven.read_bytes())
    (tmp_path / "uneven.rewrapped.fa").unlink()
    with pytest.raises(InputFormatError, match=r"uneven.fa.gz:3: .*--fasta .*uneven.rewrapped.fa$") as err:
        Reference(tmp_path / "uneven.fa.gz")
    subprocess.run(str(err.value).split("`")[1], shell=True, check=True, cwd=tmp_path, executable="/bin/bash",
                   env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"})
    assert Reference(tmp_path / "uneven.rewrapped.fa").fetch("chrA", 0, 162) == "ACGT" * 40 + "AC"
    (tmp_path / "blank.fa").write_text(">chrA\nACGT\nACGT\n\nACGT\n")
    with pytest.raises(InputFormatError, match=r"blank.fa:4: .* \(or is blank\)"):
        Reference(tmp_path / "blank.fa")
    (tmp_path / "noname.fa").write_text(">chrA\nACGT\n>\nACGT\n")
    with pytest.raises(InputFormatError, match=r"noname.fa:3: a '>' header line without a sequence name"):
        Reference(tmp_path / "noname.fa")


def test_a_cut_off_bgzf_fasta_is_named_with_or_without_its_index(tmp_path, caplog):
    whole = DATA / "hg38_chr2_1-2333275.fa.gz"
    cut = tmp_path / "ref.fa.gz"  # an interrupted download beside the whole file's indexes
    cut.write_bytes(whole.read_bytes()[:300_000])
    for ext in (".fai", ".gzi"):
        shutil.copy(f"{whole}{ext}", f"{cut}{ext}")
    with pytest.raises(ReferenceFastaError, match=r"ref.fa.gz ends at byte 300,000, before the block at byte "
                                                  r"[\d,]+ that its index ref.fa.gz.gzi lists: the file is cut off"):
        Reference(cut)
    for ext in (".fai", ".gzi"):  # no index: building it meets the cut (Bio.bgzf raised struct.error)
        Path(f"{cut}{ext}").unlink()
    with caplog.at_level(logging.WARNING), pytest.raises(ReferenceFastaError, match="cannot be read to the end"):
        Reference(cut)
    assert "no BGZF end-of-file block" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):  # the whole file: no warning, and bases past the cut
        assert Reference(whole).fetch("chr2", 2_000_000, 2_000_001) == "C"
    assert "end-of-file block" not in caplog.text


def test_a_cut_off_plain_fasta_beside_its_whole_index_is_named(tmp_path):
    fa = tmp_path / "ref.fa"
    fa.write_text(">chrA\n" + "ACGTACGTAC" * 6 * 100 + "\n" + ">chrB\n" + "\n".join(["GATTACAGAT" * 6] * 50) + "\n")
    Reference(fa)  # builds ref.fa.fai for the whole file
    whole = fa.read_bytes()
    fa.write_bytes(whole[:-500])  # the download stopped inside chrB; the index stays newer than the FASTA
    os.utime(f"{fa}.fai")
    with pytest.raises(ReferenceFastaError, match=r"ref.fa ends at byte [\d,]+, before the end of contig chrB at byte "
                                                  r"[\d,]+ that its index .*ref.fa.fai lists: the file is cut off"):
        Reference(fa)
    fa.write_bytes(whole[:-1])  # only the final newline missing: a valid file
    assert Reference(fa).fetch("chrB", 0, 7) == "GATTACA"


def test_missing_fai_is_built(tmp_path):
    fa = tmp_path / "ref.fa"
    shutil.copy(FIX / "tiny_ref.fa", fa)
    ref = Reference(fa)
    assert (tmp_path / "ref.fa.fai").is_file() and ref.lengths == {"chrT": 2000}


def test_missing_fai_in_read_only_folder_says_how(tmp_path, monkeypatch):
    fa = tmp_path / "ref.fa"
    shutil.copy(FIX / "tiny_ref.fa", fa)
    monkeypatch.setattr("bioreason.kegg_data.reference.os.access", lambda path, mode: False)
    with pytest.raises(ReferenceFastaError, match="read-only.*samtools faidx"):
        Reference(fa)


def test_fetch_pads_with_n_past_edges():
    ref = Reference(FIX / "tiny_ref.fa")
    assert ref.fetch("chrT", -3, 2) == "NNN" + ref.fetch("chrT", 0, 2)
    assert ref.fetch("chrT", 1998, 2003) == ref.fetch("chrT", 1998, 2000) + "NNN"


# --- policies ----------------------------------------------------------------------------------------------
