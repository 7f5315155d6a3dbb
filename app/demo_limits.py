"""How much work one demo request may cause, counted in the units that cost: decompressed bytes, records, ALT
alleles, FASTA line length, question length; and uploads deleted once a request is done.

A pasted or uploaded VCF is decompressed (gzip/BGZF) with a cap, so a small .vcf.gz cannot expand into a huge
parse; its records and ALT alleles are counted before htslib sees it. An uploaded FASTA is scanned (through gzip
when compressed) for its decompressed size and its longest line before pyfaidx indexes it: one 256 MiB line kept
the indexer busy for minutes. Uploads (possibly patient data) and the index files built beside them are deleted
when the request ends. Every limit is an error that says what was found, the limit, and to use the CLI instead.
A pasted sequence may be FASTA with wrapped lines (``pasted_box``): one record per box.
"""

from __future__ import annotations

import gzip
import io
import os
from pathlib import Path

from bioreason.kegg_data.text_files import GZIP_MAGIC, STREAM_ERRORS, stream_problem

MAX_VCF_BYTES = 1_000_000  # decompressed
MAX_VCF_RECORDS = 50
MAX_ALLELES = 50
MAX_FASTA_BYTES = 128 * 2**20  # decompressed (the bundled chr17 is 83 MB)
MAX_FASTA_LINE = 65_536
MAX_QUESTION_CHARS = 2_000
BATCH = 8  # variants per model call


class DemoInputError(Exception):
    pass


def _gunzip_capped(raw: bytes, cap: int, what: str) -> bytes:
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(raw)) as fh:
            data = fh.read(cap + 1)
    except STREAM_ERRORS as exc:
        raise DemoInputError(f"the {what} looks gzip-compressed but cannot be read: {stream_problem(exc)}; upload "
                             "the whole file again, or uncompressed") from None
    if len(data) > cap:
        raise DemoInputError(f"the {what} is more than {cap:,} bytes once decompressed; the demo takes at most "
                             f"{cap:,} (use `bioreason predict` for whole files)")
    return data


def vcf_bytes(text: str | None, path: str | None) -> bytes:
    """The VCF to read, as plain bytes with a header: decompressed and counted against the limits."""
    raw = Path(path).read_bytes() if path else (text or "").encode()
    if not raw.strip():
        raise DemoInputError("paste VCF text or upload a .vcf file first")
    data = _gunzip_capped(raw, MAX_VCF_BYTES, "VCF") if raw[:2] == GZIP_MAGIC else raw
    if len(data) > MAX_VCF_BYTES:
        raise DemoInputError(f"the VCF is {len(data):,} bytes; the demo takes at most {MAX_VCF_BYTES:,} "
                             "(use `bioreason predict` for whole files)")
    if b"#CHROM" not in data:  # pasted records without a header: add the minimal one
        lines = [line.split() for line in data.strip().splitlines() if line.strip()]
        lines = [f + [b"."] * (8 - len(f)) if 5 <= len(f) < 8 else f for f in lines]  # QUAL FILTER INFO
        data = (b"##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
                + b"\n".join(b"\t".join(f) for f in lines) + b"\n")
    records = [line for line in data.splitlines() if line.strip() and not line.startswith(b"#")]
    if len(records) > MAX_VCF_RECORDS:
        raise DemoInputError(f"the VCF has {len(records):,} records; the demo takes at most {MAX_VCF_RECORDS} "
                             "(use `bioreason predict`)")
    alleles = sum(len(cols[4].split(b",")) for cols in (r.split(b"\t") for r in records) if len(cols) > 4)
    if alleles > MAX_ALLELES:
        raise DemoInputError(f"the VCF has {alleles:,} ALT alleles; the demo takes at most {MAX_ALLELES} "
                             "(use `bioreason predict`)")
    return data


def check_fasta_upload(path: str) -> None:
    """Decompressed size and longest line of an uploaded FASTA, before anything indexes it."""
    total = 0
    try:
        with open(path, "rb") as fh:
            gz = fh.read(2) == GZIP_MAGIC
        with (gzip.open(path, "rb") if gz else open(path, "rb")) as fh:
            while line := fh.readline(MAX_FASTA_LINE + 2):
                total += len(line)
                if total > MAX_FASTA_BYTES:
                    raise DemoInputError(f"the FASTA is more than {MAX_FASTA_BYTES // 2**20} MiB once decompressed; "
                                         "the demo takes smaller references (use the CLI with your genome)")
                if len(line.rstrip(b"\r\n")) > MAX_FASTA_LINE:
                    raise DemoInputError(f"the FASTA has a line longer than {MAX_FASTA_LINE:,} characters; wrap it "
                                         "(e.g. `seqkit seq -w 60`) or use the CLI")
    except STREAM_ERRORS as exc:
        raise DemoInputError(f"the FASTA upload cannot be read: {stream_problem(exc)}; upload the whole file "
                             "again") from None
    except OSError as exc:
        raise DemoInputError(f"the FASTA upload cannot be read ({exc}); upload it again") from None


def discard_upload(path: str | None) -> None:
    """Delete an uploaded file, the index files built beside it, and its folder if that is now empty."""
    if not path:
        return
    p = Path(path)
    for f in (p, Path(f"{p}.fai"), Path(f"{p}.gzi")):
        f.unlink(missing_ok=True)
    try:
        os.rmdir(p.parent)
    except OSError:
        pass


def pasted_box(text: str | None, which: str) -> str:
    """A sequence box's bases (FASTA header and line breaks removed, ``dna_encoders.pasted_sequence``); one
    record per box. A letter that is not a base is an error naming the box and its position in what was pasted
    (the model's processor would number the sequences it was given, so an empty first box shifts the count)."""
    from bioreason.dna_encoders import pasted_sequence
    from bioreason.dna_encoders.base import IUPAC_AMBIGUOUS, NUCLEOTIDES, clean_sequence

    seq, records = pasted_sequence(text or "")
    if records > 1:
        raise DemoInputError(f"the {which} sequence box holds {records} FASTA records; paste one sequence per box")
    if set(seq.upper()) - NUCLEOTIDES - IUPAC_AMBIGUOUS:
        clean_sequence(seq, name=f"the {which} sequence box")  # raises, naming the first such letter
    return seq
