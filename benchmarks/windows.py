"""Variants/s for parse + REF check + window building (cyvcf2 + pyfaidx), on real BRCA1 records.

The 1,945 real SGE records are repeated until at least ``--min-records`` (default 100,000) to make a VCF (plain
or BGZF), then read against the bundled BGZF GRCh38 chr17 with 1,024-nt windows. Median of ``--runs`` (default 3).
Reference points: Ensembl VEP (Perl) about 243 variants/s on a laptop, a tuned VEP server about 1,670/s.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SGE = ROOT / "tests" / "data" / "brca1_sge_findlay2018_grch38_part1.vcf"
FASTA = ROOT / "kegg_data" / "data" / "GRCh38_chr17_BRCA1_Nmasked.fa.gz"
VEP_LAPTOP = 243.0


def make_vcf(n_min: int, folder: Path) -> tuple[Path, int]:
    lines = SGE.read_text().splitlines(keepends=True)
    header = [x for x in lines if x.startswith("#")]
    body = [x for x in lines if not x.startswith("#")]
    reps = -(-n_min // len(body))
    out = folder / "repeated.vcf"
    with open(out, "w") as fh:
        fh.writelines(header)
        for _ in range(reps):
            fh.writelines(body)
    return out, reps * len(body)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--min-records", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--window", type=int, default=1024)
    args = ap.parse_args()
    from bioreason.kegg_data.variants import VariantReader

    with tempfile.TemporaryDirectory() as tmp:
        vcf, n = make_vcf(args.min_records, Path(tmp))
        rates = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            reader = VariantReader(vcf, FASTA, window=args.window, ref_check="error")
            windows = sum(1 for _ in reader)
            dt = time.perf_counter() - t0
            assert windows == n == reader.stats.windows, (windows, n)
            rates.append(n / dt)
    med = statistics.median(rates)
    print(f"records: {n:,} (real SGE records x {n // 1945}), window {args.window} nt, BGZF reference")
    print(f"runs: {', '.join(f'{r:,.0f}' for r in rates)} variants/s")
    print(f"median: {med:,.0f} variants/s; ratio to VEP laptop (243/s): {med / VEP_LAPTOP:.0f}x; "
          f"goal 20,000/s: {'met' if med >= 20_000 else 'NOT met'}")


if __name__ == "__main__":
    sys.exit(main())
