"""Build the bundled BRCA1 GTF (kegg_data/data/brca1_NM_007294_grch38.gtf) from the exon table
tests/data/brca1_NM_007294_exons_grch38.tsv (BRCA Exchange, see tests/data/PROVENANCE.md).

GENCODE-style lines: one transcript line, then exon, CDS (stop codon excluded, with GTF frame), start_codon and
stop_codon lines in transcript order. ``python tests/brca1_gtf.py > kegg_data/data/brca1_NM_007294_grch38.gtf``
regenerates the shipped file; a test checks they are equal.
"""

from __future__ import annotations

import sys
from pathlib import Path

TSV = Path(__file__).resolve().parent / "data" / "brca1_NM_007294_exons_grch38.tsv"
CDS_START, STOP_LOW = 43124096, 43045678  # c.1 and the last (genomic lowest) base of the TGA stop codon


def build(tsv: Path = TSV) -> str:
    rows = [line.split("\t") for line in tsv.read_text().splitlines() if line and not line.startswith(("#", "chrom"))]
    exons = [(int(r[1]), int(r[2]), int(r[4])) for r in rows]  # already in transcript order (minus strand)
    attrs = ('gene_id "BRCA1"; transcript_id "NM_007294.3"; gene_name "BRCA1"; transcript_type "protein_coding"; '
             'tag "basic";')
    out = ["##description: BRCA1 transcript NM_007294 on GRCh38 (exon table of BRCA Exchange); see PROVENANCE.md",
           "##format: gtf",
           "\t".join(["chr17", "BRCA_Exchange", "transcript", str(exons[-1][0]), str(exons[0][1]), ".", "-", ".",
                      attrs])]
    coding_done = 0  # CDS bases (stop codon excluded) before the current exon, for the frame column
    for rank, (start, end, number) in enumerate(exons, 1):
        ex_attrs = f'{attrs} exon_number {rank}; exon_name "{number}";'
        out.append("\t".join(["chr17", "BRCA_Exchange", "exon", str(start), str(end), ".", "-", ".", ex_attrs]))
        lo, hi = max(start, STOP_LOW + 3), min(end, CDS_START)
        if lo <= hi:
            frame = (3 - coding_done % 3) % 3
            out.append("\t".join(["chr17", "BRCA_Exchange", "CDS", str(lo), str(hi), ".", "-", str(frame),
                                  ex_attrs]))
            coding_done += hi - lo + 1
        if start <= CDS_START <= end:
            out.append("\t".join(["chr17", "BRCA_Exchange", "start_codon", str(CDS_START - 2), str(CDS_START), ".",
                                  "-", "0", ex_attrs]))
        if start <= STOP_LOW <= end:
            out.append("\t".join(["chr17", "BRCA_Exchange", "stop_codon", str(STOP_LOW), str(STOP_LOW + 2), ".",
                                  "-", "0", ex_attrs]))
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.stdout.write(build())
