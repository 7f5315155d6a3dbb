"""The reference genome: pyfaidx behind contig synonyms, a chunk cache and clear errors.

Opens plain FASTA or BGZF FASTA (with ``.fai``/``.gzi``); a plain-gzip file
gets an error that says to use ``bgzip``; a missing ``.fai`` is built by
pyfaidx, or, in a folder we cannot write, an error says how to build it; an
index older than its FASTA is rebuilt where we can write, and a plain FASTA's
index is checked against the file per contig (a stale one is refused with the
fix instead of reading wrong bases); a BGZF file cut off by an interrupted
download is refused by name, at open or at the first read that meets the cut.
Contig names are resolved like Ensembl VEP: the exact name, then with ``chr``
added or stripped, then ``M`` <-> ``MT``; each mapping is logged once.
Coordinates: :meth:`Reference.fetch` takes 0-based half-open ``[start, end)``
and pads with N past either contig edge. Reads go through a cache of 1 Mb
chunks, so the many nearby windows of a sorted VCF cost one disk read.
"""

from __future__ import annotations

import logging
import os
import re
import struct
import warnings
import zlib
from collections import OrderedDict
from pathlib import Path

from bioreason.errors import InputFormatError, ReferenceFastaError

log = logging.getLogger(__name__)
CHUNK = 1 << 20
_CUT = (struct.error, EOFError, zlib.error)  # what Bio.bgzf raises on a BGZF file that ends mid-block


def _compression(path: Path) -> str:
    """'plain', 'bgzf' or 'gzip' from the first bytes of the file."""
    with open(path, "rb") as fh:
        head = fh.read(18)
    if head[:2] != b"\x1f\x8b":
        return "plain"
    # BGZF: gzip with FEXTRA and a 'BC' subfield (SAM spec 4.1)
    return "bgzf" if len(head) >= 14 and head[3] & 4 and head[12:14] == b"BC" else "gzip"


# the empty block that ends every BGZF file written by bgzip/htslib (SAM spec 4.1.2)
BGZF_EOF = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")


def check_bgzf_whole(path: Path) -> None:
    """Refuse a BGZF FASTA whose ``.gzi`` lists blocks past the end of the file (cut off by an interrupted download
    or copy, or indexed as another file: pyfaidx would fail mid-read with a ``struct.error``); warn, as htslib does,
    when the file lacks BGZF's end-of-file block but its index is consistent."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        fh.seek(max(0, size - len(BGZF_EOF)))
        whole = fh.read() == BGZF_EOF
    gzi = Path(f"{path}.gzi")
    last = 0
    if gzi.is_file():
        raw = gzi.read_bytes()
        n = struct.unpack_from("<Q", raw)[0] if len(raw) >= 8 else 0
        if len(raw) >= 8 + 16 * n and n:
            last = struct.unpack_from("<Q", raw, 8 + 16 * (n - 1))[0]
    if last >= size:
        raise ReferenceFastaError(
            f"{path} ends at byte {size:,}, before the block at byte {last:,} that its index {gzi.name} lists: the "
            f"file is cut off (an interrupted download or copy) or the index was made for another file; get the "
            f"whole file again (`bgzip -t {path}` checks it), or delete {gzi.name} and {path.name}.fai to have them "
            "rebuilt")
    if not whole:
        log.warning("%s has no BGZF end-of-file block: it may be cut off (`bgzip -t %s` checks it)", path, path)


def _without_chr(name: str) -> str:
    """A contig name without its ``chr`` prefix (any case): ``chr17`` -> ``17``, ``MT`` as it is."""
    return name[3:] if name.lower().startswith("chr") else name


def contig_synonyms(name: str) -> list[str]:
    """Candidate FASTA names for a VCF contig, in VEP's order: as is, chr added/stripped, M <-> MT."""
    base = _without_chr(name)
    cands = [name, base, "chr" + base]
    if base.upper() in ("M", "MT"):
        cands += ["MT", "M", "chrM", "chrMT"]
    seen: list[str] = []
    for c in cands:
        if c not in seen:
            seen.append(c)
    return seen


REWRAP = "python -c \"from Bio import SeqIO; SeqIO.write(SeqIO.parse({src}, 'fasta'), '{dst}', 'fasta')\""


def _indexing_message(path: Path, why: str) -> str:
    """pyfaidx's indexing error as ``file:line: what; fix``. Its commonest, lines of one record that differ in
    length (hand-edited or concatenated FASTA, a blank line inside a record), gets a rewrap command (biopython, a
    dependency already, writes 60 bases per line)."""
    import shlex

    m = re.search(r"Inconsistent line found in >(\S*) at line (\d+)", why)
    if m:
        packed = path.suffix.lower() in (".gz", ".bgz")  # read through gzip; the rewrapped copy is plain
        fixed = path.with_name(path.name[:-len(path.suffix)] if packed else path.stem)
        fixed = fixed.with_name(fixed.stem + ".rewrapped" + (fixed.suffix or ".fa"))
        src = f"__import__('gzip').open('{path}', 'rt')" if packed else f"'{path}'"
        cmd = REWRAP.format(src=src, dst=fixed)
        return (f"{path}:{m.group(2)}: a sequence line of >{m.group(1)} differs in length from the lines before it "
                f"(or is blank); an indexed FASTA needs every line of a record but its last to be the same length. "
                f"Rewrap it, e.g. `{cmd}` (or `seqkit seq -w 60`), and pass --fasta {shlex.quote(str(fixed))}")
    m = re.search(r"at line (\d+)", why)
    line = int(m.group(1)) + why.startswith("Bad sequence name") if m else None  # that one counts from 0
    where = f"{path}:{line}" if m else str(path)
    if why.startswith("Bad sequence name"):
        return f"{where}: a '>' header line without a sequence name; name each record (e.g. '>chr17')"
    return f"{where}: not a valid FASTA file: {why}"


def prompt_chrom(name: str) -> str:
    """A chromosome's name as prompts state it: UCSC style (``chr17``, ``chrX``, ``chrM``) for the numbered and sex
    chromosomes and the mitochondrion, however the VCF names them (``17``, ``chr17``, ``MT``), so one variant gets
    one prompt (the shipped models were trained on ``chr``-named VCFs); other names (``NC_000017.11``, scaffolds)
    as written."""
    base = _without_chr(name)
    if base.upper() in ("M", "MT"):
        return "chrM"
    if base.isdigit() or base.upper() in ("X", "Y"):
        return "chr" + (base if base.isdigit() else base.upper())
    return name


class Reference:
    """An indexed FASTA with synonyms and a chunk cache. ``Reference(path)``; ``fetch(contig, start0, end0)``."""

    def __init__(self, path, cache_chunks: int = 16):
        self.path = Path(path)
        if self.path.is_dir():
            raise ReferenceFastaError(f"reference FASTA {self.path} is a directory; pass --fasta with the FASTA file")
        if not self.path.is_file():
            raise ReferenceFastaError(f"reference FASTA {self.path} does not exist; pass --fasta with a FASTA file")
        kind = _compression(self.path)
        if kind == "gzip":
            raise ReferenceFastaError(
                f"{self.path} is gzip-compressed, but indexed access needs BGZF; recompress it with "
                f"`gunzip -c {self.path} | bgzip > {self.path.with_suffix('')}.bgz.gz` (bgzip comes with htslib/tabix)")
        fai = Path(str(self.path) + ".fai")
        if not fai.is_file() and not os.access(self.path.parent, os.W_OK):
            raise ReferenceFastaError(
                f"{self.path} has no index ({fai.name}) and its folder is read-only; build one elsewhere with "
                f"`samtools faidx {self.path}` as a user who can write there, or copy the FASTA to a writable folder")
        if kind == "bgzf" and not Path(str(self.path) + ".gzi").is_file() and not os.access(self.path.parent, os.W_OK):
            raise ReferenceFastaError(f"{self.path} is BGZF without a .gzi index in a read-only folder; run "
                                  f"`samtools faidx {self.path}` where it can write, or copy it")
        if kind == "bgzf":
            check_bgzf_whole(self.path)
        try:
            import pyfaidx
        except ImportError as exc:
            from bioreason.errors import MissingDependencyError

            raise MissingDependencyError("reading FASTA needs pyfaidx: `pip install bioreason[genomics]`") from exc
        # an index older than the FASTA may describe another version of it (pyfaidx only warns, then reads at the
        # old offsets: wrong bases, or no end at a contig's tail); rebuilt where we can write, checked per contig
        stale = fai.is_file() and fai.stat().st_mtime < self.path.stat().st_mtime
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Index file .* is older than FASTA file")
                self._fa = pyfaidx.Fasta(str(self.path), sequence_always_upper=True, as_raw=True, build_index=True,
                                         rebuild=stale and os.access(self.path.parent, os.W_OK))
        except pyfaidx.UnsupportedCompressionFormat as exc:
            raise ReferenceFastaError(f"{self.path}: {exc}") from exc
        except (pyfaidx.FastaIndexingError, ValueError) as exc:
            raise InputFormatError(_indexing_message(self.path, str(exc))) from exc
        except _CUT as exc:  # Bio.bgzf reading a BGZF file that ends mid-block
            raise self._cut_off(exc) from None
        except ImportError as exc:  # BGZF reading needs biopython
            raise ReferenceFastaError(f"{self.path} is BGZF; reading it needs biopython: "
                                  "`pip install bioreason[genomics]`") from exc
        self.lengths = {name: len(rec) for name, rec in self._fa.records.items()} if hasattr(
            self._fa, "records") else {k: len(self._fa[k]) for k in self._fa.keys()}
        self._resolved: dict[str, str | None] = {}
        self._absent: dict[str, str] = {}
        self._slices: list[str] | None = None  # names of samtools-style region slices ('chr17:100-200')
        self._cache: OrderedDict = OrderedDict()
        self._cache_chunks = cache_chunks
        self._plain, self._checked = kind == "plain", set()
        if self._plain:
            self._check_whole()

    def _check_whole(self) -> None:
        """Refuse a plain FASTA that ends before the last record its index lists ends: a cut-off download beside the
        whole file's ``.fai`` (pyfaidx then returns short or empty sequence at that contig's tail)."""
        size, index = self.path.stat().st_size, self._fa.faidx.index
        contig, rec = max(index.items(), key=lambda kv: kv[1].bend, default=(None, None))
        if rec is not None and size < rec.bend - (rec.lenb - rec.lenc):  # its last line's newline may be missing
            raise ReferenceFastaError(
                f"{self.path} ends at byte {size:,}, before the end of contig {contig} at byte {rec.bend:,} that its "
                f"index {self.path}.fai lists: the file is cut off (an interrupted download or copy); get the whole "
                f"file again (or, if this shorter file is the one you mean, rebuild the index with `samtools faidx "
                f"{self.path}`)")

    def _cut_off(self, exc: BaseException) -> ReferenceFastaError:
        return ReferenceFastaError(
            f"{self.path} cannot be read to the end ({type(exc).__name__}: {exc}): the file is cut off (an "
            f"interrupted download or copy) or corrupt; get the whole file again (`bgzip -t {self.path}` checks it)")

    def _check_index(self, contig: str) -> None:
        """Refuse a ``.fai`` that does not describe this plain FASTA at ``contig``: its header line must end just
        before the sequence offset, its first line must be as long as the index says, and the record must end where
        the index puts its end (a new record or the end of the file must follow). Three small reads per contig."""
        if not self._plain or contig in self._checked:
            return
        rec = self._fa.faidx.index[contig]
        eol = rec.lenb - rec.lenc  # 1 for \n, 2 for \r\n
        with open(self.path, "rb") as fh:
            fh.seek(max(0, rec.offset - 1024))
            before = fh.read(min(rec.offset, 1024))
            fh.seek(rec.offset)
            first = fh.read(rec.lenb)
            fh.seek(max(0, rec.bend - 1))
            tail = fh.read(2)
        newline = {0: b"", 1: b"\n", 2: b"\r\n"}.get(eol)  # 0: one line with no newline at the end of the file
        header = before[:-1].rstrip(b"\r").rsplit(b"\n", 1)
        long_header = len(header) == 1 and len(before) == 1024  # a header over 1 KB: its name is not checked
        named = long_header or header[-1][:1] == b">" and header[-1][1:].split()[:1] == [contig.encode()]
        full_line = rec.rlen < rec.lenc or (first[rec.lenc:] == newline and not any(
            c in first[:rec.lenc] for c in (b"\n", b"\r")))
        if eol == 0:  # one line, with no newline, at the end of the file
            ends = self.path.stat().st_size == rec.bend
        elif not tail:  # the last line has no newline
            ends = self.path.stat().st_size == rec.bend - eol
        else:  # the record's last newline, then the next header, a blank line or the end of the file
            ends = tail[:1] == b"\n" and tail[1:] in (b"", b">", b"\n", b"\r")
        ok = before.endswith(b"\n") and named and full_line and ends
        if not ok:
            fai = f"{self.path}.fai"
            raise ReferenceFastaError(
                f"{fai} does not match {self.path} at contig {contig} (the index was made for another version of "
                f"the file); rebuild it with `samtools faidx {self.path}`, or delete {fai} to have it rebuilt")
        self._checked.add(contig)

    def resolve(self, chrom: str) -> str | None:
        """The FASTA contig for a VCF contig name, or None if no synonym exists. Warns once per renaming."""
        if chrom in self._resolved:
            return self._resolved[chrom]
        found = next((c for c in contig_synonyms(chrom) if c in self.lengths), None)
        if found is not None and found != chrom:
            log.warning("contig %r is named %r in %s; using it (VEP-style synonym)", chrom, found, self.path.name)
        self._resolved[chrom] = found
        return found

    def tried(self, chrom: str) -> str:
        return ", ".join(contig_synonyms(chrom))

    def absent(self, chrom: str) -> str:
        """Why ``chrom`` has no sequence here, for a skip reason: the names tried and what the FASTA holds. A
        region slice (``samtools faidx ref.fa chr17:100-200`` names its sequence 'chr17:100-200' and numbers it
        from 1) is named as such: the VCF's positions are on the whole chromosome, so it needs that FASTA."""
        if chrom in self._absent:  # once per contig: a FASTA can have 100,000 scaffolds, a VCF 10^6 records
            return self._absent[chrom]
        names = list(self.lengths)
        if self._slices is None:
            self._slices = [n for n in names if re.fullmatch(r".+:[\d,]+-[\d,]+", n)]
        cands = set(contig_synonyms(chrom))
        slices = [n for n in self._slices if n.rsplit(":", 1)[0] in cands]
        if slices:
            has = (f"it holds only the region {', '.join(slices[:3])}{' ...' if len(slices) > 3 else ''}, a slice "
                   "numbered from 1 (as `samtools faidx` writes it); pass the whole chromosome's FASTA, whose "
                   "coordinates the VCF uses")
        else:
            has = f"it has {', '.join(names[:5])}{f' and {len(names) - 5} more' if len(names) > 5 else ''}"
        self._absent[chrom] = f"contig {chrom} not in the FASTA (tried {self.tried(chrom)}; {has})"
        return self._absent[chrom]

    def _chunk(self, contig: str, idx: int) -> str:
        key = (contig, idx)
        seq = self._cache.get(key)
        if seq is None:
            self._check_index(contig)
            start = idx * CHUNK
            end = min(start + CHUNK, self.lengths[contig])
            try:
                seq = self._fa.faidx.fetch(contig, start + 1, end) if end > start else ""  # 1-based inclusive
            except _CUT as exc:
                raise self._cut_off(exc) from None
            seq = str(seq)
            self._cache[key] = seq
            if len(self._cache) > self._cache_chunks:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return seq

    def fetch(self, contig: str, start: int, end: int) -> str:
        """Upper-case sequence of ``contig`` at 0-based ``[start, end)``, N-padded beyond the contig edges."""
        length = self.lengths[contig]
        left = max(0, -start)
        right = max(0, end - length)
        s, e = max(start, 0), min(end, length)
        parts = []
        while s < e:
            idx = s // CHUNK
            chunk = self._chunk(contig, idx)
            off = s - idx * CHUNK
            take = min(e - s, len(chunk) - off)
            if take <= 0:  # the index promises bases the file does not hold
                raise ReferenceFastaError(f"{self.path}: contig {contig} ends before position {s + 1} that its "
                                          f"index gives it (length {length}); rebuild the index: `samtools faidx "
                                          f"{self.path}`")
            parts.append(chunk[off:off + take])
            s += take
        return "N" * left + "".join(parts) + "N" * right

    def close(self) -> None:
        self._fa.close()
