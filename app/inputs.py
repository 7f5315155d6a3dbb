"""Command-line input and progress conventions shared by ``windows``, ``predict`` and ``eval`` (bcftools/VEP style).

- ``-`` as the VCF reads standard input (e.g. ``bcftools view in.bcf | bioreason predict - ...``): it is copied
  once to a temporary file beside the outputs (the job reads the VCF twice: to predict, then to write the
  annotated copy), removed when the command ends.
- A VCF or FASTA argument that is a directory, or a VCF that starts with a byte-order mark, is an error saying so.
- ``-o`` is a prefix: a folder (existing, or ending in ``/``) is an error naming a prefix to use instead.
- ``progress(...)``: a tqdm bar on a terminal; elsewhere (a log file, a batch job) one line every
  ``interval`` seconds with the count, rate and time left, so a long run's log shows it is alive.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bioreason.atomic import ensure_writable_folder
from bioreason.errors import InputFormatError
from bioreason.kegg_data.vcf_reader import check_vcf_path


def check_input_file(path, what: str = "VCF") -> None:
    """Before any work: a VCF that is missing, a directory or has a BOM; a FASTA that is a directory."""
    if what == "VCF":
        check_vcf_path(path)
    elif Path(path).is_dir():
        raise InputFormatError(f"{what} {path} is a directory; pass the {what} file itself")
    elif what == "FASTA" and not Path(path).exists():
        raise InputFormatError(f"--fasta {path}: no such file; pass the reference FASTA the VCF's positions are on "
                               "(plain, or bgzip-compressed), or --fasta bundled for GRCh38 chr17 with BRCA1")


def check_prefix(prefix: str, outputs=(), inputs=()) -> None:
    """Before any work: ``-o`` is a prefix in a folder that takes files, and none of its ``outputs`` is one of the
    ``inputs`` (``predict in.vcf -o in`` would replace in.vcf: refused even with --force, the input would be lost)."""
    for out in outputs:
        for given in inputs:
            if given in (None, "-") or not Path(str(given)).is_file():
                continue
            out_path = Path(out)
            if out_path.resolve() == Path(given).resolve() or out_path.exists() and os.path.samefile(out_path, given):
                raise InputFormatError(f"-o {prefix} would write {out}, which is the input {given}; choose another "
                                       f"-o prefix, e.g. -o {Path(prefix).parent / (Path(prefix).name + '.bioreason')}")
    if Path(str(prefix)).name.startswith("-"):  # '-o -' wrote files named '-.vcf', which shells take for options
        raise InputFormatError(f"-o {prefix}: the outputs are several files (.vcf, .jsonl, .tsv, ...), so -o takes a "
                               "prefix, not '-' (standard output); e.g. -o out/sample")
    if str(prefix).endswith(("/", os.sep)) or Path(prefix).is_dir():
        raise InputFormatError(f"-o {prefix} is a folder; -o takes a prefix, e.g. -o {Path(prefix) / 'sample'} "
                               f"writes {Path(prefix) / 'sample'}.vcf, .jsonl, ...")
    folder = Path(prefix).parent
    try:  # before any model loads: the outputs' folder must exist (it is made) and take files
        ensure_writable_folder(folder)
    except OSError as exc:
        raise InputFormatError(f"-o {prefix}: cannot write in the folder {folder} ({exc.strerror or exc}); give a "
                               "prefix in a folder you can write, e.g. -o out/sample") from exc


@contextlib.contextmanager
def vcf_input(value: str, prefix: str):
    """The VCF path to read: ``value`` itself (checked), or standard input spooled beside ``prefix``."""
    if value != "-":
        check_input_file(value)
        yield value
        return
    folder = Path(prefix).parent
    folder.mkdir(parents=True, exist_ok=True)
    stream = sys.stdin.buffer
    head = stream.read(2)
    suffix = ".vcf.gz" if head == b"\x1f\x8b" else ".vcf"  # BGZF/gzip from `bcftools view -Oz`
    fd, tmp = tempfile.mkstemp(prefix=f".{Path(prefix).name}.stdin-", suffix=suffix, dir=folder)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(head)
            shutil.copyfileobj(stream, out, 1 << 20)
        if os.path.getsize(tmp) == 0:
            raise InputFormatError("standard input (-) was empty; pipe a VCF into the command, e.g. "
                                   "`bcftools view in.bcf | bioreason predict - ...`")
        check_input_file(tmp)
        yield tmp
    finally:
        Path(tmp).unlink(missing_ok=True)


def count_alleles(path) -> int | None:
    """ALT alleles in a text VCF (plain or gzip), by a quick scan of column 5, for a progress total; None for BCF.
    A cut-off or corrupt .vcf.gz fails here, before any model loads (``open_text``)."""
    from bioreason.kegg_data.text_files import GZIP_MAGIC, open_text

    p = Path(path)
    with open(p, "rb") as fh:
        magic = fh.read(4)
    if magic[:3] == b"BCF" or (magic[:2] == GZIP_MAGIC and p.suffix == ".bcf"):
        return None
    n = 0
    with open_text(p, binary=True) as fh:
        for line in fh:
            if not line.startswith(b"#"):
                cols = line.split(b"\t", 5)
                n += cols[4].count(b",") + 1 if len(cols) > 4 else 1
    return n


class _LogProgress:
    """tqdm's update/close interface, printing one line every ``interval`` seconds (for non-terminals)."""

    def __init__(self, total, initial, desc, unit, interval):
        self.total, self.n, self.desc, self.unit, self.interval = total, initial, desc, unit.strip(), interval
        self.t0 = self.last = time.monotonic()
        self.start_n = initial

    def update(self, k: int = 1) -> None:
        self.n += k
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.last = now
            self._print(now)

    def _print(self, now) -> None:
        rate = (self.n - self.start_n) / max(now - self.t0, 1e-9)
        left = (f", about {(self.total - self.n) / rate / 60:.1f} min left" if self.total and rate > 0
                and self.n < self.total else "")
        share = f"/{self.total:,} ({100 * self.n / self.total:.1f}%)" if self.total else ""
        print(f"{self.desc}: {self.n:,}{share} {self.unit}, {rate:.2f} {self.unit}/s{left}", file=sys.stderr,
              flush=True)

    def close(self) -> None:
        self._print(time.monotonic())


def progress(total=None, initial: int = 0, desc: str = "", unit: str = "it", interval: float = 30.0):
    """A progress reporter: tqdm on a terminal, a line every ``interval`` s otherwise."""
    if sys.stderr.isatty():
        from tqdm import tqdm

        return tqdm(total=total, initial=initial, desc=desc, unit=unit, file=sys.stderr, smoothing=0.1)
    return _LogProgress(total, initial, desc, unit, interval)
