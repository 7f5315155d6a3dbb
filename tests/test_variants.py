"""VCF + FASTA -> windows: one fixture per edge case, every policy, and the accounting invariant (the FASTA itself:
test_reference.py)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from bioreason.errors import InputFormatError, ReferenceMismatchError
from bioreason.kegg_data.reference import Reference, contig_synonyms
from bioreason.kegg_data.variants import Skip, Variant
from bioreason.kegg_data.vcf_reader import VariantReader, read_variants

DATA = Path(__file__).parent / "data"
EDGE = DATA / "vcf_edge_cases"
FIX = DATA / "fixtures"
SGE_VCF = DATA / "brca1_sge_findlay2018_grch38_part1.vcf"
CHR17 = Path(__file__).parents[1] / "kegg_data" / "data" / "GRCh38_chr17_BRCA1_Nmasked.fa.gz"


def fasta_for(vcf: Path, out: Path, fill: str = "C") -> Path:
    """A FASTA whose bases agree with every REF in ``vcf`` (for edge-case VCFs that come without one)."""
    from cyvcf2 import VCF

    contigs: dict[str, dict[int, str]] = {}
    for rec in VCF(str(vcf)):
        bases = contigs.setdefault(rec.CHROM, {})
        for i, b in enumerate(rec.REF):
            bases[rec.POS - 1 + i] = b
    with open(out, "w") as fh:
        for name, bases in contigs.items():
            seq = [fill] * (max(bases) + 200)
            for i, b in bases.items():
                seq[i] = b
            fh.write(f">{name}\n{''.join(seq)}\n")
    return out


def outcomes(vcf, fasta, **kw):
    reader = VariantReader(vcf, fasta, **kw)
    items = list(reader)
    assert reader.stats.alleles == reader.stats.windows + reader.stats.skips == len(items)
    return items, reader.stats


# --- inputs: VCF flavours and FASTA flavours ---------------------------------------------------------------
def test_real_sge_vcf_every_ref_matches():
    variants, skips, stats = read_variants(SGE_VCF, CHR17, info_fields=["LABEL"])
    assert stats.records == 1945 and len(variants) == 1945 and not skips
    ref = Reference(CHR17)
    for v in variants:
        assert ref.fetch("chr17", v.pos - 1, v.pos) == v.ref == v.ref_window[v.offset]
        assert v.alt_window[v.offset] == v.alt and v.info["LABEL"] in {"FUNC", "INT", "LOF"}


def test_vcf_gz_and_bcf_give_the_same_variants(tmp_path):
    from cyvcf2 import VCF, Writer

    src = VCF(str(SGE_VCF))
    for mode, name in (("wz", "x.vcf.gz"), ("wb", "x.bcf")):
        w = Writer(str(tmp_path / name), src, mode=mode)
        for i, rec in enumerate(VCF(str(SGE_VCF))):
            if i == 50:
                break
            w.write_record(rec)
        w.close()
    plain = [v.key for v in read_variants(SGE_VCF, CHR17)[0][:50]]
    assert [v.key for v in read_variants(tmp_path / "x.vcf.gz", CHR17)[0]] == plain
    assert [v.key for v in read_variants(tmp_path / "x.bcf", CHR17)[0]] == plain


@pytest.mark.parametrize("policy", ["error", "warn", "skip", "fix"])
def test_ref_mismatch_policies(policy, caplog):
    vcf, fa = EDGE / "bcftools_norm.check-ref.vcf", EDGE / "bcftools_norm.check-ref.fa"
    if policy == "error":
        with pytest.raises(ReferenceMismatchError) as err:
            outcomes(vcf, fa, ref_check=policy)
        msg = str(err.value)
        assert "check-ref.vcf:5" in msg and "REF 'C' at chr1:11" in msg and "('T')" in msg
        assert "--ref-check=skip" in msg
        return
    with caplog.at_level(logging.WARNING):
        (item,), _ = outcomes(vcf, fa, ref_check=policy)
    if policy == "skip":
        assert isinstance(item, Skip) and "does not match the FASTA (T)" in item.reason
    elif policy == "warn":
        assert isinstance(item, Variant) and "ref_mismatch" in item.flags and "REF C at chr1:11" in caplog.text
    else:  # fix: the FASTA's T replaces C; ALT T then equals REF, which bcftools would also drop
        assert isinstance(item, Skip) and item.reason == "ALT equals REF"


def test_injected_mismatches_are_all_caught(tmp_path):
    import random

    lines = SGE_VCF.read_text().splitlines(keepends=True)
    body = [i for i, line in enumerate(lines) if not line.startswith("#")]
    rng = random.Random(3)
    chosen = set(rng.sample(body, 60))
    for i in chosen:
        f = lines[i].split("\t")
        f[3] = {"A": "C", "C": "G", "G": "T", "T": "A"}[f[3]]
        if f[3] == f[4]:
            f[4] = {"A": "C", "C": "G", "G": "T", "T": "A"}[f[4]]
        lines[i] = "\t".join(f)
    bad = tmp_path / "injected.vcf"
    bad.write_text("".join(lines))
    variants, skips, stats = read_variants(bad, CHR17, ref_check="skip")
    assert len(skips) == 60 and len(variants) == 1945 - 60
    assert {s.record for s in skips} == {body.index(i) for i in chosen}
    with pytest.raises(ReferenceMismatchError, match=f"injected.vcf:{min(chosen) + 1}:"):
        read_variants(bad, CHR17)


def test_contig_synonyms_and_absent_contigs(caplog):
    assert contig_synonyms("chrM")[:4] == ["chrM", "M", "MT", "chrMT"] or "MT" in contig_synonyms("chrM")
    assert contig_synonyms("17") == ["17", "chr17"]
    with caplog.at_level(logging.WARNING):
        items, stats = outcomes(DATA / "clinvar_grch38_vep_testset.vcf.gz", DATA / "hg38_chr2_1-2333275.fa.gz")
    windows = [i for i in items if isinstance(i, Variant)]
    assert [(v.chrom, v.pos, v.contig) for v in windows] == [("2", 264985, "chr2"), ("2", 265015, "chr2")]
    assert all("contig_renamed" in v.flags for v in windows)
    assert caplog.text.count("contig '2' is named 'chr2'") == 1  # warned once
    others = [i for i in items if isinstance(i, Skip)]
    assert len(others) == stats.alleles - 2 and all(s.reason.startswith("contig ") for s in others)
    assert any("tried 1, chr1; it has chr2)" in s.reason for s in others)  # what the FASTA does have
    assert stats.skip_lines() == [f"  skipped 48: contig not in the FASTA (first: {others[0].reason})"]


def test_region_slice_fasta_is_named_in_the_skip(tmp_path):
    """`samtools faidx ref.fa chr17:43044294-43125363` writes a sequence of that name numbered from 1: the skip
    says so and asks for the whole chromosome, instead of only 'contig chr17 not in the FASTA'."""
    seq = Reference(CHR17).fetch("chr17", 43044293, 43045293)
    (tmp_path / "slice.fa").write_text(f">chr17:43044294-43045293\n{seq}\n")
    vcf = tmp_path / "v.vcf"
    vcf.write_text("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
                   f"17\t43044300\t.\t{seq[6]}\tA\t.\t.\t.\n")
    (skip,), stats = outcomes(vcf, tmp_path / "slice.fa")
    assert "tried 17, chr17; it holds only the region chr17:43044294-43045293, a slice numbered from 1" in skip.reason
    assert "pass the whole chromosome's FASTA" in stats.skip_lines()[0]


def test_multiallelic_records_split(tmp_path):
    vcf = EDGE / "bcftools_merge.multiallelics.1.a.vcf"
    (a, b), _ = outcomes(vcf, fasta_for(vcf, tmp_path / "r.fa"))
    assert (a.alt, a.allele, b.alt, b.allele) == ("GT", 1, "T", 2) and a.record == b.record == 0


def test_symbolic_breakend_star_and_missing_alleles(tmp_path):
    sym = EDGE / "bcftools_norm.symbolic.vcf"
    items, _ = outcomes(sym, fasta_for(sym, tmp_path / "s.fa"))
    assert [getattr(i, "reason", None) for i in items] == [
        None, "symbolic ALT <DEL> (not sequence-resolved)", None, "symbolic ALT <DEL> (not sequence-resolved)"]
    bnd = EDGE / "bcftools_norm.breakend.1.vcf"
    items, _ = outcomes(bnd, fasta_for(bnd, tmp_path / "b.fa"))
    assert all(isinstance(i, Skip) and i.reason.startswith("breakend ALT") for i in items)
    star = EDGE / "bcftools_merge.5.a.vcf"
    items, stats = outcomes(star, fasta_for(star, tmp_path / "m.fa"))
    reasons = [i.reason for i in items if isinstance(i, Skip)]
    assert stats.alleles == 7 and reasons.count("ALT '*' (spanning deletion) is described by another record") == 2
    items, _ = outcomes(FIX / "missing_alt.vcf", FIX / "tiny_ref.fa")
    assert [i.reason for i in items] == ["ALT is missing ('.')", "ALT equals REF"]
    ref = (FIX / "tiny_ref.fa").read_text().split("\n", 1)[1].replace("\n", "")
    gvcf = tmp_path / "g.vcf"  # a gVCF's reference blocks and the <NON_REF> beside a called allele: no variant
    other = "A" if ref[99] != "A" else "C"
    gvcf.write_text("##fileformat=VCFv4.2\n##contig=<ID=chrT,length=2000>\n##ALT=<ID=NON_REF,Description=\"any\">\n"
                    "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
                    f"chrT\t10\t.\t{ref[9]}\t<NON_REF>\t.\t.\t.\nchrT\t100\t.\t{ref[99]}\t{other},<NON_REF>\t.\t.\t.\n"
                    f"chrT\t200\t.\t{ref[199]}\t<*>\t.\t.\t.\n")
    items, stats = outcomes(gvcf, FIX / "tiny_ref.fa")
    assert VariantReader(gvcf, FIX / "tiny_ref.fa").warn_if_gvcf()  # the header declares <NON_REF>: said at start
    assert not VariantReader(FIX / "missing_alt.vcf", FIX / "tiny_ref.fa").warn_if_gvcf()
    assert [type(i).__name__ for i in items] == ["Skip", "Variant", "Skip", "Skip"]
    assert items[0].reason.startswith("gVCF reference allele <NON_REF>: no variant (`bcftools view -i 'GT=\"alt\"'`")
    assert stats.reasons == {"gVCF reference allele (<NON_REF>, <*>)": 3}


def test_an_alt_listed_twice_in_a_record_is_one_window_and_a_skip(tmp_path):
    ref = (FIX / "tiny_ref.fa").read_text().split("\n", 1)[1].replace("\n", "")
    vcf = tmp_path / "dup.vcf"
    base = ref[99]
    other = "A" if base != "A" else "C"
    vcf.write_text("##fileformat=VCFv4.2\n##contig=<ID=chrT,length=2000>\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\t"
                   f"INFO\nchrT\t100\t.\t{base}\t{other},{other.lower()}\t.\t.\t.\n")
    (one, two), stats = outcomes(vcf, FIX / "tiny_ref.fa")
    assert not isinstance(one, Skip) and two.reason == f"ALT {other} repeats allele 1 of this record"
    assert stats.reasons == {"ALT repeated in its record": 1}


def test_long_alleles_capped():
    items, _ = outcomes(FIX / "long_allele.vcf", FIX / "tiny_ref.fa", max_allele_len=64)
    assert [getattr(i, "reason", None) for i in items] == [
        "allele longer than 64 nt (--max-allele-len)", "allele longer than 64 nt (--max-allele-len)", None]
    ins = items[2]
    assert ins.kind == "insertion" and len(ins.alt_window) == len(ins.ref_window) == 1024


def test_non_acgtn_alleles_skipped():
    items, _ = outcomes(FIX / "non_acgtn.vcf", FIX / "tiny_ref.fa")
    assert items[0].reason.startswith("REF R has characters other than")
    assert items[1].reason.startswith("ALT Y has characters other than")


def test_contig_edges_are_padded_and_flagged():
    items, _ = outcomes(FIX / "contig_edge.vcf", FIX / "tiny_ref.fa")
    left, right, past = items
    assert "edge_padded" in left.flags and left.ref_window.startswith("N" * 510)
    assert "edge_padded" in right.flags and right.ref_window.endswith("N" * 509)
    assert isinstance(past, Skip) and "outside contig chrT (length 2000)" in past.reason


@pytest.mark.parametrize("name", ["bcftools_convert.gt.noHead.vcf", "cyvcf2_test-invalid-header.vcf"])
def test_malformed_headers_name_the_file(name):
    with pytest.raises(InputFormatError, match=rf"{name}:1: not a readable VCF/BCF header"):
        VariantReader(EDGE / name, FIX / "tiny_ref.fa")


def test_malformed_line_names_file_and_line(capfd):
    with pytest.raises(InputFormatError, match=r"malformed_line.vcf:5: htslib could not parse.*'chrT\\tten"):
        outcomes(FIX / "malformed_line.vcf", FIX / "tiny_ref.fa")
    assert "[E::" in capfd.readouterr().err  # the message ours says is 'printed above'
    with pytest.raises(InputFormatError, match=r"htslib_vcf44_1.vcf:\d+: htslib could not parse.*61480"):
        outcomes(EDGE / "htslib_vcf44_1.vcf", FIX / "tiny_ref.fa", ref_check="skip")


def test_record_with_spaces_for_tabs_says_so(tmp_path):
    header = (FIX / "malformed_line.vcf").read_text().splitlines()[:3]  # a list in INFO makes htslib fail
    (tmp_path / "spaced.vcf").write_text("\n".join(header + ["chrT 10 ok A C . . AF=0.1,0.2"]) + "\n")
    with pytest.raises(InputFormatError, match=r"spaced.vcf:4: htslib could not parse.*separated by spaces.*tabs"):
        outcomes(tmp_path / "spaced.vcf", FIX / "tiny_ref.fa")
    with pytest.raises(InputFormatError, match="fix or remove the line") as err:  # tabs there: no such advice
        outcomes(FIX / "malformed_line.vcf", FIX / "tiny_ref.fa")
    assert "spaces" not in str(err.value)
    from bioreason.kegg_data.vcf_reader import tabs_command

    assert tabs_command("my calls.vcf.gz") == "zcat 'my calls.vcf.gz' | sed '/^#/!s/ \\+/\\t/g' > fixed.vcf"


def test_empty_vcf_and_missing_contig_lines(tmp_path, capfd):
    items, stats = outcomes(EDGE / "bcftools_empty.vcf", FIX / "tiny_ref.fa")
    assert items == [] and stats.records == 0
    noseq = EDGE / "cyvcf2_no-seq-names.vcf"
    fasta = fasta_for(noseq, tmp_path / "n.fa")
    capfd.readouterr()  # fasta_for reads it with cyvcf2 as it comes
    items, _ = outcomes(noseq, fasta)
    assert len(items) == 1 and isinstance(items[0], Variant)
    # htslib's 'Contig 1 is not defined in the header (index it with tabix)' is not printed: handled here
    assert "[W::" not in capfd.readouterr().err


def test_htslib_log_level_is_restored(capfd):
    from cyvcf2 import VCF

    from bioreason.kegg_data.htslib_messages import htslib_log_level, quiet_records

    noseq = str(EDGE / "cyvcf2_no-seq-names.vcf")
    with htslib_log_level(0):
        assert not VCF(noseq).seqnames  # no ##contig lines: htslib looks for an index and would say so
    assert len(list(quiet_records(VCF(noseq)))) == 1
    assert capfd.readouterr().err == ""
    list(VCF(noseq))  # outside: htslib's own level again
    assert "[W::vcf_parse] Contig" in capfd.readouterr().err


def test_region_like_contig_names(tmp_path):
    weird = EDGE / "htslib_weird-chr-names.vcf"
    items, _ = outcomes(weird, fasta_for(weird, tmp_path / "w.fa"))
    assert [(i.chrom, i.pos) for i in items if isinstance(i, Variant)] == [
        ("1", 1), ("1", 2), ("1:1", 1), ("1:1", 2), ("1:1-1", 1), ("1:1-1", 2)]


def test_left_normalisation_shifts_indels_in_repeats(tmp_path):
    from bioreason.kegg_data.variants import WindowBuilder

    fa = tmp_path / "rep.fa"
    fa.write_text(">r\n" + "GGGGGGTCACACACAGGGGGG" + "T" * 1200 + "\n")
    # deletion of one CA at the right end of the CACACA repeat: POS 13 (A), REF ACA -> ALT A
    builder = WindowBuilder(fa, window=64, max_allele_len=8, left_normalise=True)
    (v,) = builder.build("r", 13, "ACA", ["A"])
    assert (v.pos, v.ref, v.alt) == (7, "TCA", "T") and "left_normalised" in v.flags
    plain = WindowBuilder(fa, window=64, max_allele_len=8)
    (w,) = plain.build("r", 13, "ACA", ["A"])
    assert (w.pos, w.ref) == (13, "ACA") and w.alt_window[:32 - 12 + 13] != ""
    # both describe the same haplotype: the alternate sequences agree
    assert v.alt_window[v.offset - 6:v.offset + 20] == w.alt_window[w.offset - 12:w.offset + 14]


@pytest.mark.parametrize("name, shown", [("space_separated.vcf", "'chrT 20 . A C . . .'"),
                                         ("one_word_line.vcf", "'hello'")])
def test_records_without_alleles_are_an_error_not_a_crash(name, shown, tmp_path):
    """htslib reads a line that is not tab-separated as a record with no alleles; cyvcf2 crashed (SIGSEGV) on
    its REF. Run in a child process, so a regression fails the test instead of killing the test run."""
    import subprocess
    import sys

    line = 5 if name.startswith("space") else 4
    for cmd in ("windows", "predict"):
        run = subprocess.run([sys.executable, "-m", "bioreason.app.cli", cmd, str(FIX / name), "--fasta",
                              str(FIX / "tiny_ref.fa"), "-o", str(tmp_path / cmd), "--model", "base"][:-2 if
                             cmd == "windows" else None], capture_output=True, text=True, timeout=300)
        assert run.returncode == 2, (cmd, run.returncode, run.stderr[-500:])
        assert f"{name}:{line}: no REF allele in this record: {shown}" in run.stderr
        assert "Traceback" not in run.stderr
        if name.startswith("space"):  # the same advice as for a spaced record htslib cannot parse
            assert "its columns are separated by spaces" in run.stderr and "sed -i '/^#/!s/ " in run.stderr
        else:
            assert "needs 8 or more columns separated by tabs" in run.stderr


@pytest.mark.parametrize("policy", ["error", "warn", "skip", "fix"])
def test_reference_without_sequence_is_a_recorded_skip(policy, tmp_path):
    """The bundled chr17 is N outside BRCA1: a variant there is skipped with that reason under every --ref-check
    (it was an error advising warn, and warn then scored an all-N window)."""
    from bioreason.kegg_data.bundled import bundled_fasta

    vcf = tmp_path / "elsewhere.vcf"
    vcf.write_text("##fileformat=VCFv4.2\n##contig=<ID=chr17>\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
                   "chr17\t7676154\t.\tG\tA\t.\t.\t.\nchr17\t43045711\t.\tG\tT\t.\t.\t.\n")
    items, stats = outcomes(vcf, bundled_fasta(), ref_check=policy)
    assert isinstance(items[0], Skip) and isinstance(items[1], Variant)
    assert items[0].reason.startswith("the FASTA has no sequence (N) at chr17:7676154")
    assert stats.reasons == {"no sequence (N) in the FASTA": 1}


def test_ref_mismatch_error_hints_at_the_build(tmp_path):
    vcf = tmp_path / "wrong.vcf"
    vcf.write_text("##fileformat=VCFv4.2\n##contig=<ID=chrT>\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
                   "chrT\t1\t.\tT\tA\t.\t.\t.\n")
    with pytest.raises(ReferenceMismatchError, match="genome build"):
        outcomes(vcf, FIX / "tiny_ref.fa")
