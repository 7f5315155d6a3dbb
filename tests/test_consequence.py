"""Computed consequences against published ones: the 1,945 BRCA1 SGE records (CONSEQ/HGVSC/HGVSP), two BRCA1
founder frameshifts with their published HGVS names from every VCF spelling, an MNV, in-frame indels, splice and
UTR and intergenic cases, and the same gene mirrored onto the plus strand (every name must be unchanged)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote

import pytest

from bioreason.kegg_data.bundled import bundled_fasta
from bioreason.kegg_data.consequence import Annotator, consequence_class, revcomp, trim
from bioreason.kegg_data.reference import Reference
from bioreason.kegg_data.transcripts import bundled_gtf, bundled_transcripts, read_transcripts

DATA = Path(__file__).parent / "data"
SGE = DATA / "brca1_sge_findlay2018_grch38_part1.vcf"


def sge_records():
    for line in SGE.read_text().splitlines():
        if not line.startswith("#"):
            c = line.split("\t")
            info = dict(kv.split("=", 1) for kv in c[7].split(";"))
            hgvsp = unquote(info["HGVSP"])
            yield c[0], int(c[1]), c[3], c[4], (unquote(info["CONSEQ"]).replace("_", " "), info["HGVSC"],
                                                None if hgvsp == "." else hgvsp)


@pytest.fixture(scope="module")
def annotator():
    return Annotator(bundled_transcripts(), Reference(bundled_fasta()))


def test_sge_consequence_and_hgvs_agree_with_the_published_ones(annotator):
    records = list(sge_records())
    wrong = [(pos, ref, alt, want, got) for chrom, pos, ref, alt, want in records
             for got in [annotator.best(chrom, pos, ref, alt)]
             if (got["consequence"], got["hgvsc"], got["hgvsp"]) != want]
    assert len(records) == 1945
    assert len(wrong) <= 0.01 * len(records), wrong[:5]
    assert not wrong  # measured: 1,945 / 1,945 agree (classes, c. and p.)


@pytest.mark.parametrize("pos, ref, alt", [(43124027, "ACT", "A"), (43124028, "CTC", "C"), (43124029, "TCT", "T")])
def test_founder_deletion_185delAG_from_every_vcf_spelling(annotator, pos, ref, alt):
    a = annotator.best("chr17", pos, ref, alt)  # BRCA1 c.68_69del, p.Glu23ValfsTer17 (ClinVar)
    assert (a["hgvsc"], a["hgvsp"], a["so_terms"]) == ("c.68_69del", "p.E23Vfs*17", ["frameshift_variant"])
    assert a["consequence"] == "Frameshift" and a["exon"] == "2/23"


@pytest.mark.parametrize("pos, ref", [(43057062, "T"), (43057063, "G"), (43057065, "G")])
def test_founder_duplication_5382insC_is_named_dup(annotator, pos, ref):
    a = annotator.best("chr17", pos, ref, ref + "G")  # BRCA1 c.5266dup, p.Gln1756ProfsTer74 (ClinVar)
    assert (a["hgvsc"], a["hgvsp"]) == ("c.5266dup", "p.Q1756Pfs*74")


def test_mnv_inframe_indels_splice_utr_intergenic(annotator):
    mnv = annotator.best("chr17", 43045709, "AG", "TA")  # codon 1854 CTG -> TAG
    assert (mnv["hgvsc"], mnv["hgvsp"], mnv["so_terms"][0]) == ("c.5560_5561delinsTA", "p.L1854*", "stop_gained")
    assert (mnv["codons"], mnv["amino_acids"], mnv["protein_position"]) == ("CTg/TAg", "L/*", 1854)
    missense_mnv = annotator.best("chr17", 43045709, "AG", "GA")  # CTG -> TCG: L1854S, one residue
    assert (missense_mnv["hgvsp"], missense_mnv["so_terms"]) == ("p.L1854S", ["missense_variant"])
    deletion = annotator.best("chr17", 43045707, "TCAG", "T")  # CAG (minus strand: CTG, L1854) deleted
    assert (deletion["hgvsc"], deletion["hgvsp"], deletion["so_terms"]) == ("c.5560_5562del", "p.L1854del",
                                                                           ["inframe_deletion"])
    stop = annotator.best("chr17", 43045708, "CAGG", "C")  # c.5559_5561del joins TA|G: Y1853 becomes a stop
    assert (stop["hgvsp"], stop["so_terms"]) == ("p.Y1853*", ["stop_gained", "inframe_deletion"])
    insertion = annotator.best("chr17", 43045711, "G", "GAAA")  # TTT (Phe) inserted after c.5559
    assert insertion["so_terms"] == ["inframe_insertion"] and "ins" in insertion["hgvsp"]
    base = annotator.ref.fetch("chr17", 43045802, 43045803)  # 1-based 43045803: the base before exon 24
    acceptor = annotator.best("chr17", 43045803, base, "A" if base != "A" else "C")
    assert acceptor["so_terms"] == ["splice_acceptor_variant"] and acceptor["consequence"] == "Canonical splice"
    assert acceptor["hgvsc"].startswith("c.5468-1")
    assert (acceptor["intron"], acceptor["intron_distance"]) == ("22/22", 1)
    region = annotator.best("chr17", 43045808, annotator.ref.fetch("chr17", 43045807, 43045808), "N")
    assert region["so_terms"] == ["splice_region_variant", "intron_variant"] and "-6" in region["hgvsc"]
    base = annotator.ref.fetch("chr17", 43045599, 43045600)
    utr = annotator.best("chr17", 43045600, base, "C" if base != "C" else "G")
    assert utr["so_terms"] == ["3_prime_UTR_variant"] and utr["hgvsc"].startswith("c.*") and utr["hgvsp"] is None
    upstream = annotator.best("chr17", 43127000, "N", "A")
    assert upstream["so_terms"] == ["upstream_gene_variant"] and upstream["hgvsc"] is None
    far = annotator.best("chr17", 1_000_000, "N", "A")
    assert far["so_terms"] == ["intergenic_variant"] and far["consequence"] == "Intergenic"
    assert annotator.annotate("chr2", 100, "A", "G") == []  # contig absent from the reference: nothing
    assert annotator.annotate("chr17", 43045705, "T", "T") == []  # ALT equals REF: no change


def test_trim_and_classes():
    assert trim(100, "ACT", "A") == (101, "CT", "")
    assert trim(100, "A", "AG") == (101, "", "G")
    assert trim(100, "CAT", "CGT") == (101, "A", "G")
    assert consequence_class("splice_region_variant&intron_variant") == "Splice region"
    assert consequence_class(["missense_variant", "splice_region_variant"]) == "Missense"
    assert consequence_class("made_up_term") is None


@pytest.fixture(scope="module")
def mirrored(tmp_path_factory, annotator):
    """BRCA1 reverse-complemented onto a plus-strand contig: chr17 position P becomes ``end - P + 1``."""
    start, end = 43_040_001, 43_130_000
    folder = tmp_path_factory.mktemp("mirror")
    seq = revcomp(annotator.ref.fetch("chr17", start - 1, end))
    (folder / "mirror.fa").write_text(">mirror\n" + "\n".join(seq[i:i + 60] for i in range(0, len(seq), 60)) + "\n")
    lines = []
    for line in bundled_gtf().read_text().splitlines():
        if line.startswith("#"):
            continue
        c = line.split("\t")
        c[0], c[3], c[4], c[6] = "mirror", str(end - int(c[4]) + 1), str(end - int(c[3]) + 1), "+"
        lines.append("\t".join(c))
    (folder / "mirror.gtf").write_text("\n".join(lines) + "\n")
    return Annotator(read_transcripts(folder / "mirror.gtf"), Reference(folder / "mirror.fa")), end


def test_plus_strand_mirror_gives_the_same_names(annotator, mirrored):
    plus, end = mirrored
    assert plus.model.transcripts[0].strand == 1
    comp = str.maketrans("ACGT", "TGCA")
    cases = [(c, p, r, a) for c, p, r, a, _ in sge_records()]
    cases += [("chr17", 43124028, "CT", ""), ("chr17", 43057063, "", "G"), ("chr17", 43045709, "AG", "TA"),
              ("chr17", 43045711, "", "AAA")]
    for chrom, pos, ref, alt in cases:
        want = annotator.best(chrom, pos, ref, alt)
        # mirrored: the allele's last base becomes its first; an insertion sits between the mirrored flanks
        m_pos = end - (pos + max(len(ref), 1) - 1) + 1 if ref else end - pos + 2
        got = plus.best("mirror", m_pos, ref.translate(comp)[::-1], alt.translate(comp)[::-1])
        for key in ("so_terms", "hgvsc", "hgvsp", "codons", "amino_acids", "exon", "intron"):
            assert got[key] == want[key], (pos, ref, alt, key, got[key], want[key])
