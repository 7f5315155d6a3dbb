"""VCF/BCF files -> ``Variant`` / ``Skip`` items: the reading half of ``variants`` (which owns the windows).

``VariantReader`` reads records with cyvcf2 (htslib), so ``.vcf``, ``.vcf.gz`` and ``.bcf`` all work, hands each
record's alleles to ``variants.WindowBuilder`` (one ``Variant`` or one ``Skip`` per ALT allele; the accounting is
checked when the file ends) and turns what htslib cannot read into an error naming ``file:line``, the line and the
fix: a missing, empty or BOM-prefixed file (``check_vcf_path``), an unreadable header, a cut-off compressed stream,
a record that does not parse or has no REF, columns separated by spaces (``tabs_command``). It warns about gVCF
reference blocks and lists the INFO/FORMAT ids records use without declaring them (``undeclared``), which a writer
must declare. ``read_variants`` reads a whole file into lists.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
from itertools import islice
from pathlib import Path
from typing import Iterator

from bioreason.errors import InputFormatError, MissingDependencyError
from bioreason.kegg_data.htslib_messages import captured_stderr, quiet_records
from bioreason.kegg_data.reference import Reference
from bioreason.kegg_data.text_files import compressed_stream_ends_early, open_text, unreadable
from bioreason.kegg_data.variants import ReaderStats, Skip, Variant, WindowBuilder

log = logging.getLogger(__name__)


def tabs_command(path) -> str:
    """A shell command that turns runs of spaces into tabs on a VCF's data lines (headers keep their spaces)."""
    name = shlex.quote(str(path))
    if str(path).lower().endswith((".gz", ".bgz")):
        return f"zcat {name} | sed '/^#/!s/ \\+/\\t/g' > fixed.vcf"
    return f"sed -i '/^#/!s/ \\+/\\t/g' {name}"


def check_vcf_path(path) -> None:
    """A clear error for a VCF path that is missing, a directory, or starts with a byte-order mark."""
    p = Path(path)
    if p.is_dir():
        raise InputFormatError(f"VCF {p} is a directory; pass the VCF file itself")
    if not p.is_file():
        raise InputFormatError(f"VCF file {p} does not exist")
    if p.stat().st_size == 0:
        raise InputFormatError(f"VCF {p} is empty (0 bytes); a VCF has at least a '##fileformat' and a '#CHROM' line")
    with open(p, "rb") as fh:
        if fh.read(3) == b"\xef\xbb\xbf":
            raise InputFormatError(
                f"{p}:1: the file starts with a byte-order mark (BOM, bytes EF BB BF, added by some Windows "
                f"editors), which htslib cannot read; remove it, e.g. `sed -i '1s/^\\xEF\\xBB\\xBF//' {p}`")


class VariantReader:
    """Iterate ``Variant``/``Skip`` objects from a VCF/BCF against a reference. See the module docstring."""

    def __init__(self, vcf_path, reference: Reference | str | os.PathLike, window: int = 1024,
                 ref_check: str = "error", max_allele_len: int = 64, left_normalise: bool = False,
                 info_fields: tuple[str, ...] | list[str] = (), options_as: str = "cli"):
        self.path = Path(vcf_path)
        self.builder = WindowBuilder(reference, window, ref_check, max_allele_len, left_normalise, options_as)
        self.reference = self.builder.reference
        self.info_fields = tuple(info_fields)
        self.undeclared: list[str] = []  # filled when iteration ends
        self._vcf = self._open()
        self.header_lines = self._count_header_lines()

    @property
    def stats(self) -> ReaderStats:
        return self.builder.stats

    def warn_if_gvcf(self) -> bool:
        """Warn (and say True) when the header declares gVCF reference blocks (``##GVCFBlock``, an ``<NON_REF>`` or
        ``<*>`` ALT): each block is a record to read and a line of the skip log, so filtering first saves both."""
        gvcf = any(x.startswith(("##GVCFBlock", "##ALT=<ID=NON_REF,", "##ALT=<ID=*,"))
                   for x in self._vcf.raw_header.splitlines())
        if gvcf:
            log.warning("%s is a gVCF: its reference blocks (ALT <NON_REF> or <*> only) are skipped one by one, each "
                        "a line of the skip log; `bcftools view -i 'GT=\"alt\"' %s -Oz -o variants.vcf.gz` keeps "
                        "the variant records only", self.path.name, shlex.quote(str(self.path)))
        return gvcf

    def _open(self):
        check_vcf_path(self.path)
        try:
            from cyvcf2 import VCF
        except ImportError as exc:
            raise MissingDependencyError("reading VCF needs cyvcf2: `pip install bioreason[genomics]`") from exc
        with captured_stderr() as htslib_said:
            try:
                vcf = VCF(str(self.path), lazy=True, strict_gt=False)
                exc_text = None
            except Exception as exc:  # htslib failures surface as OSError or bare Exception
                vcf, exc_text = None, str(exc)
        if vcf is None:
            said = htslib_said()
            cut = compressed_stream_ends_early(self.path)  # a cut-off download is not a malformed header
            if cut:
                raise unreadable(self.path, OSError(exc_text), f"{self.path}:1", cut)
            raise InputFormatError(
                f"{self.path}:1: not a readable VCF/BCF header ({said or exc_text}); a VCF needs a "
                "'##fileformat=VCFv4.x' line and a tab-separated '#CHROM' line with no empty sample names "
                "(check with `bcftools view -h`)")
        return vcf

    def _count_header_lines(self) -> int:
        """Lines before the first record, read from the file (htslib's header text adds lines, e.g. PASS)."""
        if self.path.suffix == ".bcf":
            return 0
        n = 0
        with open_text(self.path) as fh:
            for line in fh:
                if not line.startswith("#"):
                    break
                n += 1
        return n

    def where(self, record: int) -> str:
        """'file:line' for a record (BCF has no lines: 'file record N')."""
        if self.path.suffix == ".bcf":
            return f"{self.path} record {record + 1}"
        return f"{self.path}:{self.header_lines + record + 1}"

    def _line_text(self, record: int) -> str:
        try:
            with open_text(self.path) as fh:
                line = next(islice(fh, self.header_lines + record, None), "")
        except (OSError, InputFormatError):
            return ""
        return line.rstrip("\n")[:120]

    def __iter__(self) -> Iterator[Variant | Skip]:
        rec_i = -1
        declared = set(self._vcf.raw_header.splitlines())
        it = quiet_records(self._vcf)
        fields = self.info_fields
        build = self.builder.build
        while True:
            try:
                rec = next(it)
            except StopIteration:
                break
            except Exception as exc:  # htslib could not parse a data line
                bad = rec_i + 1
                cut = compressed_stream_ends_early(self.path)  # a cut-off download, not a malformed record
                if cut:
                    raise unreadable(self.path, exc, self.where(bad), cut) from None
                text = self._line_text(bad)
                raise InputFormatError(
                    f"{self.where(bad)}: htslib could not parse this record ({exc}; its message is printed "
                    f"above as [E::...]): {text!r}; {self._spaces_advice(text) or 'fix or remove the line'}") from exc
            rec_i += 1
            if not rec.ALT and str(rec).split("\t", 4)[3] == ".":  # htslib read no alleles: REF would crash cyvcf2
                text = self._line_text(rec_i)
                raise InputFormatError(
                    f"{self.where(rec_i)}: no REF allele in this record: {text!r}; " + (
                        self._spaces_advice(text) or "a VCF data line needs 8 or more columns separated by tabs, "
                        "with REF and ALT in columns 4 and 5"))
            info = {k: rec.INFO.get(k) for k in fields} if fields else None
            yield from build(rec.CHROM, rec.POS, rec.REF, rec.ALT, rec.ID, rec_i, info, self.where)
        # INFO/FORMAT/FILTER ids the records use but the header never declared (htslib adds 'Dummy' lines for
        # them): a writer must declare them too, or htslib refuses those records
        self.undeclared = [x for x in self._vcf.raw_header.splitlines() if x not in declared and x.startswith("##")]
        self.close()
        self.builder.check_accounting()

    def _spaces_advice(self, text: str) -> str | None:
        """For a data line typed or pasted with spaces between its columns: how to make them tabs, else None."""
        if "\t" in text or len(text.split()) < 5:
            return None
        how = ("paste it with tabs, or upload the file" if self.builder.options_as == "pasted" else
               f"e.g. `{tabs_command(self.path)}` if no field contains a space")
        return f"its columns are separated by spaces: a VCF data line needs tabs between its columns ({how})"

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._vcf.close()


def read_variants(vcf_path, fasta, **options) -> tuple[list[Variant], list[Skip], ReaderStats]:
    """Read a whole VCF: (variants, skips, stats). Options as for :class:`VariantReader`."""
    reader = VariantReader(vcf_path, fasta, **options)
    variants, skips = [], []
    for item in reader:
        (variants if isinstance(item, Variant) else skips).append(item)
    return variants, skips, reader.stats


__all__ = ["VariantReader", "check_vcf_path", "read_variants", "tabs_command"]
