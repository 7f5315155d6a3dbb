"""Labelled variants with annotations: prompts in two modes, fact-only reasoning traces, position-block splits.

Used to train and evaluate a variant-effect model on real labelled VCFs (BRCA1 saturation genome editing first).
- Annotation is read from the VCF when it has one: Ensembl VEP ``CSQ`` or SnpEff ``ANN`` (field layout from the
  header), or the SGE file's own ``CONSEQ``/``HGVSC``/``HGVSP``; a record without any is annotated from a transcript
  model when an ``Annotator`` (``consequence.py``) is given. Prompts state it in one vocabulary whatever its
  source: the consequence class (SO terms -> ``Missense``, ``Canonical splice``...), HGVS c., one-letter HGVS p.
  ``annotated`` prompts include it;
  ``sequence`` prompts have only the variant, gene and the two DNA windows (both built like ``predict`` does).
- Traces state only facts: the consequence and HGVS names from the annotation, and what biopython computes from
  the windows (reference and alternate codon, amino-acid change) when the annotation gives a coding position;
  the computed change is kept only if it agrees with the annotation's protein change. A trace ends with
  ``Answer: ...``.
- Labels: binary ``LOF`` vs ``FUNC`` (FUNC and INT merged, as in the Evo 2 BRCA1 study).
- ``block_split``: train/validation by genomic position in contiguous blocks, never at random.
"""

from __future__ import annotations

import re
from typing import NamedTuple
from urllib.parse import unquote

from bioreason.kegg_data.examples import Example
from bioreason.kegg_data.reference import prompt_chrom
from bioreason.kegg_data.user_data import variant_question
from bioreason.kegg_data.variants import Skip
from bioreason.kegg_data.vcf_reader import VariantReader

LABELS = ("LOF", "FUNC")
TRACE_PREFIX = "<think>\nThe variant is"  # every fact trace opens so; predict --traces starts the answer with it
LABEL_MAP = {"LOF": "LOF", "FUNC": "FUNC", "INT": "FUNC"}
MAX_FIELD = 100  # characters of each annotation field a prompt states
QUESTION = ("Variant {chrom}:{pos} {ref}>{alt}{gene}. The first DNA sequence is the reference window and the second "
            "carries the variant at position {offset}. Is this variant loss-of-function (LOF) or functional (FUNC)?")
_HGVSC_CODING = re.compile(r"^c\.(\d+)([ACGT])>([ACGT])$")
_HGVSC_INTRON = re.compile(r"^c\.-?\d+[+-](\d+)[ACGT]>[ACGT]$")
_AA3 = {"Ala": "A", "Arg": "R", "Asn": "N", "Asp": "D", "Cys": "C", "Gln": "Q", "Glu": "E", "Gly": "G", "His": "H",
        "Ile": "I", "Leu": "L", "Lys": "K", "Met": "M", "Phe": "F", "Pro": "P", "Ser": "S", "Thr": "T", "Trp": "W",
        "Tyr": "Y", "Val": "V", "Ter": "*"}


def _fields_from_header(reader: VariantReader, key: str) -> list[str] | None:
    """The '|'-separated layout of a CSQ/ANN INFO field, read from its header description."""
    for line in reader._vcf.raw_header.splitlines():
        if line.startswith(f"##INFO=<ID={key},"):
            m = re.search(r"Format: ([^\"]+)\"", line) or re.search(r"'([^']+)'", line)
            if m:
                return [f.strip() for f in m.group(1).split("|")]
    return None


def read_annotation(info: dict, alt: str, layouts: dict) -> dict:
    """{consequence, hgvsc, hgvsp, gene} from CSQ (VEP), ANN (SnpEff) or CONSEQ/HGVSC/HGVSP; {} if none."""
    for key, names in (("CSQ", ("Allele", "Consequence", "HGVSc", "HGVSp", "SYMBOL", "STRAND")),
                       ("ANN", ("Allele", "Annotation", "HGVS.c", "HGVS.p", "Gene_Name", None))):
        raw, layout = info.get(key), layouts.get(key)
        if raw and layout:
            for entry in str(raw).split(","):
                vals = dict(zip(layout, entry.split("|")))
                if vals.get(names[0], alt) in (alt, "-"):
                    return {"consequence": vals.get(names[1]) or None,
                            "hgvsc": (vals.get(names[2]) or "").split(":")[-1] or None,
                            "hgvsp": unquote((vals.get(names[3]) or "").split(":")[-1]) or None,
                            "gene": vals.get(names[4]) or None, "strand": _strand(vals.get(names[5] or "")),
                            "source": "vcf"}
    if info.get("CONSEQ"):
        clean = {k: unquote(str(info[k])) if info.get(k) not in (None, ".") else None for k in ("CONSEQ", "HGVSC", "HGVSP")}
        return {"consequence": clean["CONSEQ"].replace("_", " "), "hgvsc": clean["HGVSC"],
                "hgvsp": clean["HGVSP"] if clean["HGVSP"] not in (None, ".") else None, "gene": None, "source": "vcf"}
    return {}


def _strand(raw) -> int | None:
    return {"1": 1, "-1": -1}.get(str(raw).strip()) if raw else None


def _protein_short(hgvsp: str | None) -> str | None:
    """p.Leu1854Pro / p.L1854P / p.Y1853* / p.I1855= -> 'L1854P' form."""
    if not hgvsp:
        return None
    s = hgvsp.split(":")[-1].removeprefix("p.").strip("()")
    for three, one in _AA3.items():
        s = s.replace(three, one)
    return s


def codon_facts(variant, hgvsc: str | None, strand: int) -> dict | None:
    """Reference/alternate codon and amino acids of a coding SNV, computed from the windows with biopython.

    Needs a coding HGVSc (``c.N X>Y``, no intronic offset) and the gene's strand; the codon's other two bases
    are taken from the window next to the variant (they are assumed to lie in the same exon; the caller checks
    the result against the annotation's protein change).
    """
    m = _HGVSC_CODING.match(hgvsc or "")
    if not m or len(variant.ref) != 1 or len(variant.alt) != 1:
        return None
    from Bio.Seq import Seq

    cds = int(m.group(1))
    phase = (cds - 1) % 3  # 0-based position of the variant inside its codon
    o = variant.offset
    if strand > 0:
        ref_codon = variant.ref_window[o - phase:o - phase + 3]
        alt_codon = variant.alt_window[o - phase:o - phase + 3]
    else:  # minus strand: the codon runs leftwards on the genome
        ref_codon = str(Seq(variant.ref_window[o + phase - 2:o + phase + 1]).reverse_complement())
        alt_codon = str(Seq(variant.alt_window[o + phase - 2:o + phase + 1]).reverse_complement())
    if len(ref_codon) != 3 or ref_codon[phase] != m.group(2):
        return None
    ref_aa, alt_aa = str(Seq(ref_codon).translate()), str(Seq(alt_codon).translate())
    number = (cds - 1) // 3 + 1
    change = f"{ref_aa}{number}{'=' if ref_aa == alt_aa else alt_aa}"
    return {"codon": number, "ref_codon": ref_codon, "alt_codon": alt_codon, "ref_aa": ref_aa, "alt_aa": alt_aa,
            "protein_change": change}


def consequence_from_codon(f: dict) -> str:
    if f["ref_aa"] == f["alt_aa"]:
        return "Synonymous"
    if f["alt_aa"] == "*":
        return "Nonsense"
    return "Missense"


def substitution_score(facts: dict | None) -> int | None:
    """BLOSUM62 score of a missense change (biopython's matrix); None for other changes."""
    if not facts or facts["ref_aa"] == facts["alt_aa"] or "*" in (facts["ref_aa"], facts["alt_aa"]):
        return None
    from Bio.Align import substitution_matrices

    return int(substitution_matrices.load("BLOSUM62")[facts["ref_aa"]][facts["alt_aa"]])


def intron_offset(hgvsc: str | None) -> int | None:
    """Distance into the intron from an HGVSc name such as c.5468-2A>G or c.5193+12T>C; None when exonic."""
    m = _HGVSC_INTRON.match(hgvsc or "")
    return int(m.group(1)) if m else None


def computed_facts(ann: dict, facts: dict | None) -> list[str]:
    """The facts derived from the annotation and the sequence, as short sentences (shared by prompt and trace)."""
    out = []
    if facts:
        out.append(f"Codon {facts['codon']} changes from {facts['ref_codon']} to {facts['alt_codon']}, so "
                   f"{facts['ref_aa']} becomes {facts['alt_aa']} ({facts['protein_change']}).")
    blosum = substitution_score(facts)
    if blosum is not None:
        out.append(f"The BLOSUM62 score of {facts['ref_aa']} to {facts['alt_aa']} is {blosum}.")
    off = intron_offset(ann.get("hgvsc"))
    if off is not None:
        out.append(f"It lies {off} nt into the intron.")
    return out


def fact_trace(variant, ann: dict, facts: dict | None, gene: str | None) -> str:
    """A reasoning trace made only of the annotation and computed facts (no free text beyond linking words)."""
    where = f"{prompt_chrom(variant.chrom)}:{variant.pos} {variant.ref}>{variant.alt}" + (f" in {gene}" if gene else "")
    lines = [f"The variant is {where}."]
    if ann.get("hgvsc"):
        lines.append(f"On the transcript it is {ann['hgvsc']}.")
    lines += computed_facts(ann, facts)
    if ann.get("consequence"):
        lines.append(f"The consequence is {ann['consequence'].lower()}.")
    return "\n".join(lines)


def annotation_layouts(reader: VariantReader) -> dict:
    """{'CSQ': [...], 'ANN': [...]} field layouts from a reader's header (None where the field is absent)."""
    return {k: _fields_from_header(reader, k) for k in ("CSQ", "ANN")}


class VariantPrompt(NamedTuple):
    question: str
    trace: str
    consequence: str | None  # the class stated (or, for sequence prompts, known to evaluation)
    facts: dict | None
    mode: str  # the prompt mode used: annotated or sequence
    annotation: dict  # what the VCF or the transcript model said ({} if nothing), with its ``source``


def prompt_annotation(ann: dict) -> dict:
    """The annotation in the prompts' one vocabulary: consequence class, HGVS c., one-letter HGVS p."""
    from bioreason.kegg_data.consequence import consequence_class

    if not ann:
        return {}
    # a prompt states short facts: an INFO value of any size (a 1 MB CSQ) must not become 250,000 tokens
    ann = {k: v[:MAX_FIELD] + "..." if isinstance(v, str) and len(v) > MAX_FIELD else v for k, v in ann.items()}
    cons = ann.get("consequence")
    if cons and "_" in cons:  # SO terms (VEP CSQ, SnpEff ANN): the most severe, as its class
        cons = consequence_class(cons) or cons
    short = _protein_short(ann.get("hgvsp"))
    return {**ann, "consequence": cons, "hgvsp": f"p.{short}" if short else None}


def variant_prompt(v, layouts: dict, mode: str = "annotated", gene: str | None = None, strand: int | None = None,
                   annotator=None) -> VariantPrompt:
    """One variant -> its prompt, fact trace and annotation. Shared by training data, ``predict`` and the demo.

    ``annotated`` puts the annotation (the VCF's own; else, with ``annotator``, the one computed from the
    transcript model) and the facts derived from it in the question; a variant with neither falls back to
    ``sequence``. ``strand`` (+1/-1) is needed for codon facts; the annotation's own strand wins.
    """
    ann = read_annotation(v.info, v.alt, layouts)
    if not ann and annotator is not None:
        ann = annotator.best(v.chrom, v.pos, v.ref, v.alt)
    shown = prompt_annotation(ann)
    g = shown.get("gene") or gene
    strand = shown.get("strand") or strand
    facts = codon_facts(v, shown.get("hgvsc"), strand) if strand else None
    if facts and _protein_short(shown.get("hgvsp")) not in (None, facts["protein_change"]):
        facts = None  # the computed change disagrees with the annotation: state neither
    question = variant_question(v, QUESTION, g)
    used = "annotated" if mode == "annotated" and shown else "sequence"
    if used == "annotated":
        parts = [f"{k}: {shown[k]}" for k in ("consequence", "hgvsc", "hgvsp") if shown.get(k)]
        question += " Annotation: " + "; ".join(parts) + ". " + " ".join(computed_facts(shown, facts))
        question = question.rstrip()
    consequence = shown.get("consequence") or (consequence_from_codon(facts) if facts else None)
    if used == "sequence":  # the model sees no annotation: its trace states only the variant and the consequence
        return VariantPrompt(question, fact_trace(v, {"consequence": consequence}, None, g), consequence, facts,
                             used, ann)
    return VariantPrompt(question, fact_trace(v, shown, facts, g), consequence, facts, used, ann)


def annotation_info_fields(label_field: str | None = None) -> tuple[str, ...]:
    """The INFO fields ``variant_prompt`` reads (plus a label field for training data)."""
    return ((label_field,) if label_field else ()) + ("CSQ", "ANN", "CONSEQ", "HGVSC", "HGVSP")


def load_annotated(vcf, fasta, mode: str = "annotated", gene: str | None = None, strand: int = 1,
                   label_field: str = "LABEL", annotated_share: float = 0.5, transcripts=None, strip: bool = False,
                   **window_options):
    """A labelled VCF -> (examples, skips). ``mode``: ``annotated``, ``sequence`` (prompt content only) or
    ``mixed`` (by record number: ``annotated_share`` of the records annotated, the rest sequence-only, so one
    model learns both prompt forms). ``transcripts``: a ``TranscriptModel`` that annotates records the VCF leaves
    bare; ``strip=True`` ignores the VCF's own annotation (a bare VCF: every prompt uses the computed one)."""
    if mode not in ("annotated", "sequence", "mixed"):
        raise ValueError(f"mode must be 'annotated', 'sequence' or 'mixed', not {mode!r}")
    reader = VariantReader(vcf, fasta, info_fields=(label_field,) if strip else annotation_info_fields(label_field),
                           **window_options)
    layouts = annotation_layouts(reader)
    annotator = None
    if transcripts is not None:
        from bioreason.kegg_data.consequence import Annotator

        annotator = Annotator(transcripts, reader.reference)
    examples, skips = [], []
    for v in reader:
        if isinstance(v, Skip):
            skips.append(v)
            continue
        raw = v.info.get(label_field)
        label = LABEL_MAP.get(str(raw).upper()) if raw is not None else None
        if label is None:
            why = f"label {raw!r} is not LOF, FUNC or INT" if raw not in (None, "", ".") else \
                f"no label (INFO/{label_field} missing)"
            skips.append(Skip(v.chrom, v.pos, v.ref, v.alt, why, v.record,
                              v.allele))
            continue
        this_mode = mode if mode != "mixed" else (
            "annotated" if (v.record * 0.6180339887) % 1 < annotated_share else "sequence")  # golden-ratio spread
        p = variant_prompt(v, layouts, this_mode, gene, strand, annotator)
        examples.append(Example(p.question, [v.ref_window, v.alt_window], label, p.trace,
                                {"label": label, "variant": v.key, "pos": v.pos, "annotation": p.consequence,
                                 "mode": p.mode, "facts": p.facts, "annotation_source": p.annotation.get("source"),
                                 "blosum62": substitution_score(p.facts), "intron_offset":
                                     intron_offset(prompt_annotation(p.annotation).get("hgvsc"))}))
    return examples, skips


def block_split(examples: list[Example], n_blocks: int = 5, val_blocks=(4,)) -> tuple[list, list]:
    """Train/validation split by genomic position in ``n_blocks`` contiguous blocks of equal variant counts."""
    order = sorted(range(len(examples)), key=lambda i: examples[i].meta["pos"])
    positions = sorted({examples[i].meta["pos"] for i in order})
    edges = [positions[min(len(positions) - 1, (k * len(positions)) // n_blocks)] for k in range(1, n_blocks)]

    def block(pos):
        return sum(pos >= e for e in edges)

    train = [e for e in examples if block(e.meta["pos"]) not in val_blocks]
    val = [e for e in examples if block(e.meta["pos"]) in val_blocks]
    return train, val
