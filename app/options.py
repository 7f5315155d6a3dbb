"""Command-line options shared by the subcommands that read VCF + FASTA (windows, predict, eval).

One definition of each input policy flag, its default and its help text, so the
commands cannot drift apart; ``reader_options(args)`` turns them into the
keyword arguments of :class:`bioreason.kegg_data.variants.VariantReader`.
"""

from __future__ import annotations

from bioreason.kegg_data.variants import REF_CHECK_POLICIES


def add_variant_options(p, window_default: int = 1024) -> None:
    g = p.add_argument_group("variant input policies")
    g.add_argument("--fasta", required=True,
                   help="reference FASTA (plain, or BGZF with .fai/.gzi); 'bundled' = the packaged GRCh38 chr17 "
                        "(real sequence over BRCA1 only)")
    g.add_argument("--window", type=int, default=window_default,
                   help=f"window length in nt for both the reference and the alternate sequence "
                        f"(default {window_default}, the default encoder's maximum)")
    g.add_argument("--ref-check", choices=REF_CHECK_POLICIES, default="error",
                   help="when REF disagrees with the FASTA: error (default; stop and name the record), warn "
                        "(keep, flagged), skip (record it in the skip log), fix (use the FASTA's allele); "
                        "like bcftools norm -c e|w|x|s")
    g.add_argument("--max-allele-len", type=int, default=64,
                   help="skip alleles longer than this many nt (default 64)")
    g.add_argument("--left-normalise", action="store_true",
                   help="left-align and trim indels against the FASTA before building windows (off by default)")


def fasta_path(args):
    from bioreason.kegg_data.bundled import resolve_fasta

    return resolve_fasta(args.fasta)


def reader_options(args) -> dict:
    return dict(window=args.window, ref_check=args.ref_check, max_allele_len=args.max_allele_len,
                left_normalise=args.left_normalise)
