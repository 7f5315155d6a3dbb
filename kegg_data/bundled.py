"""Files that ship inside the package: the GRCh38 chr17 reference with BRCA1 (see data/PROVENANCE.md).

``resolve_fasta("bundled")`` gives its path, so recipes, the CLI (``--fasta bundled``) and the demo can use it
without knowing where the package is installed. Any other value is returned unchanged.
"""

from __future__ import annotations

from pathlib import Path

BUNDLED_FASTA = "GRCh38_chr17_BRCA1_Nmasked.fa.gz"


def bundled_fasta() -> Path:
    return Path(__file__).resolve().parent / "data" / BUNDLED_FASTA


def resolve_fasta(value):
    return bundled_fasta() if value in ("bundled", "bundled:chr17") else value
