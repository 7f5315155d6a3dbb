"""Output files written atomically: a temporary sibling, renamed into place when complete.

``AtomicWriter`` is the one way our commands write results: nothing is
overwritten without ``force``, partial files never carry the final name, and
the skip log format (``chrom pos ref alt reason``, tab-separated) is shared by
every command that reads variants.
"""

from __future__ import annotations

import json
from pathlib import Path

from bioreason.atomic import AtomicFile as AtomicWriter, fsync_dir  # noqa: F401 (the commands' names for them)
from bioreason.errors import OutputExistsError
from bioreason.kegg_data.variants import SKIP_HEADER, skip_line  # noqa: F401 (shared with training's skipped.tsv)


def check_outputs(paths, force: bool) -> None:
    existing = [str(p) for p in paths if Path(p).exists()]
    if existing and not force:
        raise OutputExistsError(f"output {existing[0]} exists; pass --force to overwrite it "
                                f"(or choose another -o prefix)")


def window_record(v) -> dict:
    """A JSON-serialisable description of a variant window pair."""
    return {"chrom": v.chrom, "pos": v.pos, "ref": v.ref, "alt": v.alt, "id": v.id, "contig": v.contig,
            "record": v.record, "allele": v.allele, "kind": v.kind, "window_start0": v.window_start,
            "offset0": v.offset, "flags": list(v.flags), "ref_window": v.ref_window, "alt_window": v.alt_window,
            **({"info": {k: (val if isinstance(val, (int, float, str)) or val is None else str(val))
                         for k, val in v.info.items()}} if v.info else {})}


def dumps(obj) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False) + "\n"
