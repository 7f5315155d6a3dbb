"""A variant's alleles + reference FASTA -> one ``Variant`` window pair per ALT allele, or a recorded ``Skip``.

Reading VCF/BCF files is ``vcf_reader.VariantReader`` (cyvcf2); this module owns what happens to each record's
alleles (``WindowBuilder``, also used by the demo for pasted variants and by user datasets for table rows).
Every ALT allele of every record ends as exactly one ``Variant`` or one ``Skip``
(``chrom, pos, ref, alt, reason``); ``ReaderStats`` counts them and
``WindowBuilder.check_accounting`` checks ``alleles == windows + skips`` when a file ends.

Windows (coordinates: VCF POS is 1-based; FASTA offsets are 0-based, converted
once in ``_window``): both windows are ``window`` nt long (default 1,024, the
default encoder's maximum). The REF allele starts at 0-based offset
``window // 2`` of the reference window, which is the FASTA slice
``[pos0 - offset, pos0 - offset + window)``. The alternate window is the same
left flank, then the ALT allele, then the reference sequence that follows REF,
taken as far as needed to fill the window. So an insertion shortens the right
flank and a deletion extends it with real downstream sequence: both windows
keep the same length and the same left flank, and they differ from the allele
onwards. Windows past a contig edge are N-padded and flagged ``edge_padded``.

Policies (each an option, each decision recorded on the variant or the skip):
``ref_check`` error|warn|skip|fix (like ``bcftools norm -c e|w|x|s``; default
error); contig synonyms (chr added/stripped, M<->MT, like Ensembl VEP); symbolic
``<...>``, breakend, ``*`` and missing ``.`` ALTs skipped; alleles longer than
``max_allele_len`` (default 64) or with non-ACGTN bases skipped; optional
left-normalisation of indels (``left_normalise``).
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field

from bioreason.errors import InputFormatError, ReferenceMismatchError
from bioreason.kegg_data.reference import Reference

log = logging.getLogger(__name__)
REF_CHECK_POLICIES = ("error", "warn", "skip", "fix")
# skip reasons grouped for the summary counts (the full reason stays on each Skip)
_CATEGORIES = [(re.compile(p), c) for p, c in (
    (r"contig .* not in the FASTA", "contig not in the FASTA"), (r"REF .* does not match", "REF mismatch"),
    (r"REF .* has characters", "REF not A/C/G/T/N"), (r"ALT .* has characters", "ALT not A/C/G/T/N"),
    (r"the FASTA has no sequence", "no sequence (N) in the FASTA"), (r"symbolic ALT", "symbolic ALT"),
    (r"gVCF reference allele", "gVCF reference allele (<NON_REF>, <*>)"),
    (r"breakend ALT", "breakend ALT"), (r"POS .* outside", "POS outside contig"),
    (r"no label", "no label"), (r"ALT .* repeats allele", "ALT repeated in its record"))]


SKIP_HEADER = "chrom\tpos\tref\talt\treason\n"  # the skip log every command that reads variants writes


def skip_line(skip) -> str:
    return f"{skip.chrom}\t{skip.pos}\t{skip.ref}\t{skip.alt}\t{skip.reason}\n"


def skip_category(reason: str) -> str:
    return next((c for p, c in _CATEGORIES if p.match(reason)), reason)


ACGTN = frozenset("ACGTN")


@dataclass
class Variant:
    """One ALT allele with its windows. ``pos`` is 1-based; ``window_start`` is a 0-based FASTA offset."""

    chrom: str
    pos: int
    ref: str
    alt: str
    id: str | None
    record: int  # 0-based index of the VCF record
    allele: int  # 1-based index of this ALT in the record
    contig: str  # the FASTA's name for chrom
    window_start: int
    offset: int  # 0-based index of the allele in both windows
    ref_window: str
    alt_window: str
    flags: tuple[str, ...] = ()
    info: dict = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.chrom}:{self.pos}:{self.ref}:{self.alt}"

    @property
    def kind(self) -> str:
        if len(self.ref) == len(self.alt):
            return "SNV" if len(self.ref) == 1 else "MNV"
        return "insertion" if len(self.alt) > len(self.ref) else "deletion" if len(self.alt) < len(self.ref) else "indel"


@dataclass
class Skip:
    """An ALT allele that did not become a window, and why."""

    chrom: str
    pos: int
    ref: str
    alt: str
    reason: str
    record: int
    allele: int

    @property
    def key(self) -> str:
        return f"{self.chrom}:{self.pos}:{self.ref}:{self.alt}"


@dataclass
class ReaderStats:
    records: int = 0
    alleles: int = 0
    windows: int = 0
    skips: int = 0
    reasons: dict = field(default_factory=dict)  # category -> count
    first: dict = field(default_factory=dict)  # category -> its first full reason

    def skip_lines(self) -> list[str]:
        """The end-of-run summary of skips, most frequent first, each with its first full reason where that says
        more than the category (e.g. which contigs the FASTA has)."""
        return [f"  skipped {n}: {cat}" + (f" (first: {self.first[cat]})" if self.first.get(cat, cat) != cat else "")
                for cat, n in sorted(self.reasons.items(), key=lambda kv: -kv[1])]


def left_normalise(ref_fetch, pos0: int, ref: str, alt: str) -> tuple[int, str, str]:
    """vt-style normalisation: trim common suffix, extend left when an allele empties, trim common prefix.

    ``ref_fetch(start0, end0)`` reads the reference; ``pos0`` is 0-based. Returns the new (pos0, ref, alt).
    """
    changed = True
    while changed:
        changed = False
        if ref and alt and ref[-1] == alt[-1]:
            ref, alt, changed = ref[:-1], alt[:-1], True
        if (not ref or not alt) and pos0 > 0:
            base = ref_fetch(pos0 - 1, pos0)
            pos0, ref, alt, changed = pos0 - 1, base + ref, base + alt, True
    while len(ref) > 1 and len(alt) > 1 and ref[0] == alt[0]:
        ref, alt, pos0 = ref[1:], alt[1:], pos0 + 1
    return pos0, ref, alt


class WindowBuilder:
    """The policies and the window arithmetic, for one variant at a time (VCF records or table rows).

    ``build(chrom, pos, ref, alts, ...)`` returns one ``Variant`` or ``Skip`` per ALT and updates ``stats``.
    ``where`` is a callable giving 'file:line' for messages. ``options_as``: how the user sets these policies, as
    the fixes that messages suggest name them: ``cli`` (``predict``/``windows`` flags: ``--ref-check=skip``),
    ``dataset`` (a training or eval dataset: ``data.options.ref_check=skip``, eval ``--option ref_check=skip``) or
    ``pasted`` (the demo: a VCF pasted or uploaded, no flags and no file to run a shell command on).
    """

    def __init__(self, reference: Reference | str | os.PathLike, window: int = 1024, ref_check: str = "error",
                 max_allele_len: int = 64, left_normalise: bool = False, options_as: str = "cli"):
        if ref_check not in REF_CHECK_POLICIES:
            raise ValueError(f"ref_check must be one of {REF_CHECK_POLICIES}, not {ref_check!r}")
        self.options_as = options_as
        if window < 2 or max_allele_len >= window - window // 2:
            how = ("raise the window (--window) or lower the longest allele (--max-allele-len)" if options_as == "cli"
                   else "raise data.options.window or lower data.options.max_allele_len (eval: --option window=N)")
            raise InputFormatError(f"window {window} must exceed twice max_allele_len {max_allele_len} (the variant "
                                   f"sits mid-window with room for its longest allele); {how}")
        self.reference = reference if isinstance(reference, Reference) else Reference(reference)
        self.window, self.offset = int(window), int(window) // 2
        self.ref_check, self.max_allele_len, self.normalise = ref_check, int(max_allele_len), left_normalise
        self.stats = ReaderStats()
        self._mismatch_warned = 0

    def setting(self, name: str, value=None, full: bool = True) -> str:
        """How the user sets reader option ``name`` (to ``value``): a flag, or a dataset option (see the class);
        ``full=False``: the dataset option's bare ``name=value``, for skip reasons."""
        if self.options_as in ("cli", "pasted"):
            flag = f"--{name.replace('_', '-')}" + ("" if value is None else f"={value}")
            return flag if self.options_as == "cli" else f"bioreason predict {flag}"
        plain = name + ("" if value is None else f"={value}")
        return f"data.options.{plain} (eval: --option {plain})" if full else plain

    def _skip(self, chrom, pos, ref, alt, reason, rec_i, allele) -> Skip:
        self.stats.skips += 1
        key = skip_category(reason)
        self.stats.reasons[key] = self.stats.reasons.get(key, 0) + 1
        self.stats.first.setdefault(key, reason)
        return Skip(chrom, pos, ref, alt, reason, rec_i, allele)

    def build(self, chrom: str, pos: int, ref: str, alts: list[str], var_id: str | None = None, rec_i: int = 0,
              info: dict | None = None, where=lambda i: f"record {i + 1}") -> list[Variant | Skip]:
        """All outcomes (one per ALT) of one record. ``pos`` is the 1-based VCF POS."""
        self.stats.records += 1
        vcf_ref = ref.upper()
        alts = [a.upper() for a in alts] or ["."]
        self.stats.alleles += len(alts)
        info = info or {}
        contig = self.reference.resolve(chrom)
        record_reason = None
        if contig is None:
            record_reason = self.reference.absent(chrom)
        elif not vcf_ref or not set(vcf_ref) <= ACGTN:
            record_reason = f"REF {vcf_ref[:20] or '(empty)'} has characters other than A, C, G, T, N"
        elif pos < 1 or pos - 1 + len(vcf_ref) > self.reference.lengths[contig]:
            record_reason = f"POS {pos} outside contig {contig} (length {self.reference.lengths[contig]})"
        if record_reason:
            return [self._skip(chrom, pos, vcf_ref, alt, record_reason, rec_i, i) for i, alt in enumerate(alts, 1)]
        pos0 = pos - 1  # VCF 1-based -> FASTA 0-based, here and nowhere else
        fasta_ref = self.reference.fetch(contig, pos0, pos0 + len(vcf_ref))
        if set(fasta_ref) == {"N"}:  # nothing to check REF against, nothing to score: whatever --ref-check says
            reason = (f"the FASTA has no sequence (N) at {chrom}:{pos}: a masked or partial reference (the bundled "
                      "one covers BRCA1 only) or another genome build")
            return [self._skip(chrom, pos, vcf_ref, alt, reason, rec_i, i) for i, alt in enumerate(alts, 1)]
        ref, flags = vcf_ref, []
        if fasta_ref != vcf_ref:
            ref, flags, reason = self._ref_policy(chrom, pos, vcf_ref, fasta_ref, where(rec_i))
            if reason:
                return [self._skip(chrom, pos, vcf_ref, alt, reason, rec_i, i) for i, alt in enumerate(alts, 1)]
        if contig != chrom:
            flags.append("contig_renamed")
        out: list[Variant | Skip] = []
        for i, alt in enumerate(alts, 1):
            reason = self._allele_reason(ref, alt)
            if not reason and alt in alts[:i - 1]:  # 'A,A': one prediction, not two identical ones
                reason = f"ALT {alt[:20]} repeats allele {alts.index(alt) + 1} of this record"
            if reason:
                out.append(self._skip(chrom, pos, vcf_ref, alt, reason, rec_i, i))
            else:
                out.append(self._window(chrom, contig, pos0, ref, alt, var_id, rec_i, i, flags, info))
        return out

    def _ref_policy(self, chrom, pos, vcf_ref, fasta_ref, where: str):
        """Apply --ref-check to a mismatch: returns (ref to use, flags, skip reason or None)."""
        if self.ref_check == "error":
            hint = (" (the FASTA is N there: a masked reference, or another genome build?)" if "N" in fasta_ref
                    else "; are the variants on the FASTA's genome build?")
            fix = ("Pass --ref-check=skip to drop such records, --ref-check=warn to keep them, or --ref-check=fix "
                   "to take the FASTA's allele" if self.options_as == "cli" else
                   f"Set {self.setting('ref_check', 'skip')} to drop such records (warn keeps them, fix takes the "
                   "FASTA's allele)")
            raise ReferenceMismatchError(
                f"{where}: REF {vcf_ref!r} at {chrom}:{pos} does not match the FASTA ({fasta_ref!r}){hint} {fix}")
        if self.ref_check == "skip":
            how = self.setting("ref_check", "skip", full=False)
            return vcf_ref, [], f"REF {vcf_ref} does not match the FASTA ({fasta_ref}) ({how})"
        if self.ref_check == "warn":
            self._mismatch_warned += 1
            if self._mismatch_warned <= 10:
                log.warning("%s: REF %s at %s:%d does not match the FASTA (%s); kept (%s)",
                            where, vcf_ref, chrom, pos, fasta_ref, self.setting("ref_check", "warn", full=False))
            return vcf_ref, ["ref_mismatch"], None
        if "N" in fasta_ref:
            return vcf_ref, [], f"REF {vcf_ref} does not match the FASTA ({fasta_ref}), which is N there"
        return fasta_ref, ["ref_fixed"], None  # fix

    def _allele_reason(self, ref: str, alt: str) -> str | None:
        if alt in (".", ""):
            return "ALT is missing ('.')"
        if alt == "*":
            return "ALT '*' (spanning deletion) is described by another record"
        if alt in ("<NON_REF>", "<*>"):  # gVCF: any other allele here, not a variant
            return (f"gVCF reference allele {alt}: no variant (`bcftools view -i 'GT=\"alt\"'` keeps a gVCF's "
                    "variant records)")
        if alt.startswith("<"):
            return f"symbolic ALT {alt} (not sequence-resolved)"
        if "[" in alt or "]" in alt:
            return f"breakend ALT {alt[:30]}"
        if not set(alt) <= ACGTN:
            return f"ALT {alt[:20]} has characters other than A, C, G, T, N"
        if alt == ref:
            return "ALT equals REF"
        if max(len(ref), len(alt)) > self.max_allele_len:
            return f"allele longer than {self.max_allele_len} nt ({self.setting('max_allele_len', full=False)})"
        return None

    def _window(self, chrom, contig, pos0, ref, alt, var_id, rec_i, allele, flags, info) -> Variant:
        fetch = self.reference.fetch
        flags = list(flags)
        if self.normalise and len(ref) != len(alt):
            n_pos0, n_ref, n_alt = left_normalise(lambda s, e: fetch(contig, s, e), pos0, ref, alt)
            if (n_pos0, n_ref, n_alt) != (pos0, ref, alt):
                pos0, ref, alt = n_pos0, n_ref, n_alt
                flags.append("left_normalised")
        W, off = self.window, self.offset
        start = pos0 - off  # 0-based FASTA offset of the window
        ref_window = fetch(contig, start, start + W)
        right = W - off - len(alt)
        after = pos0 + len(ref)
        alt_window = ref_window[:off] + alt + fetch(contig, after, after + right)
        length = self.reference.lengths[contig]
        if start < 0 or start + W > length or after + right > length:
            flags.append("edge_padded")
        self.stats.windows += 1
        return Variant(chrom, pos0 + 1, ref, alt, var_id, rec_i, allele, contig, start, off, ref_window,
                       alt_window, tuple(flags), info)

    def check_accounting(self) -> None:
        s = self.stats
        if s.alleles != s.windows + s.skips:  # the invariant: nothing is lost
            raise RuntimeError(f"internal error: {s.alleles} alleles but {s.windows} windows + {s.skips} skips")
