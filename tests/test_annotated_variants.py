"""Annotated labelled variants (real BRCA1 SGE data): fact-only traces, codons by biopython, the two prompt
modes, VEP CSQ / SnpEff ANN parsing, and the position-block split."""

from __future__ import annotations

from pathlib import Path

import pytest

from bioreason.kegg_data.annotated_variants import (block_split, intron_offset, load_annotated, prompt_annotation,
                                                    read_annotation, substitution_score)
from bioreason.kegg_data.bundled import bundled_fasta

SGE = Path(__file__).parents[1] / "examples" / "brca1_sge_part1.vcf"


@pytest.fixture(scope="module")
def annotated():
    return load_annotated(SGE, bundled_fasta(), mode="annotated", gene="BRCA1", strand=-1)


def test_labels_binary_and_every_record_accounted(annotated):
    examples, skips = annotated
    assert len(examples) == 1945 and not skips
    assert {e.meta["label"] for e in examples} == {"LOF", "FUNC"}
    assert sum(e.meta["label"] == "LOF" for e in examples) == 374  # FUNC 1451 + INT 120 -> FUNC


def test_codons_from_biopython_agree_with_the_published_protein_change(annotated):
    examples, _ = annotated
    coding = [e for e in examples if e.meta["annotation"] in ("Missense", "Synonymous", "Nonsense")]
    with_facts = [e for e in coding if e.meta["facts"]]
    assert len(with_facts) / len(coding) > 0.95  # computed from the windows; disagreements are dropped, not stated
    ex = next(e for e in examples if e.meta["variant"] == "chr17:43045709:A:G")  # c.5561T>C p.L1854P
    f = ex.meta["facts"]
    assert (f["ref_codon"], f["alt_codon"], f["protein_change"]) == ("CTG", "CCG", "L1854P")
    assert "Codon 1854 changes from CTG to CCG, so L becomes P (L1854P).\nThe BLOSUM62 score of L to P is -3." in ex.reasoning
    assert ex.target().endswith("</think>\n\nAnswer: LOF")
    for e in with_facts:  # nonsense facts really are stops, synonymous really keep the amino acid
        if e.meta["annotation"] == "Nonsense":
            assert e.meta["facts"]["alt_aa"] == "*"
        if e.meta["annotation"] == "Synonymous":
            assert e.meta["facts"]["ref_aa"] == e.meta["facts"]["alt_aa"]


def test_two_prompt_modes(annotated):
    examples, _ = annotated
    seq_only, _ = load_annotated(SGE, bundled_fasta(), mode="sequence", gene="BRCA1", strand=-1, window=512,
                                 max_allele_len=8)
    assert "Annotation: consequence: Missense; hgvsc: c.5561T>C; hgvsp: p.L1854P." in next(
        e.question for e in examples if e.meta["variant"] == "chr17:43045709:A:G")
    assert all("Annotation" not in e.question for e in seq_only)
    assert "in BRCA1" in seq_only[0].question and len(seq_only[0].dna[0]) == 512


def test_vep_csq_and_snpeff_ann_are_read():
    layouts = {"CSQ": ["Allele", "Consequence", "IMPACT", "SYMBOL", "HGVSc", "HGVSp"],
               "ANN": ["Allele", "Annotation", "Annotation_Impact", "Gene_Name", "Gene_ID", "HGVS.c", "HGVS.p"]}
    csq = "G|missense_variant|MODERATE|BRCA1|ENST00000357654.9:c.5561T>C|ENSP00000350283.3:p.Leu1854Pro"
    got = read_annotation({"CSQ": "C|synonymous_variant|LOW|BRCA1||," + csq}, "G", layouts)
    assert got == {"consequence": "missense_variant", "hgvsc": "c.5561T>C", "hgvsp": "p.Leu1854Pro", "gene": "BRCA1",
                   "strand": None, "source": "vcf"}
    shown = prompt_annotation(got)  # prompts state every source in the SGE data's vocabulary
    assert (shown["consequence"], shown["hgvsp"]) == ("Missense", "p.L1854P")
    assert prompt_annotation({"consequence": "splice_region_variant&intron_variant"})["consequence"] == "Splice region"
    with_strand = {"CSQ": csq + "|-1"}
    assert read_annotation(with_strand, "G", {"CSQ": layouts["CSQ"] + ["STRAND"]})["strand"] == -1
    ann = "G|stop_gained|HIGH|BRCA1|672|c.5559C>G|p.Tyr1853*"
    assert read_annotation({"ANN": ann}, "G", layouts)["consequence"] == "stop_gained"
    assert read_annotation({}, "G", layouts) == {}


def test_block_split_is_by_position(annotated):
    examples, _ = annotated
    train, val = block_split(examples, n_blocks=5, val_blocks=(4,))
    assert len(train) + len(val) == len(examples) and 0.1 < len(val) / len(examples) < 0.3
    assert max(e.meta["pos"] for e in train) < min(e.meta["pos"] for e in val)


def test_mixed_mode_alternates_prompt_forms():
    examples, _ = load_annotated(SGE, bundled_fasta(), mode="mixed", gene="BRCA1", strand=-1)
    assert [e.meta["mode"] for e in examples[:4]] == ["annotated", "sequence", "annotated", "sequence"]
    assert ("Annotation:" in examples[0].question) and ("Annotation:" not in examples[1].question)
    with pytest.raises(ValueError, match="mode must be"):
        load_annotated(SGE, bundled_fasta(), mode="both")


def test_computed_facts_blosum_and_intron_offset(annotated):
    examples, _ = annotated
    assert substitution_score({"ref_aa": "L", "alt_aa": "P"}) == -3  # BLOSUM62, from biopython's matrix
    assert substitution_score({"ref_aa": "W", "alt_aa": "W"}) is None
    assert substitution_score({"ref_aa": "Y", "alt_aa": "*"}) is None
    assert (intron_offset("c.5468-9T>G"), intron_offset("c.5193+12T>C"), intron_offset("c.5561T>C")) == (9, 12, None)
    intronic = next(e for e in examples if e.meta["annotation"] == "Intronic")
    assert "nt into the intron." in intronic.question and "nt into the intron." in intronic.reasoning
    missense = next(e for e in examples if e.meta["variant"] == "chr17:43045709:A:G")
    assert "The BLOSUM62 score of L to P is -3." in missense.question  # annotated prompts carry the facts


def test_sequence_traces_state_only_what_the_prompt_allows():
    seq_only, _ = load_annotated(SGE, bundled_fasta(), mode="sequence", gene="BRCA1", strand=-1, window=256)
    ex = next(e for e in seq_only if e.meta["variant"] == "chr17:43045709:A:G")
    assert ex.reasoning == "The variant is chr17:43045709 A>G in BRCA1.\nThe consequence is missense."
    assert ex.meta["facts"]["protein_change"] == "L1854P"  # still known to evaluation, just not stated


def test_huge_annotation_fields_are_cut_in_prompts():
    shown = prompt_annotation({"consequence": "Missense", "hgvsc": "c." + "A" * 1_000_000, "gene": "G" * 500})
    assert len(shown["hgvsc"]) == 103 and shown["hgvsc"].endswith("...") and len(shown["gene"]) == 103


def test_one_variant_one_prompt_however_the_vcf_names_its_chromosome(tmp_path):
    """Ensembl-style '17' and UCSC-style 'chr17' give the same prompt and trace (the shipped models were trained on
    chr-named VCFs); names that are not numbered, sex or mitochondrial chromosomes are kept as written."""
    from bioreason.kegg_data.reference import prompt_chrom

    lines = SGE.read_text().splitlines()
    header = [x for x in lines if x.startswith("#")]
    record = next(x for x in lines if x.startswith("chr17\t43045709\t"))
    ensembl = tmp_path / "ensembl.vcf"
    ensembl.write_text("\n".join(header + [record[3:]]) + "\n")
    ucsc = tmp_path / "ucsc.vcf"
    ucsc.write_text("\n".join(header + [record]) + "\n")
    (a,), _ = load_annotated(ensembl, bundled_fasta(), mode="annotated", gene="BRCA1", strand=-1)
    (b,), _ = load_annotated(ucsc, bundled_fasta(), mode="annotated", gene="BRCA1", strand=-1)
    assert a.question == b.question and a.reasoning == b.reasoning and "Variant chr17:43045709 A>C" in a.question
    assert [prompt_chrom(n) for n in ("17", "chr17", "X", "chrx", "MT", "chrM", "M", "NC_000017.11", "chrUn_KI270742v1",
                                      "GL000192.1")] == \
        ["chr17", "chr17", "chrX", "chrX", "chrM", "chrM", "chrM", "NC_000017.11", "chrUn_KI270742v1", "GL000192.1"]
