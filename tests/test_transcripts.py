"""Transcript models: GTF and GFF3 reading (real GENCODE excerpt, the bundled BRCA1 GTF, a RefSeq-style GFF3),
one transcript per gene by MANE / canonical / longest CDS, overlap queries with contig synonyms, and a clear
file:line error for each kind of malformed line."""

from __future__ import annotations

from pathlib import Path

import pytest

from bioreason.errors import InputFormatError
from bioreason.kegg_data.transcripts import bundled_gtf, bundled_transcripts, read_transcripts, resolve_gtf

DATA = Path(__file__).parent / "data"


def test_bundled_gtf_is_built_from_the_exon_table():
    from brca1_gtf import build

    assert bundled_gtf().read_text() == build()  # regenerate with `python tests/brca1_gtf.py > ...`


def test_bundled_brca1_transcript():
    (t,) = bundled_transcripts().transcripts
    assert (t.id, t.gene, t.chrom, t.strand) == ("NM_007294.3", "BRCA1", "chr17", -1)
    assert len(t.exons) == 23 and t.exons[0] == (43125271, 43125483)  # transcript order: 5' exon first
    assert t.cds == (43045678, 43124096) and t.cds_length == 5592  # 1,863 codons + the stop codon


def test_real_gencode_excerpt_picks_one_transcript_per_gene():
    model = read_transcripts(DATA / "gencode-v19_excerpt.gtf")  # GENCODE v19 DDX11L1: 4 transcripts, non-coding
    (t,) = model.transcripts
    assert t.gene == "DDX11L1" and t.cds is None and t.strand == 1
    # no MANE/canonical tag, none coding: the longest (1,657 nt of exons vs 1,653, 1,483 and 632) wins
    assert t.id == "ENST00000456328.2" and t.exons == ((11869, 12227), (12613, 12721), (13221, 14409))
    assert t.tags == {"basic"} and t.biotype == "processed_transcript"
    assert model.near("1", 12000, 12000) == [t]  # 'chr1' in the file, '1' in the query
    assert model.near("chr1", 20000, 20000) == [] and model.near("chr1", 20000, 20000, flank=5591) == [t]


def _gtf_line(tid, start, end, kind="exon", tags=(), gene="G1", strand="+"):
    tag = "".join(f' tag "{x}";' for x in tags)
    attrs = f'gene_id "{gene}"; transcript_id "{tid}"; gene_name "{gene}";{tag}'
    return f"chr1\tt\t{kind}\t{start}\t{end}\t.\t{strand}\t.\t{attrs}\n"


def test_selection_order_mane_then_canonical_then_longest_cds(tmp_path):
    lines = [_gtf_line("LONG", 100, 900), _gtf_line("LONG", 100, 900, "CDS"),  # longest CDS, no tag
             _gtf_line("MANE", 100, 300, tags=("basic", "MANE_Select")), _gtf_line("MANE", 150, 290, "CDS"),
             _gtf_line("CANON", 100, 500, tags=("Ensembl_canonical",)), _gtf_line("CANON", 120, 480, "CDS")]
    path = tmp_path / "three.gtf"
    path.write_text("".join(lines))
    assert [t.id for t in read_transcripts(path).transcripts] == ["MANE"]
    path.write_text("".join(lines[:2] + lines[4:]))
    assert [t.id for t in read_transcripts(path).transcripts] == ["CANON"]
    path.write_text("".join(lines[:2] + [_gtf_line("SHORT", 100, 400), _gtf_line("SHORT", 100, 200, "CDS")]))
    assert [t.id for t in read_transcripts(path).transcripts] == ["LONG"]


def test_gff3_refseq_style_reads_like_the_gtf(tmp_path):
    gtf = bundled_transcripts().transcripts[0]
    rows = ["##gff-version 3",
            "chr17\tRefSeq\tgene\t43044295\t43125483\t.\t-\t.\tID=gene-BRCA1;Name=BRCA1",
            "chr17\tRefSeq\tmRNA\t43044295\t43125483\t.\t-\t.\tID=rna-NM_007294.3;Parent=gene-BRCA1;"
            "transcript_id=NM_007294.3;tag=MANE Select"]
    rows += [f"chr17\tRefSeq\texon\t{s}\t{e}\t.\t-\t.\tID=exon-{i};Parent=rna-NM_007294.3" for i, (s, e) in
             enumerate(gtf.exons)]
    lo, hi = gtf.cds
    rows += [f"chr17\tRefSeq\tCDS\t{max(s, lo)}\t{min(e, hi)}\t.\t-\t0\tID=cds-1;Parent=rna-NM_007294.3%2C"
             for s, e in gtf.exons if s <= hi and e >= lo]
    path = tmp_path / "brca1.gff3"
    path.write_text("\n".join(rows).replace("%2C", "") + "\n")
    (t,) = read_transcripts(path).transcripts
    assert (t.id, t.gene, t.strand, t.exons, t.cds) == ("NM_007294.3", "BRCA1", -1, gtf.exons, gtf.cds)
    assert "MANE_Select" in t.tags


def test_gzip_gtf_and_auto_default(tmp_path):
    import gzip

    path = tmp_path / "brca1.gtf.gz"
    path.write_bytes(gzip.compress(bundled_gtf().read_bytes()))
    assert read_transcripts(path).transcripts == bundled_transcripts().transcripts
    assert len(resolve_gtf("auto", "bundled")) == 1  # the bundled reference gets the bundled transcript
    assert resolve_gtf("auto", str(DATA / "GRCh38_chr17_43044294-43125363.fa")) is None
    assert resolve_gtf("none", "bundled") is None


@pytest.mark.parametrize("line, says", [
    ("chr1\tt\texon\t100\t200\t.\t+\n", "expected 9 tab-separated columns"),
    ("chr1 t exon 100 200 . + . gene_id \"G\"; transcript_id \"T\";\n", "expected 9 tab-separated columns"),
    ('chr1\tt\texon\tabc\t200\t.\t+\t.\tgene_id "G"; transcript_id "T";\n', "must be positive integers"),
    ('chr1\tt\texon\t300\t200\t.\t+\t.\tgene_id "G"; transcript_id "T";\n', "start <= end"),
    ('chr1\tt\texon\t100\t200\t.\t.\t.\tgene_id "G"; transcript_id "T";\n', "strand '.' must be"),
    ('chr1\tt\texon\t100\t200\t.\t+\t.\tgene_id "G";\n', "needs a transcript_id"),
])
def test_malformed_lines_name_file_and_line(tmp_path, line, says):
    path = tmp_path / "bad.gtf"
    path.write_text("##format: gtf\n" + _gtf_line("OK", 10, 50) + line)
    with pytest.raises(InputFormatError, match=says) as err:
        read_transcripts(path)
    assert f"{path}:3:" in str(err.value)


def test_missing_file_says_what_to_pass(tmp_path):
    with pytest.raises(InputFormatError, match="--gtf"):
        read_transcripts(tmp_path / "nope.gtf")


def test_unreadable_and_odd_files(tmp_path, caplog):
    with pytest.raises(InputFormatError, match="is a directory"):
        read_transcripts(tmp_path)
    truncated = tmp_path / "cut.gtf.gz"
    import gzip

    truncated.write_bytes(gzip.compress(bundled_gtf().read_bytes())[:400])
    with pytest.raises(InputFormatError, match="compressed stream ends early: the file is cut off"):
        read_transcripts(truncated)
    empty = tmp_path / "genes_only.gtf"
    empty.write_text('chr1\tt\tgene\t1\t100\t.\t+\t.\tgene_id "G";\n')
    with pytest.raises(InputFormatError, match="no transcripts found"):
        read_transcripts(empty)
    both = tmp_path / "par.gtf"  # one id on two contigs (GENCODE PAR genes) and one with overlapping exons
    both.write_text(_gtf_line("PAR", 100, 200) + _gtf_line("PAR", 100, 200).replace("chr1", "chrX", 1)
                    + _gtf_line("BAD", 300, 400, gene="G2") + _gtf_line("BAD", 350, 450, gene="G2"))
    with caplog.at_level("WARNING"):
        model = read_transcripts(both)
    assert sorted((t.id, t.chrom) for t in model.transcripts) == [("PAR", "chr1"), ("PAR", "chrX")]
    assert model.dropped == 1 and "overlapping exons" in caplog.text


def test_cds_without_its_stop_codon_is_extended():
    """GFF3 files often list the CDS without a stop_codon line: the stop is found in the sequence."""
    from bioreason.kegg_data.bundled import bundled_fasta
    from bioreason.kegg_data.consequence import Annotator
    from bioreason.kegg_data.reference import Reference
    from bioreason.kegg_data.transcripts import TranscriptModel, Transcript

    (t,) = bundled_transcripts().transcripts
    no_stop = Transcript(t.id, t.gene, t.chrom, t.strand, t.exons, (t.cds[0] + 3, t.cds[1]), t.tags, t.biotype)
    ann = Annotator(TranscriptModel([no_stop]), Reference(bundled_fasta()))
    stop_lost = ann.best("chr17", 43045680, "A", "G")  # the stop codon's first base: TGA -> CGA (minus strand)
    assert stop_lost["so_terms"] == ["stop_lost"] and stop_lost["hgvsp"].startswith("p.*1864R")
