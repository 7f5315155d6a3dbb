"""``bioreason compare``: two systems of ``eval`` reports on the same items, with paired bootstrap intervals."""

from __future__ import annotations

import json


def add_parser(sub) -> None:
    p = sub.add_parser(
        "compare", help="paired comparison of two eval reports (or two systems of one) on the same items",
        description="Is A better than B on the same items? Accuracy and macro-F1 (AUROC too for a binary task) of "
                    "each, and the 95% interval of A - B from a paired bootstrap (1,000 resamples of the items, "
                    "seed 0, as eval's own intervals), the items right in only one, and how many labels agree. A "
                    "and B are eval output folders or report.json files, each optionally followed by :SYSTEM "
                    "(e.g. dna-llm-generated, llm-only-generated, tfidf; default: the report's DNA-LLM). Example: "
                    "bioreason compare reports/kegg-v1-seen:dna-llm-generated reports/kegg-v1-seen:llm-only-generated")
    p.add_argument("a", metavar="A", help="REPORT[:SYSTEM], the system whose gain is measured")
    p.add_argument("b", metavar="B", help="REPORT[:SYSTEM], the system it is compared with")
    p.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (default 1000)")
    p.add_argument("--json", action="store_true", help="print the comparison as JSON instead of a table")
    p.set_defaults(handler=run)


def run(args) -> int:
    from bioreason.errors import InputFormatError
    from bioreason.report_compare import compare_reports, format_comparison

    if args.resamples < 1:
        raise InputFormatError(f"--resamples {args.resamples}: give 1 or more")
    c = compare_reports(args.a, args.b, n_boot=args.resamples)
    print(json.dumps(c, indent=1) if args.json else format_comparison(c))
    return 0
