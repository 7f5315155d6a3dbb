"""Transcript models from GTF/GFF3 files: one chosen transcript per gene, looked up by genomic position.

``read_transcripts(path)`` reads GENCODE/Ensembl GTF, or Ensembl/RefSeq/GENCODE GFF3 (plain or gzip/BGZF),
line by line; each relevant line's attributes are parsed by gffutils (``feature_from_line``, which knows both
dialects, repeated GTF ``tag`` keys and GFF3 percent-encoding). Kept: ``exon``, ``CDS``, ``stop_codon`` and the
transcript/gene features that carry names and tags. A malformed line (not 9 tab-separated columns, a start or
end that is not a positive integer, start after end, a strand that is not + or -, no transcript id) is an
``InputFormatError`` naming ``file:line`` and the fix.

Selection per gene (as VEP's ``--pick`` order starts): MANE Select, then Ensembl canonical / RefSeq Select /
``canonical``, then protein-coding, then the longest CDS, then the longest transcript, then the smallest id.
The CDS includes the stop codon (GTF lists it apart from CDS; GFF3 files usually inside it).

Coordinates: every position here is 1-based inclusive, as in GTF/GFF3 and VCF. ``Transcript.exons`` are in
transcript order (5' to 3'), so on the minus strand they run from high to low genomic positions.
``bundled_transcripts()`` is BRCA1 NM_007294 on GRCh38 (``data/brca1_NM_007294_grch38.gtf``, see PROVENANCE.md),
the default transcript model for the bundled reference.
"""

from __future__ import annotations

import bisect
import logging
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from bioreason.errors import InputFormatError, MissingDependencyError
from bioreason.kegg_data.reference import contig_synonyms
from bioreason.kegg_data.text_files import open_text

log = logging.getLogger(__name__)
BUNDLED_GTF = "brca1_NM_007294_grch38.gtf"
TRANSCRIPT_TYPES = {"transcript", "mRNA", "ncRNA", "lnc_RNA", "lncRNA", "snRNA", "snoRNA", "miRNA", "rRNA",
                    "tRNA", "misc_RNA", "primary_transcript", "pseudogenic_transcript", "unconfirmed_transcript",
                    "NMD_transcript_variant", "processed_transcript", "scaRNA", "V_gene_segment", "C_gene_segment"}
GENE_TYPES = {"gene", "ncRNA_gene", "pseudogene"}
PARTS = {"exon", "CDS", "stop_codon"}
_BEST = ("MANE_Select",)
_GOOD = ("Ensembl_canonical", "canonical", "RefSeq_Select", "MANE_Plus_Clinical")


@dataclass(frozen=True)
class Transcript:
    """One transcript. ``exons``: (start, end) pairs in transcript order; ``cds``: (low, high) genomic bounds of
    the coding sequence with its stop codon, or None for a non-coding transcript."""

    id: str
    gene: str
    chrom: str
    strand: int  # +1 or -1
    exons: tuple[tuple[int, int], ...]
    cds: tuple[int, int] | None
    tags: frozenset = frozenset()
    biotype: str | None = None

    @cached_property
    def start(self) -> int:
        return min(s for s, _ in self.exons)

    @cached_property
    def end(self) -> int:
        return max(e for _, e in self.exons)

    @property
    def cds_length(self) -> int:
        if self.cds is None:
            return 0
        lo, hi = self.cds
        return sum(max(0, min(e, hi) - max(s, lo) + 1) for s, e in self.exons)

    def pick_key(self) -> tuple:
        return (any(t in self.tags for t in _BEST), any(t in self.tags for t in _GOOD), self.cds is not None,
                self.cds_length, sum(e - s + 1 for s, e in self.exons), [-ord(c) for c in self.id])


class TranscriptModel:
    """The chosen transcript of each gene, indexed by contig for overlap queries."""

    def __init__(self, transcripts, source: str = "", dropped: int = 0):
        best: dict[tuple[str, str], Transcript] = {}
        for t in transcripts:
            key = (t.chrom, t.gene)
            if key not in best or t.pick_key() > best[key].pick_key():
                best[key] = t
        self.source, self.dropped = source, dropped
        self.transcripts = sorted(best.values(), key=lambda t: (t.chrom, t.start, t.id))
        self._by_chrom: dict[str, tuple[list[int], list[int], list[Transcript]]] = {}
        for t in self.transcripts:
            starts, max_ends, items = self._by_chrom.setdefault(t.chrom, ([], [], []))
            starts.append(t.start)
            max_ends.append(max(t.end, max_ends[-1] if max_ends else 0))  # running max for the backwards scan
            items.append(t)
        self._resolved: dict[str, str | None] = {}

    def __len__(self) -> int:
        return len(self.transcripts)

    def resolve(self, chrom: str) -> str | None:
        """This model's contig name for a VCF/FASTA contig (chr added/stripped, M<->MT), or None."""
        if chrom not in self._resolved:
            self._resolved[chrom] = next((c for c in contig_synonyms(chrom) if c in self._by_chrom), None)
        return self._resolved[chrom]

    def near(self, chrom: str, start: int, end: int, flank: int = 0) -> list[Transcript]:
        """Chosen transcripts within ``flank`` nt of [start, end] (1-based inclusive)."""
        name = self.resolve(chrom)
        if name is None:
            return []
        starts, max_ends, items = self._by_chrom[name]
        i = bisect.bisect_right(starts, end + flank) - 1
        out = []
        while i >= 0 and max_ends[i] >= start - flank:
            if items[i].end >= start - flank:
                out.append(items[i])
            i -= 1
        return out[::-1]


def _dialect_of(path: Path, attrs: str) -> str:
    name = path.name.lower().removesuffix(".gz")
    if name.endswith(".gtf"):
        return "gtf"
    if name.endswith((".gff3", ".gff")):
        return "gff3"
    return "gff3" if re.match(r"^\s*[\w.:-]+=", attrs) else "gtf"


def _first(attrs, *keys) -> str | None:
    for k in keys:
        v = attrs.get(k)
        if v:
            return v[0]
    return None


def read_transcripts(path) -> TranscriptModel:
    """Read a GTF or GFF3 file (see the module docstring) into a :class:`TranscriptModel`."""
    path = Path(path)
    if path.is_dir():
        raise InputFormatError(f"transcript file {path} is a directory; pass --gtf with a GTF or GFF3 file")
    if not path.is_file():
        raise InputFormatError(f"transcript file {path} does not exist; pass --gtf with a GTF or GFF3 file "
                               "(e.g. GENCODE's gencode.vNN.annotation.gtf.gz), or --gtf none")
    try:
        import gffutils  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError("reading GTF/GFF3 needs gffutils: `pip install bioreason[genomics]`") from exc
    parts: dict[tuple, list] = {}  # transcript key (id, contig, strand) -> [(type, start, end)]
    info: dict[tuple, dict] = {}  # transcript key -> name, chrom, strand, gene, parent, tags, biotype
    genes: dict[str, str] = {}  # GFF3 gene ID -> gene name
    _read_lines(path, parts, info, genes)  # a cut-off or corrupt gzip file: open_text's InputFormatError
    transcripts, dropped = _assemble(parts, info, genes)
    if not transcripts:
        raise InputFormatError(f"{path}: no transcripts found (no exon or CDS lines with a transcript_id or Parent); "
                               "pass a GTF/GFF3 with exon lines, e.g. GENCODE's annotation file, or --gtf none")
    if dropped:
        log.warning("%s: %d transcript(s) with overlapping exons were left out (first: %s)", path.name, len(dropped),
                    dropped[0])
    return TranscriptModel(transcripts, str(path), len(dropped))


def _read_lines(path: Path, parts: dict, info: dict, genes: dict) -> None:
    """Fill ``parts`` (transcript key -> exon/CDS rows), ``info`` (key -> name, contig, strand, gene, tags...) and
    ``genes`` (GFF3 gene ID -> name) from the file's relevant lines."""
    from gffutils import constants
    from gffutils.feature import feature_from_line

    dialect, gff3 = None, False
    with open_text(path) as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip() or line.startswith("#"):
                continue
            cols = line.rstrip("\r\n").split("\t")
            where = f"{path}:{n}"
            if len(cols) != 9:
                raise InputFormatError(f"{where}: expected 9 tab-separated columns (GTF/GFF3), found {len(cols)}: "
                                       f"{line.strip()[:100]!r}; fix or remove the line")
            kind = cols[2]
            if kind not in PARTS and kind not in TRANSCRIPT_TYPES and kind not in GENE_TYPES:
                continue
            if not (cols[3].isdigit() and cols[4].isdigit()) or int(cols[3]) < 1 or int(cols[3]) > int(cols[4]):
                raise InputFormatError(f"{where}: start {cols[3]!r} and end {cols[4]!r} must be positive integers "
                                       "with start <= end (1-based, inclusive); fix the line")
            if dialect is None:
                gff3 = _dialect_of(path, cols[8]) == "gff3"
                dialect = dict(constants.dialect)
                if not gff3:
                    dialect.update({"fmt": "gtf", "field separator": "; ", "keyval separator": " ",
                                    "quoted GFF2 values": True, "trailing semicolon": True})
            attrs = feature_from_line(line, strict=False, dialect=dialect).attributes
            start, end = int(cols[3]), int(cols[4])
            if kind in GENE_TYPES:
                gid = _first(attrs, "ID", "gene_id")
                if gid:
                    genes[gid] = _first(attrs, "Name", "gene_name", "gene", "gene_id", "ID")
                continue
            if cols[6] not in ("+", "-"):
                raise InputFormatError(f"{where}: strand {cols[6]!r} must be '+' or '-' for a {kind} line; fix it")
            is_tx = kind in TRANSCRIPT_TYPES
            if gff3:  # children name their transcript by its ID in Parent
                keys = [_first(attrs, "ID")] if is_tx else (attrs.get("Parent") or [])
            else:
                keys = [_first(attrs, "transcript_id")]
            if not keys or not keys[0]:
                raise InputFormatError(f"{where}: a {kind} line needs a transcript_id (GTF) or ID/Parent (GFF3) "
                                       "attribute; fix the line")
            for tid in keys:
                key = (tid, cols[0], cols[6])  # one id on two contigs or strands (e.g. PAR genes) is two transcripts
                meta = info.setdefault(key, {"name": tid, "chrom": cols[0], "strand": 1 if cols[6] == "+" else -1,
                                             "tags": set(), "gene": None, "parent": None, "biotype": None})
                if is_tx or not gff3:
                    meta["name"] = _first(attrs, "transcript_id") or meta["name"]
                    meta["gene"] = meta["gene"] or _first(attrs, "gene_name", "gene", "gene_id")
                    meta["parent"] = meta["parent"] or _first(attrs, "Parent")
                    meta["biotype"] = meta["biotype"] or _first(attrs, "transcript_type", "transcript_biotype",
                                                                "biotype")
                meta["tags"].update(x.replace(" ", "_") for x in attrs.get("tag", []))
                if _first(attrs, "is_canonical") == "1":
                    meta["tags"].add("canonical")
                if kind in PARTS:
                    parts.setdefault(key, []).append((kind, start, end))


def _assemble(parts, info, genes) -> tuple[list[Transcript], list[str]]:
    out, dropped = [], []
    for key, rows in parts.items():
        meta = info[key]
        exons = sorted({(s, e) for k, s, e in rows if k == "exon"})
        coding = [(s, e) for k, s, e in rows if k in ("CDS", "stop_codon")]
        if not exons:  # some GFF3 files list only CDS for single-exon genes
            exons = sorted(set(coding))
        if any(exons[i][1] >= exons[i + 1][0] for i in range(len(exons) - 1)):
            dropped.append(meta["name"])
            continue
        gene = meta["gene"] or genes.get(meta["parent"] or "") or meta["parent"] or meta["name"]
        cds = (min(s for s, _ in coding), max(e for _, e in coding)) if coding else None
        strand = meta["strand"]
        out.append(Transcript(meta["name"], gene, meta["chrom"], strand, tuple(exons if strand > 0 else exons[::-1]),
                              cds, frozenset(meta["tags"]), meta["biotype"]))
    return out, dropped


def bundled_gtf() -> Path:
    return Path(__file__).resolve().parent / "data" / BUNDLED_GTF


def bundled_transcripts() -> TranscriptModel:
    return read_transcripts(bundled_gtf())


def resolve_gtf(value, fasta) -> TranscriptModel | None:
    """``--gtf`` values: a file, ``bundled``, ``none``, or ``auto`` (the default: the bundled BRCA1 transcript
    when the reference is the bundled one, else none)."""
    from bioreason.kegg_data.bundled import bundled_fasta, resolve_fasta

    if value in (None, "none", ""):
        return None
    if value == "auto":
        bundled = fasta is not None and Path(str(resolve_fasta(fasta))).resolve() == bundled_fasta()
        return bundled_transcripts() if bundled else None
    if value == "bundled":
        return bundled_transcripts()
    return read_transcripts(value)
