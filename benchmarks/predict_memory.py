"""Peak RSS of ``bioreason predict`` as the input grows: it must stay flat (the job streams).

Generates VCFs of ``--sizes`` records (default 1,000 and 1,000,000): the 24 real BRCA1 records of
``examples/brca1_sge_24.vcf`` first (predicted with the shipped model), then records on chr17 outside BRCA1,
where the bundled reference has no sequence, so they go through the reader, the skip accounting and every output
file without costing model time. Each size runs in a fresh process; its peak RSS comes from ``wait4``. Prints the
RSS per size and the ratio largest / smallest (goal: at most 1.1: flat), and the largest against 1.5 GiB.
``--traces`` adds reasoning traces; ``--reps N`` runs each size N times (peak RSS differs by up to 0.07 GiB from
run to run with traces): the largest peak RSS and the median wall time. ``--predicted N`` (default 24) takes the
first N real records of ``examples/brca1_sge_part1.vcf`` instead (up to 1,945) for sizes of at least N: a long
run of traces lets glibc's heap and oneDNN's primitive cache grow batch after batch (the README's memory row: 1.33
GiB on 24 variants, 1.52 on 400 with fp32 traces; 1.31 on 400 and 1.36 on 1,000 with the bf16 products ``auto``
gives the shipped model's traces since 2026-11-29).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "brca1_sge_24.vcf"
LONG = ROOT / "examples" / "brca1_sge_part1.vcf"  # 1,945 real records (EXAMPLE's 24 are a selection of them)


def make_vcf(n: int, folder: Path, predicted: int = 24) -> Path:
    lines = (EXAMPLE if predicted <= 24 else LONG).read_text().splitlines(keepends=True)
    header = [x for x in lines if x.startswith("#")]
    body = [x for x in lines if not x.startswith("#")][:predicted]
    out = folder / f"n{n}.vcf"
    with open(out, "w") as fh:
        fh.writelines(header)
        fh.writelines(body[:n])
        for i in range(max(0, n - len(body))):  # chr17:50,000,000+: N in the bundled reference
            fh.write(f"chr17\t{50_000_000 + i}\t.\tA\tG\t.\t.\t.\n")
    return out


def run_one(vcf: Path, prefix: Path, traces: bool = False) -> tuple[float, float]:
    cmd = [sys.executable, "-m", "bioreason.app.cli", "predict", str(vcf), "--fasta", "bundled", "-o", str(prefix),
           "--force"] + (["--traces"] if traces else [])
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    err = proc.stderr.read().decode(errors="replace")
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"predict failed on {vcf.name}: {err[-1000:]}")
    return usage.ru_maxrss / 2**20, time.perf_counter() - t0  # ru_maxrss is KiB on Linux -> GiB


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", default="1000,1000000")
    ap.add_argument("--traces", action="store_true", help="predict --traces (greedy reasoning traces)")
    ap.add_argument("--reps", type=int, default=1, help="runs of each size")
    ap.add_argument("--predicted", type=int, default=24, help="real BRCA1 records first (at most 1,945); the rest "
                    "of each size are skipped records")
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    if not 1 <= args.predicted <= 1945 or min(sizes) < args.predicted:
        ap.error(f"--predicted {args.predicted}: between 1 and 1,945, and at most the smallest of --sizes")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            vcf = make_vcf(n, Path(tmp), args.predicted)
            got = []
            for _ in range(args.reps):
                got.append(run_one(vcf, Path(tmp) / f"out{n}", args.traces))
                with open(Path(tmp) / f"out{n}.jsonl") as fh:
                    lines = sum(1 for _ in fh)
                assert lines == n, (lines, n)  # every record accounted for
            rss, secs = max(r for r, _ in got), statistics.median(s for _, s in got)
            rows.append((n, rss, secs))
            runs = ", ".join(f"{r:.2f}" for r, _ in got)
            print(f"{n:>9,} records{' --traces' if args.traces else ''}: peak RSS {rss:.2f} GiB (largest of "
                  f"{args.reps}: {runs}), {secs:.0f} s median ({args.predicted} predicted, {n - args.predicted:,} "
                  "skipped)")
            (Path(tmp) / f"n{n}.vcf").unlink()
    small, large = rows[0][1], rows[-1][1]
    print(f"peak RSS {rows[-1][0]:,} / {rows[0][0]:,} records: {large / small:.3f}x; flat (goal <= 1.1x): "
          f"{'met' if large / small <= 1.1 else 'NOT met'}; largest {max(r[1] for r in rows):.2f} GiB "
          f"(issue 14's goal <= 1.5 GiB: {'met' if max(r[1] for r in rows) <= 1.5 else 'NOT met'})")


if __name__ == "__main__":
    sys.exit(main())
