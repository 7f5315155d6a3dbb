"""Variant consequences computed from a transcript model and the reference, as Ensembl VEP names them.

``Annotator(transcripts, reference).annotate(chrom, pos, ref, alt)`` gives, for each chosen transcript within
5 kb (one per gene, see ``transcripts.py``), a dict with the Sequence Ontology terms (most severe first, VEP's
order), HGVS c. (or n.) and p. names, exon/intron rank, distance into the intron, codons and amino acids, and
``consequence``: the short class the prompts use (``Missense``, ``Canonical splice``...; the same words as the
BRCA1 SGE data the shipped model learned). ``best(...)`` is the most severe of them, or an ``intergenic_variant``
annotation when no transcript is near. Records are trimmed to their minimal form first (VCF padding bases).

Rules (VEP's): splice donor/acceptor = the first/last 2 intron bases; splice region = exon bases 1-3 and intron
bases 3-8 from an exon-intron boundary; UTR and CDS from the transcript's coding bounds, stop codon included.
Protein effects come from translating the reference and the edited transcript (biopython, standard code), so
SNVs, MNVs and indels share one path. HGVS: positions in transcript order; indels shifted 3' on the transcript
within their exon or intron; an insertion equal to the bases 5' of it is a ``dup``; intronic positions are
named from the nearer exon (``+`` up to the middle); protein names one-letter (``p.I1855M``, ``p.Y1853*``,
``p.E23Vfs*17``), as in the SGE data. Coordinates: 1-based inclusive genomic, 0-based transcript indices.
"""

from __future__ import annotations

import bisect

from bioreason.kegg_data.transcripts import Transcript, TranscriptModel

SEVERITY = ("splice_acceptor_variant", "splice_donor_variant", "stop_gained", "frameshift_variant", "stop_lost",
            "start_lost", "inframe_insertion", "inframe_deletion", "missense_variant", "protein_altering_variant",
            "splice_region_variant", "start_retained_variant", "stop_retained_variant", "synonymous_variant",
            "coding_sequence_variant", "5_prime_UTR_variant", "3_prime_UTR_variant",
            "non_coding_transcript_exon_variant", "intron_variant", "upstream_gene_variant",
            "downstream_gene_variant", "intergenic_variant")
RANK = {t: i for i, t in enumerate(SEVERITY)}
CLASS = {"splice_acceptor_variant": "Canonical splice", "splice_donor_variant": "Canonical splice",
         "stop_gained": "Nonsense", "frameshift_variant": "Frameshift", "stop_lost": "Stop lost",
         "start_lost": "Start lost", "inframe_insertion": "Inframe insertion", "inframe_deletion": "Inframe deletion",
         "missense_variant": "Missense", "protein_altering_variant": "Protein altering",
         "splice_region_variant": "Splice region", "start_retained_variant": "Synonymous",
         "stop_retained_variant": "Synonymous", "synonymous_variant": "Synonymous",
         "coding_sequence_variant": "Coding sequence", "5_prime_UTR_variant": "5' UTR", "3_prime_UTR_variant": "3' UTR",
         "non_coding_transcript_exon_variant": "Non-coding exon", "intron_variant": "Intronic",
         "upstream_gene_variant": "Upstream", "downstream_gene_variant": "Downstream",
         "intergenic_variant": "Intergenic"}
FLANK = 5000  # upstream/downstream distance, as VEP
_COMP = str.maketrans("ACGTN", "TGCAN")


def revcomp(s: str) -> str:
    return s.translate(_COMP)[::-1]


def consequence_class(terms) -> str | None:
    """The prompt's class for SO terms ('missense_variant&splice_region_variant' or a list): the most severe."""
    if isinstance(terms, str):
        terms = [t for t in terms.replace(",", "&").split("&") if t]
    known = sorted((t for t in terms if t in RANK), key=RANK.get)
    return CLASS[known[0]] if known else None


def trim(pos: int, ref: str, alt: str) -> tuple[int, str, str]:
    """Minimal form: common suffix, then common prefix removed (VCF padding); ``pos`` moves with the prefix."""
    while ref and alt and ref[-1] == alt[-1]:
        ref, alt = ref[:-1], alt[:-1]
    while ref and alt and ref[0] == alt[0]:
        ref, alt, pos = ref[1:], alt[1:], pos + 1
    return pos, ref, alt


class _Tx:
    """A transcript with its spliced sequence (5'->3') and the maps between genome and transcript. Exons are also
    kept in genomic order (``starts``/``ends``, bisected), so locating a position costs O(log exons)."""

    def __init__(self, t: Transcript, fetch):
        self.t, self.plus = t, t.strand > 0
        self.fetch = fetch  # (start, end) 1-based inclusive genomic -> sequence (forward strand)
        self.exons = t.exons
        parts, t0 = [], 0
        offsets = []
        for s, e in t.exons:
            offsets.append(t0)
            seq = fetch(s, e)
            parts.append(seq if self.plus else revcomp(seq))
            t0 += len(seq)
        self.seq = "".join(parts)
        order = sorted(range(len(t.exons)), key=lambda i: t.exons[i][0])
        self.starts = [t.exons[i][0] for i in order]
        self.ends = [t.exons[i][1] for i in order]
        self.rank = [i + 1 for i in order]  # transcript-order rank of each exon, in genomic order
        self.t0 = [offsets[i] for i in order]
        n = len(order)  # intron k lies between genomic-order exons k and k + 1
        self.introns = [(self.ends[k] + 1, self.starts[k + 1] - 1, k + 1 if self.plus else n - 1 - k)
                        for k in range(n - 1)]
        self.cds = None
        if t.cds is not None:
            lo, hi = t.cds
            a, b = self.g2t(hi if not self.plus else lo), self.g2t(lo if not self.plus else hi)
            if a is not None and b is not None:
                if _translate(self.seq[b - 2:b + 1]) != "*" and _translate(self.seq[b + 1:b + 4]) == "*":
                    b += 3  # a CDS given without its stop codon (GFF3 files that list no stop_codon lines)
                self.cds = (a, b)  # 0-based transcript indices of the first and last CDS base (stop included)
                self.protein = _translate(self.seq[a:b + 1])

    def g2t(self, g: int) -> int | None:
        k = bisect.bisect_right(self.starts, g) - 1
        if k < 0 or g > self.ends[k]:
            return None
        return self.t0[k] + (g - self.starts[k] if self.plus else self.ends[k] - g)

    def window(self, start: int, end: int, pad: int) -> range:
        """Genomic-order indices of the exons within ``pad`` nt of [start, end]."""
        return range(bisect.bisect_left(self.ends, start - pad), bisect.bisect_right(self.starts, end + pad))

    def intron_at(self, g: int):
        k = bisect.bisect_right(self.starts, g) - 1
        return self.introns[k] if 0 <= k < len(self.introns) and g > self.ends[k] else None

    def t_name(self, t: int) -> str:
        if self.cds is None:
            return str(t + 1)
        a, b = self.cds
        return f"-{a - t}" if t < a else (f"*{t - b}" if t > b else str(t - a + 1))

    def name(self, g: int) -> str:
        """HGVS position of a genomic base: exonic, or intronic from the nearer exon."""
        t = self.g2t(g)
        if t is not None:
            return self.t_name(t)
        intron = self.intron_at(g)
        if intron is None:
            return "?"
        lo, hi, _ = intron
        d5, d3 = (g - lo + 1, hi - g + 1) if self.plus else (hi - g + 1, g - lo + 1)
        if d5 <= d3:  # from the exon 5' of the intron (its last base), '+'
            return f"{self.t_name(self.g2t(lo - 1 if self.plus else hi + 1))}+{d5}"
        return f"{self.t_name(self.g2t(hi + 1 if self.plus else lo - 1))}-{d3}"

    def region(self, g: int) -> tuple[int, int] | None:
        """Genomic bounds of the exon or intron holding ``g`` (HGVS shifting stays inside it)."""
        k = bisect.bisect_right(self.starts, g) - 1
        if k >= 0 and g <= self.ends[k]:
            return self.starts[k], self.ends[k]
        intron = self.intron_at(g)
        return intron[:2] if intron else None


def _codon_table() -> dict:
    from Bio.Data.CodonTable import standard_dna_table

    return {**standard_dna_table.forward_table, **{c: "*" for c in standard_dna_table.stop_codons}}


_CODE: dict = {}


def _translate(seq: str) -> str:
    """Standard-code translation of whole codons (a trailing partial codon is dropped; N -> X)."""
    if not _CODE:
        _CODE.update(_codon_table())
    return "".join([_CODE.get(seq[i:i + 3], "X") for i in range(0, len(seq) - 2, 3)])


def _translate_to_stop(seq: str, chunk: int = 300) -> str:
    """Translation up to and including the first stop (or to the end: no stop)."""
    out = []
    for k in range(0, len(seq), chunk):
        part = _translate(seq[k:k + chunk])
        stop = part.find("*")
        if stop >= 0:
            out.append(part[:stop + 1])
            break
        out.append(part)
    return "".join(out)


class Annotator:
    """Consequence annotation against a :class:`TranscriptModel` and a ``Reference`` (see module docstring)."""

    def __init__(self, transcripts: TranscriptModel, reference, flank: int = FLANK):
        self.model, self.ref, self.flank = transcripts, reference, flank
        self._tx: dict[tuple[str, str], _Tx | None] = {}
        self._last: tuple = (None, [])

    def _prepared(self, t: Transcript, contig: str) -> _Tx | None:
        key = (t.id, contig)
        if key not in self._tx:
            fetch = lambda s, e: self.ref.fetch(contig, s - 1, e)  # noqa: E731 - 1-based inclusive -> 0-based
            self._tx[key] = _Tx(t, fetch)
        return self._tx[key]

    def annotate(self, chrom: str, pos: int, ref: str, alt: str) -> list[dict]:
        """One annotation per chosen transcript within ``flank`` nt, most severe first ([] when none)."""
        key = (chrom, pos, ref, alt)
        if self._last[0] != key:  # predict asks for the prompt's annotation and the output's in turn
            self._last = (key, self._annotate(chrom, pos, ref, alt))
        return self._last[1]

    def _annotate(self, chrom: str, pos: int, ref: str, alt: str) -> list[dict]:
        contig = self.ref.resolve(chrom)
        if contig is None:
            return []
        start, r, a = trim(pos, ref.upper(), alt.upper())
        if not r and not a:  # ALT equals REF: no change to describe
            return []
        end = start + len(r) - 1  # an insertion has end = start - 1 (it sits between end and start)
        out = []
        for t in self.model.near(chrom, min(start, end), max(start, end), self.flank):
            out.append(self._one(self._prepared(t, contig), start, end, r, a))
        return sorted(out, key=lambda d: RANK[d["so_terms"][0]])

    def best(self, chrom: str, pos: int, ref: str, alt: str) -> dict:
        found = self.annotate(chrom, pos, ref, alt)
        if found:
            return found[0]
        return {"consequence": "Intergenic", "so_terms": ["intergenic_variant"], "hgvsc": None, "hgvsp": None,
                "gene": None, "strand": None, "transcript": None, "source": "computed"}

    def _one(self, x: _Tx, start: int, end: int, r: str, a: str) -> dict:
        t, ins = x.t, len(r) == 0

        def hits(lo, hi):  # an insertion hits a range when both its flanking bases lie inside it
            return lo <= start - 1 and start <= hi if ins else start <= hi and end >= lo

        terms, exon_rank, intron_rank, distance = set(), None, None, None
        if not hits(t.start, t.end):
            up = (end < t.start) if x.plus else (start > t.end)
            terms.add("upstream_gene_variant" if up else "downstream_gene_variant")
            distance = (t.start - end) if end < t.start else (start - t.end)
        near = x.window(start, end, 8)  # exons (and the introns between them) that a splice rule can reach
        for k in near:
            if hits(x.starts[k], x.ends[k]):
                exon_rank = min(exon_rank or x.rank[k], x.rank[k])
        for k in range(max(near.start - 1, 0), min(near.stop, len(x.introns))):
            lo, hi, rank = x.introns[k]
            if not hits(lo - 3, hi + 3):
                continue
            donor, acceptor = ((lo, lo + 1), (hi - 1, hi)) if x.plus else ((hi - 1, hi), (lo, lo + 1))
            if hits(*donor):
                terms.add("splice_donor_variant")
            if hits(*acceptor):
                terms.add("splice_acceptor_variant")
            if hits(lo + 2, lo + 7) or hits(hi - 7, hi - 2) or hits(lo - 3, lo - 1) or hits(hi + 1, hi + 3):
                terms.add("splice_region_variant")
            if hits(lo, hi):
                intron_rank = min(intron_rank or rank, rank)
                if not terms & {"splice_donor_variant", "splice_acceptor_variant"}:
                    terms.add("intron_variant")
                distance = min(start - lo + 1, hi - end + 1)
        out = {"gene": t.gene, "transcript": t.id, "strand": t.strand, "biotype": t.biotype,
               "exon": f"{exon_rank}/{len(x.exons)}" if exon_rank else None,
               "intron": f"{intron_rank}/{len(x.exons) - 1}" if intron_rank else None,
               "intron_distance": distance if intron_rank else None, "hgvsc": None, "hgvsp": None,
               "protein_position": None, "amino_acids": None, "codons": None, "source": "computed"}
        if exon_rank:
            terms |= self._exonic(x, start, end, r, a, out)
        if not terms:  # an insertion exactly at an exon-intron junction
            terms.add("splice_region_variant")
        if hits(t.start, t.end):
            out["hgvsc"] = _hgvsc(x, start, end, r, a)
        so = sorted(terms, key=RANK.get)
        out.update(so_terms=so, consequence=CLASS[so[0]])
        return out

    def _exonic(self, x: _Tx, start, end, r, a, out) -> set:
        """Terms for the exonic part; protein facts into ``out`` when the change lies inside one exon's CDS."""
        if not r:  # insertion between genomic start - 1 and start: before transcript index lo
            tl, tr = x.g2t(start - 1), x.g2t(start)
            inside = tl is not None and tr is not None and abs(tl - tr) == 1
            lo = max(tl, tr) if inside else 0
            hi = lo - 1
        else:
            ta, tb = x.g2t(start), x.g2t(end)
            inside = ta is not None and tb is not None and abs(ta - tb) == end - start
            lo, hi = (min(ta, tb), max(ta, tb)) if inside else (0, 0)
        if x.cds is None:
            return {"non_coding_transcript_exon_variant"}
        c0, c1 = x.cds
        if not inside:  # spans an exon-intron boundary: no protein prediction
            return {"coding_sequence_variant"}
        if hi < c0 or (not r and lo == c0):
            return {"5_prime_UTR_variant"}
        if lo > c1:
            return {"3_prime_UTR_variant"}
        if lo < c0 or hi > c1:
            return {"coding_sequence_variant"}
        r_t, a_t = (r, a) if x.plus else (revcomp(r), revcomp(a))
        ref_p, seq = x.protein, x.seq
        delta = len(a_t) - len(r_t)
        first, last = (lo - c0) // 3, (max(lo, hi) - c0) // 3  # 0-based codons holding the change
        head = seq[c0 + 3 * first:lo] + a_t  # the edited transcript from codon `first` up to the change's end
        if delta % 3:  # frameshift: translate on to the first stop
            alt_p = ref_p[:first] + _translate_to_stop(head + seq[hi + 1:])
        else:
            mid = _translate(head + seq[hi + 1:c0 + 3 * last + 3])
            alt_p = ref_p[:first] + mid + ref_p[last + 1:]
            if "*" not in mid and last + 1 >= len(ref_p):  # the stop codon was lost: read into the 3' UTR
                alt_p += _translate_to_stop(seq[c0 + 3 * last + 3:])
            stop = alt_p.find("*")
            alt_p = alt_p[:stop + 1] if stop >= 0 else alt_p
        if delta == 0:
            ref_c, alt_c = seq[c0 + 3 * first:c0 + 3 * last + 3], head + seq[hi + 1:c0 + 3 * last + 3]
            out["codons"] = _codons(ref_c, alt_c, lo - c0 - 3 * first, hi - c0 - 3 * first)
            out["protein_position"] = first + 1 if first == last else f"{first + 1}-{last + 1}"
            ra, aa = ref_p[first:last + 1], _translate(alt_c)
            out["amino_acids"] = ra if ra == aa else f"{ra}/{aa}"
        if first == 0 and alt_p[:1] != "M":
            out["hgvsp"] = "p.M1?"
            return {"start_lost"}
        if delta % 3:
            out["hgvsp"] = _frameshift(ref_p, alt_p, first)
            return {"frameshift_variant"} | ({"stop_gained"} if "fs" not in out["hgvsp"] else set())
        scan = min(len(ref_p), len(alt_p), last + 1 if delta == 0 else len(ref_p))  # a substitution: its codons
        i = next((k for k in range(first, scan) if ref_p[k] != alt_p[k]), None)
        if i is None and len(ref_p) == len(alt_p):
            out["hgvsp"] = f"p.{ref_p[first]}{first + 1}="
            return {"stop_retained_variant" if ref_p[first] == "*" else
                    ("start_retained_variant" if first == 0 else "synonymous_variant")}
        if i is not None and ref_p[i] == "*":
            tail = alt_p[i + 1:]
            out["hgvsp"] = f"p.*{i + 1}{alt_p[i]}ext*{tail.index('*') + 1 if '*' in tail else '?'}"
            return {"stop_lost"}
        inframe = {"inframe_insertion"} if delta > 0 else ({"inframe_deletion"} if delta < 0 else set())
        if i is not None and alt_p[i] == "*":
            out["hgvsp"] = f"p.{ref_p[i]}{i + 1}*"
            return {"stop_gained"} | inframe
        out["hgvsp"] = _protein_change(ref_p, alt_p, i, len(ref_p) - last - 1)
        return inframe or {"missense_variant"}


def _codons(ref_c: str, alt_c: str, lo: int, hi: int) -> str:
    """VEP-style 'aTc/aGc': the changed bases (0-based ``lo``..``hi`` within the codons) upper case."""
    def show(c):
        return c[:lo].lower() + c[lo:hi + 1].upper() + c[hi + 1:].lower()
    return f"{show(ref_c)}/{show(alt_c)}"


def _frameshift(ref_p: str, alt_p: str, first: int) -> str:
    i = next((k for k in range(first, min(len(ref_p), len(alt_p))) if ref_p[k] != alt_p[k]), None)
    if i is None:
        return f"p.{ref_p[first]}{first + 1}fs"
    if alt_p[i] == "*":
        return f"p.{ref_p[i]}{i + 1}*"
    ter = alt_p.find("*", i)
    return f"p.{ref_p[i]}{i + 1}{alt_p[i]}fs*{ter - i + 1 if ter >= 0 else '?'}"


def _protein_change(ref_p: str, alt_p: str, i: int, tail: int) -> str:
    """In-frame change from the first differing residue ``i``; the common suffix (at least ``tail`` residues,
    the part after the edited codons) is trimmed after the prefix, so changes in repeats name the C-terminal copy."""
    j = tail
    while j < min(len(ref_p), len(alt_p)) - i and ref_p[-1 - j] == alt_p[-1 - j]:
        j += 1
    deleted, inserted = ref_p[i:len(ref_p) - j], alt_p[i:len(alt_p) - j]

    def span(s, e):  # 0-based inclusive residue range
        return f"{ref_p[s]}{s + 1}" if s == e else f"{ref_p[s]}{s + 1}_{ref_p[e]}{e + 1}"
    if deleted and not inserted:
        return f"p.{span(i, i + len(deleted) - 1)}del"
    if inserted and not deleted:
        n = len(inserted)
        if i >= n and ref_p[i - n:i] == inserted:
            return f"p.{span(i - n, i - 1)}dup"
        return f"p.{span(i - 1, i)}ins{inserted}"
    if len(deleted) == 1 and len(inserted) == 1:
        return f"p.{deleted}{i + 1}{inserted}"
    return f"p.{span(i, i + len(deleted) - 1)}delins{inserted}"


def _hgvsc(x: _Tx, start: int, end: int, r: str, a: str) -> str:
    """HGVS c./n. name of the trimmed change; indels shifted 3' on the transcript within their exon/intron."""
    kind = "c" if x.cds is not None else "n"
    if len(r) == 1 and len(a) == 1:
        rt, at = (r, a) if x.plus else (revcomp(r), revcomp(a))
        return f"{kind}.{x.name(start)}{rt}>{at}"
    if r and a:  # MNV or delins
        lo, hi = (start, end) if x.plus else (end, start)
        return f"{kind}.{x.name(lo)}_{x.name(hi)}delins{a if x.plus else revcomp(a)}"
    bounds = x.region(start if r else start - 1)
    if r:  # deletion of genomic [start, end]
        s, e = start, end
        if bounds and bounds[0] <= s and e <= bounds[1]:
            while x.plus and e + 1 <= bounds[1] and x.fetch(e + 1, e + 1) == x.fetch(s, s):
                s, e = s + 1, e + 1
            while not x.plus and s - 1 >= bounds[0] and x.fetch(s - 1, s - 1) == x.fetch(e, e):
                s, e = s - 1, e - 1
        lo, hi = (s, e) if x.plus else (e, s)
        return f"{kind}.{x.name(lo)}del" if s == e else f"{kind}.{x.name(lo)}_{x.name(hi)}del"
    p, ins = start, a  # insertion between genomic p - 1 and p
    if bounds and bounds[0] <= p - 1 and p <= bounds[1]:
        while x.plus and p <= bounds[1] and x.fetch(p, p) == ins[0]:
            ins, p = ins[1:] + ins[0], p + 1
        while not x.plus and p - 1 >= bounds[0] and x.fetch(p - 1, p - 1) == ins[-1]:
            ins, p = ins[-1] + ins[:-1], p - 1
    n = len(ins)
    if x.plus and x.fetch(p - n, p - 1) == ins:
        lo, hi = p - n, p - 1
        return f"{kind}.{x.name(lo)}dup" if n == 1 else f"{kind}.{x.name(lo)}_{x.name(hi)}dup"
    if not x.plus and x.fetch(p, p + n - 1) == ins:
        lo, hi = p + n - 1, p
        return f"{kind}.{x.name(lo)}dup" if n == 1 else f"{kind}.{x.name(lo)}_{x.name(hi)}dup"
    left, right = (p - 1, p) if x.plus else (p, p - 1)
    return f"{kind}.{x.name(left)}_{x.name(right)}ins{ins if x.plus else revcomp(ins)}"
