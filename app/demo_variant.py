"""What the demo's variant tabs show about one variant, apart from the model: the variant box read as a variant
(``parse_variant``), two pasted sequences located as a variant of a gene of the transcript model
(``locate_difference``), and the page's HTML for the window, its annotation and the label decision. The example
variants (real BRCA1 saturation-genome-editing variants) live here too. Only strings in, strings out: no model and
no Gradio, so ``app/demo.py`` and the tests use them alike.
"""

from __future__ import annotations

import html
import re

from bioreason.app.demo_limits import DemoInputError

EXAMPLES = [  # real BRCA1 saturation-genome-editing variants (Findlay et al. 2018), GRCh38, with the assay's class
    ["chr17:43045711 G>T", "LOF in the assay"],
    ["chr17:43045709 A>G", "LOF in the assay"],
    ["chr17:43045705 T>A", "FUNC in the assay"],
]
VARIANT_RE = re.compile(r"^\s*(?:chr)?([0-9A-Za-z_.]+)\s*[:\s]\s*([0-9,]+)\s+([ACGTNacgtn]+)\s*(?:>|/|\s)\s*([ACGTNacgtn]+)\s*$")


def parse_variant(text: str) -> tuple[str, int, str, str]:
    """'chr17:43045711 G>T' -> ('chr17', 43045711, 'G', 'T'); a clear error otherwise."""
    m = VARIANT_RE.match(text or "")
    if not m:
        raise DemoInputError(f"cannot read {text!r} as a variant; write it as chrom:pos ref>alt, e.g. chr17:43045711 G>T")
    chrom = text.strip().split(":")[0].split()[0]
    return chrom, int(m.group(2).replace(",", "")), m.group(3).upper(), m.group(4).upper()


def annotation_text(a: dict | None) -> str:
    """'Nonsense (stop_gained), c.5559C>A, p.Y1853*, exon 23/23 of BRCA1 NM_007294.3' or ''."""
    if not a:
        return ""
    terms = "&".join(a.get("so_terms") or [])
    parts = [f"{a['consequence']} ({terms})" if terms else str(a.get("consequence"))]
    parts += [a[k] for k in ("hgvsc", "hgvsp") if a.get(k)]
    where = [f"exon {a['exon']}" if a.get("exon") else "", f"intron {a['intron']}" if a.get("intron") else ""]
    where = " ".join(w for w in where if w)
    gene = " ".join(x for x in (a.get("gene"), a.get("transcript")) if x)
    return ", ".join(parts) + (f", {where}" if where else "") + (f" of {gene}" if gene else "")


def window_html(variant, flank: int = 60, annotation: dict | None = None) -> str:
    """The reference and alternate windows around the allele, the allele highlighted, and its annotation."""
    o = variant.offset
    ref = variant.ref_window[o - flank:o], variant.ref_window[o:o + len(variant.ref)], variant.ref_window[
        o + len(variant.ref):o + len(variant.ref) + flank]
    alt = variant.alt_window[o - flank:o], variant.alt_window[o:o + len(variant.alt)], variant.alt_window[
        o + len(variant.alt):o + len(variant.alt) + flank]

    def row(name, parts, colour):
        a, b, c = (html.escape(x) for x in parts)
        return (f"<div><b>{name}</b> <code style='font-size:12px'>{a}<mark style='background:{colour}'>{b}</mark>"
                f"{c}</code></div>")

    said = ""
    if annotation:
        source = {"vcf": "from the VCF", "computed": "computed from the transcript model"}.get(
            annotation.get("source"), "")
        said = f"<p class='br-annotation'><b>Annotation</b> ({source}): {html.escape(annotation_text(annotation))}</p>"
    return (f"<div class='br-window'><p>{html.escape(variant.chrom)}:{variant.pos} {variant.ref}&gt;{variant.alt}, "
            f"window of {len(variant.ref_window)} nt (allele at offset {o + 1}; ±{flank} nt shown)</p>"
            + said + row("ref", ref, "#9fd3ff") + row("alt", alt, "#ffb3b3") + "</div>")


def decision_html(res: dict, decision: dict | None) -> str:
    """The label predict would write (BR_LABEL) and why: the model's threshold rule, or the more likely label."""
    if decision and res.get("label_source") == "threshold":
        pos, t = decision["positive"], float(decision["threshold"])
        why = f"P({pos}) {res['probs'][pos]:.3f} {'>=' if res['label'] == pos else '<'} the model's threshold {t:g}"
    else:
        why = "the more likely label"
    return f"<p class='br-decision'><b>Label: {html.escape(res['label'])}</b> ({html.escape(why, quote=False)})</p>"


def locate_difference(ref_seq: str, alt_seq: str, annotator, max_bases: int = 5_000_000):
    """Two pasted sequences that differ in one place -> (chrom, pos, ref, alt) when the reference sequence occurs
    once near a gene of the transcript model (either strand); None otherwise, or when the genes span more than
    ``max_bases`` (a whole-genome GTF: not searched). POS is 1-based, VCF-style (an indel keeps its padding base)."""
    from bioreason.kegg_data.consequence import revcomp, trim

    ref_seq, alt_seq = "".join(ref_seq.split()).upper(), "".join(alt_seq.split()).upper()
    if not ref_seq or not alt_seq or ref_seq == alt_seq or annotator is None:
        return None
    if sum(t.end - t.start + 1 + 2 * annotator.flank for t in annotator.model.transcripts) > max_bases:
        return None
    hits = []
    for t in annotator.model.transcripts:
        contig = annotator.ref.resolve(t.chrom)
        if contig is None:
            continue
        lo = max(0, t.start - 1 - annotator.flank)
        region = annotator.ref.fetch(contig, lo, t.end + annotator.flank)
        for strand, (r, a) in ((1, (ref_seq, alt_seq)), (-1, (revcomp(ref_seq), revcomp(alt_seq)))):
            i = region.find(r)
            if i >= 0 and region.find(r, i + 1) < 0:
                hits.append((t.chrom, lo + i + 1, r, a))
    if len(hits) != 1:
        return None
    chrom, start, r, a = hits[0]
    pos, ref, alt = trim(start, r, a)  # the one difference, then a VCF padding base for an indel
    if not ref or not alt:
        pad = r[pos - start - 1] if pos > start else None
        if pad is None:
            return None
        pos, ref, alt = pos - 1, pad + ref, pad + alt
    return chrom, pos, ref, alt
