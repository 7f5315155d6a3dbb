"""User text files that may come gzip- or BGZF-compressed (a VCF's progress count, a GTF, a FASTA given to ``ask``),
and the one wording for a compressed stream that cannot be read to its end. ``open_text(path)`` opens plain or
compressed text alike (undecodable bytes replaced; ``binary=True`` for bytes) and turns a cut-off or corrupt stream
met while reading into an ``InputFormatError`` that names the file, what is wrong and how to check it, instead of
gzip's bare ``EOFError``. ``compressed_stream_ends_early(path)`` says the same for a file some other reader
(htslib) failed on, so a cut-off download is not reported as a malformed record.
"""

from __future__ import annotations

import contextlib
import gzip
import zlib
from pathlib import Path

from bioreason.errors import InputFormatError

GZIP_MAGIC = b"\x1f\x8b"
STREAM_ERRORS = (EOFError, zlib.error, gzip.BadGzipFile)


def is_compressed(path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == GZIP_MAGIC


def stream_problem(exc: BaseException) -> str:
    """What gzip's ``exc`` (one of ``STREAM_ERRORS``, met while decompressing) means, in the user's words."""
    if isinstance(exc, EOFError):
        return "the compressed stream ends early: the file is cut off (an interrupted download or copy)"
    return f"the compressed stream is corrupt ({exc})"


def compressed_stream_ends_early(path) -> str | None:
    """For a gzip/BGZF file: why its compressed stream cannot be read to the end (cut off, or corrupt), else None
    (also for a file that is not compressed). Reads the whole file, so call it only once a read has failed."""
    if not is_compressed(path):
        return None
    try:
        with gzip.open(path, "rb") as fh:
            while fh.read(1 << 20):
                pass
    except STREAM_ERRORS as exc:
        return stream_problem(exc)
    return None


def unreadable(path, exc: BaseException, where: str | None = None, why: str | None = None) -> InputFormatError:
    """The error for a compressed ``path`` that failed with ``exc`` (``where``: 'file:line', when known; ``why``:
    :func:`compressed_stream_ends_early`'s answer when the caller has it already, so the file is not read again)."""
    why = why or compressed_stream_ends_early(path) or f"it cannot be read to the end ({exc})"
    return InputFormatError(f"{where or path}: {why}; get the whole file again (`gzip -t {path}` checks it)")


def data_suffix(path) -> str:
    """The lower-case suffix that names the format, under a ``.gz`` (``x.jsonl.gz`` -> ``.jsonl``)."""
    suffixes = [s.lower() for s in Path(path).suffixes]
    if suffixes[-1:] == [".gz"]:
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


@contextlib.contextmanager
def open_text(path, binary: bool = False, **text: str):
    """``path`` open for reading, plain or gzip/BGZF (see the module docstring); ``text``: ``open``'s text options
    (``encoding``, ``newline``, ``errors``; undecodable bytes are replaced unless ``encoding`` is given)."""
    path = Path(path)
    if not binary and "encoding" not in text:
        text.setdefault("errors", "replace")
    if not is_compressed(path):
        with open(path, "rb") if binary else open(path, **text) as fh:
            yield fh
        return
    try:
        with gzip.open(path, "rb") if binary else gzip.open(path, "rt", **text) as fh:
            yield fh
    except STREAM_ERRORS as exc:
        raise unreadable(path, exc) from None
