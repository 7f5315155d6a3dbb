"""``bioreason windows``: VCF + FASTA -> ref/alt windows (JSONL) and a skip log, with every input policy."""

from __future__ import annotations

import sys

from bioreason.app.options import add_variant_options, fasta_path, reader_options, transcript_model


def add_parser(sub) -> None:
    p = sub.add_parser("windows", help="cut reference/alternate DNA windows for every ALT allele of a VCF",
                       description="Read a VCF/VCF.gz/BCF with htslib and a reference FASTA; write one JSON line "
                                   "per ALT allele (both windows, the allele's 0-based offset, flags) to "
                                   "PREFIX.windows.jsonl and every allele that could not be windowed, with its "
                                   "reason, to PREFIX.skipped.tsv. Each input allele ends in exactly one of them. "
                                   "With a transcript model (--gtf; auto = BRCA1 with the bundled reference) each "
                                   "window also carries its computed consequences ('csq').")
    p.add_argument("vcf", help="input VCF, VCF.gz or BCF; - reads standard input")
    p.add_argument("-o", "--output", required=True, metavar="PREFIX", help="output prefix")
    p.add_argument("--info", action="append", default=[], metavar="FIELD",
                   help="copy this INFO field into the output (repeatable), e.g. --info CSQ --info LABEL")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    add_variant_options(p)
    p.set_defaults(handler=run)


def run(args) -> int:
    from bioreason.app.inputs import check_input_file, check_prefix, vcf_input

    check_prefix(args.output, [f"{args.output}.windows.jsonl", f"{args.output}.skipped.tsv"],
                 [args.vcf, fasta_path(args), args.gtf])
    check_input_file(fasta_path(args), "FASTA")
    with vcf_input(args.vcf, args.output) as vcf:
        return _run(args, vcf)


def _run(args, vcf) -> int:
    from tqdm import tqdm

    from bioreason.app.writers import SKIP_HEADER, AtomicWriter, check_outputs, dumps, skip_line, window_record
    from bioreason.kegg_data.variants import Skip
    from bioreason.kegg_data.vcf_reader import VariantReader

    out_w, out_s = f"{args.output}.windows.jsonl", f"{args.output}.skipped.tsv"
    check_outputs([out_w, out_s], args.force)
    reader = VariantReader(vcf, fasta_path(args), info_fields=args.info, **reader_options(args))
    reader.warn_if_gvcf()
    transcripts = transcript_model(args)
    annotate = None
    if transcripts is not None:
        from bioreason.kegg_data.consequence import Annotator

        annotate = Annotator(transcripts, reader.reference).annotate
    windows, skips = AtomicWriter(out_w), AtomicWriter(out_s)
    skips.write(SKIP_HEADER)
    try:
        for item in tqdm(reader, desc="variants", unit=" alleles", disable=None, file=sys.stderr):
            if isinstance(item, Skip):
                skips.write(skip_line(item))
            elif annotate is None:
                windows.write(dumps(window_record(item)))
            else:
                rec = window_record(item)
                rec["csq"] = annotate(item.chrom, item.pos, item.ref, item.alt)
                windows.write(dumps(rec))
    except BaseException:
        windows.abort()
        skips.abort()
        raise
    windows.commit()
    skips.commit()
    s = reader.stats
    print(f"{s.records} records, {s.alleles} alleles: {s.windows} windows -> {out_w}, {s.skips} skipped -> {out_s}")
    for line in s.skip_lines():
        print(line)
    return 0
