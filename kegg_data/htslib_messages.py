"""htslib's messages (what the C library under cyvcf2 prints on file descriptor 2): capture them, and choose which
ones reach the user. Opening a VCF captures them, so a header htslib refuses is reported in our error with htslib's
own words (``captured_stderr``); reading records shows htslib's errors, which our per-line error points to, and not
its warnings, whose cases this package handles itself and whose advice ('index the file with tabix') does not apply
(``quiet_records``, ``htslib_log_level``).
"""

from __future__ import annotations

import contextlib
import functools
import os
import tempfile


@contextlib.contextmanager
def captured_stderr():
    """Capture what C code (htslib) writes to file descriptor 2; yields a function returning the text."""
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        box: list[str] = []
        try:
            yield lambda: box[0] if box else ""
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            box.append(tmp.read().decode(errors="replace").strip())


@functools.lru_cache(maxsize=None)
def _htslib():
    """cyvcf2's htslib as a ctypes library, or None where it cannot be reached."""
    try:
        import ctypes

        import cyvcf2.cyvcf2 as ext

        lib = ctypes.CDLL(ext.__file__)
        lib.hts_get_log_level()
        return lib
    except (ImportError, OSError, AttributeError):
        return None


@contextlib.contextmanager
def htslib_log_level(level: int):
    """Run the block with htslib's log level at ``level`` (0 nothing, 1 errors, 2 warnings too; htslib's default is
    3), then put it back. Reading prints errors (a data line htslib cannot parse, which our own error then points
    to) and no warnings: 'Contig X is not defined in the header (workaround: index with tabix)' and undeclared
    FILTER/INFO notices are handled here (contigs resolved against the FASTA and declared in the output,
    ``VariantReader.undeclared``), and htslib's advice does not apply. No-op where cyvcf2's htslib is not at hand."""
    lib = _htslib()
    if lib is None:
        yield
        return
    before = lib.hts_get_log_level()
    lib.hts_set_log_level(level)
    try:
        yield
    finally:
        lib.hts_set_log_level(before)


def quiet_records(vcf):
    """A cyvcf2 reader's records, each parsed with htslib's errors shown and its warnings not (see
    :func:`htslib_log_level`); the level is htslib's own between records, so other readers are not affected."""
    it = iter(vcf)
    while True:
        with htslib_log_level(1):
            rec = next(it, None)
        if rec is None:
            return
        yield rec
