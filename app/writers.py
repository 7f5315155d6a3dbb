"""Output files written atomically: a temporary sibling, renamed into place when complete.

``AtomicWriter`` is the one way our commands write results: nothing is
overwritten without ``force``, partial files never carry the final name, and
the skip log format (``chrom pos ref alt reason``, tab-separated) is shared by
every command that reads variants.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from bioreason.errors import OutputExistsError

SKIP_HEADER = "chrom\tpos\tref\talt\treason\n"


def check_outputs(paths, force: bool) -> None:
    existing = [str(p) for p in paths if Path(p).exists()]
    if existing and not force:
        raise OutputExistsError(f"output {existing[0]} exists; pass --force to overwrite it "
                                f"(or choose another -o prefix)")


class AtomicWriter:
    """Text file written to ``<path>.tmp-<pid>`` and renamed to ``path`` by ``commit()``."""

    def __init__(self, path, mode: str = "w"):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        self.fh = open(self.tmp, mode)

    def write(self, text) -> None:
        self.fh.write(text)

    def commit(self) -> Path:
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.fh.close()
        os.replace(self.tmp, self.path)
        fsync_dir(self.path.parent)
        return self.path

    def abort(self) -> None:
        if not self.fh.closed:
            self.fh.close()
        self.tmp.unlink(missing_ok=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.commit()
        else:
            self.abort()


def fsync_dir(folder) -> None:
    """Make a rename in ``folder`` durable (POSIX: fsync the directory); a no-op where that is not possible."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def skip_line(skip) -> str:
    return f"{skip.chrom}\t{skip.pos}\t{skip.ref}\t{skip.alt}\t{skip.reason}\n"


def window_record(v) -> dict:
    """A JSON-serialisable description of a variant window pair."""
    return {"chrom": v.chrom, "pos": v.pos, "ref": v.ref, "alt": v.alt, "id": v.id, "contig": v.contig,
            "record": v.record, "allele": v.allele, "kind": v.kind, "window_start0": v.window_start,
            "offset0": v.offset, "flags": list(v.flags), "ref_window": v.ref_window, "alt_window": v.alt_window,
            **({"info": {k: (val if isinstance(val, (int, float, str)) or val is None else str(val))
                         for k, val in v.info.items()}} if v.info else {})}


def dumps(obj) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False) + "\n"
