"""Variants/s for parse + REF check + window building (cyvcf2 + pyfaidx), on real BRCA1 records, and what the
consequence annotation (``--gtf``) adds to the ``windows`` command.

The 1,945 real SGE records are repeated until at least ``--min-records`` (default 100,000) to make a VCF (plain
or BGZF), then read against the bundled BGZF GRCh38 chr17 with 1,024-nt windows. Median of ``--runs`` (default 3).
Then the whole ``bioreason windows`` command (read, window, write JSONL + skip log) runs with ``--gtf none`` and
``--gtf bundled`` (the BRCA1 transcript: every record is annotated, 1,311 of the 1,945 in coding exons), in
alternation, ``--runs`` times each; the ratio of the medians is the annotation's cost (goal: at most 1.10).
Reference points: Ensembl VEP (Perl) about 243 variants/s on a laptop, a tuned VEP server about 1,670/s.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
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
    from bioreason.app.cli import main as cli
    from bioreason.kegg_data.vcf_reader import VariantReader

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
        command = {"none": [], "bundled": []}
        for k in range(args.runs):
            for gtf in ("none", "bundled"):
                t0 = time.perf_counter()
                with contextlib.redirect_stdout(io.StringIO()):
                    rc = cli(["windows", str(vcf), "--fasta", str(FASTA), "-o", str(Path(tmp) / gtf), "--gtf", gtf,
                               "--window", str(args.window), "--force"])
                command[gtf].append(time.perf_counter() - t0)
                assert rc == 0
        with open(Path(tmp) / "bundled.windows.jsonl") as fh:
            first = json.loads(fh.readline())
        assert first["csq"][0]["hgvsc"] == "c.5565A>T", first["csq"]
    med = statistics.median(rates)
    print(f"records: {n:,} (real SGE records x {n // 1945}), window {args.window} nt, BGZF reference")
    print(f"reader runs: {', '.join(f'{r:,.0f}' for r in rates)} variants/s")
    print(f"reader median: {med:,.0f} variants/s; ratio to VEP laptop (243/s): {med / VEP_LAPTOP:.0f}x; "
          f"goal 20,000/s: {'met' if med >= 20_000 else 'NOT met'}")
    plain, annotated = statistics.median(command["none"]), statistics.median(command["bundled"])
    print(f"`windows` command, --gtf none: {', '.join(f'{t:.2f}' for t in command['none'])} s; "
          f"--gtf bundled: {', '.join(f'{t:.2f}' for t in command['bundled'])} s")
    print(f"annotation cost: median {annotated:.2f} s / {plain:.2f} s = {annotated / plain:.3f}x "
          f"({(annotated - plain) / n * 1e6:.1f} us per variant, {n / annotated:,.0f} annotated variants/s); "
          f"goal <= 1.10x: {'met' if annotated / plain <= 1.10 else 'NOT met'}")


if __name__ == "__main__":
    sys.exit(main())
