"""What a resumable ``predict`` run records and guards: a content fingerprint, keyed progress lines, a lock.

- ``fingerprint(...)``: the settings plus what the inputs *are*, not where they are: size and sha256 of the VCF,
  size, mtime and the index files' sha256 of the FASTA, sha256 of the model folder's weights and task file, of a
  ``--gtf`` file, and the package version. ``--resume`` after any of them but the VCF changed is an error that says
  which.
- Progress files (``PREFIX.progress.rankR.jsonl``): a fingerprint line, then one line per finished batch (its
  number, the results, *each variant's key*, ``chrom:pos:ref:alt``, and the batch's ``batch_digest``: its items'
  indices and every field the model reads); ``finished_batches`` says what a resume may skip. A VCF edited after
  an interruption (a malformed line fixed, records appended, the file renamed or piped in again) resumes too: the
  job recomputes each finished batch's digest from the edited input and keeps only the batches that match
  (``keep_batches``), so a result is reused only for exactly the inputs it was computed from. ``iter_results``
  merges every rank's results in input order without holding them (a key that no longer matches the input is an
  error when the outputs are written).
- ``output_lock(prefix)``: an exclusive lock on ``.PREFIX.lock`` (``bioreason.atomic.locked``), so two runs on one
  output prefix cannot interleave; the kernel releases it when its holder dies.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from bioreason.errors import BioreasonError


class ResumeMismatchError(BioreasonError, ValueError):
    """--resume with settings or inputs that differ from the interrupted run's."""


def sha256(path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def file_facts(path, content: bool = True) -> dict:
    p = Path(path)
    st = p.stat()
    out = {"name": p.name, "size": st.st_size}
    if content:
        out["sha256"] = sha256(p)
    return out


def model_digest(folder: Path) -> str:
    """sha256 over the model folder's weight files and task file (names and contents, sorted)."""
    h = hashlib.sha256()
    for f in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.json")):
        h.update(f.name.encode())
        h.update(sha256(f).encode())
    return h.hexdigest()


def fingerprint(vcf, fasta, model_dir: Path, gtf, settings: dict) -> dict:
    from bioreason import __version__

    fa = Path(fasta)
    fasta_facts = {**file_facts(fa, content=False), "mtime": int(fa.stat().st_mtime),
                   "index": {s: sha256(f"{fa}{s}") for s in (".fai", ".gzi") if Path(f"{fa}{s}").is_file()}}
    gtf_facts = file_facts(gtf) if gtf not in (None, "auto", "bundled", "none") and Path(gtf).is_file() else gtf
    return {"version": __version__, "vcf": file_facts(vcf), "fasta": fasta_facts,
            "model": {"name": model_dir.name, "sha256": model_digest(model_dir)}, "gtf": gtf_facts, **settings}


def progress_path(prefix: str, rank: int) -> Path:
    return Path(f"{prefix}.progress.rank{rank}.jsonl")


def describe_change(old: dict, new: dict) -> str:
    keys = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    return ", ".join(keys) or "nothing"


def recorded_setting(path: Path, key: str):
    """``key`` of the fingerprint a progress file starts with, or None (no file, no such key, unreadable line)."""
    try:
        with open(path, "rb") as fh:
            return (json.loads(fh.readline() or b"{}").get("fingerprint") or {}).get(key)
    except (OSError, ValueError, AttributeError):
        return None


def batch_digest(batch, context) -> str:
    """sha256 of what a batch's results are computed from: each (item index, ``Variant``) with every field (key,
    ID, windows, flags, the INFO values the model reads) and ``context`` (the VCF header's annotation layouts)."""
    import dataclasses

    h = hashlib.sha256(json.dumps(context, sort_keys=True, default=str).encode())
    for i, v in batch:
        h.update(json.dumps([i, dataclasses.asdict(v)], sort_keys=True, default=str).encode())
    return h.hexdigest()


def finished_batches(path: Path, fingerprint: dict) -> tuple[dict[int, str | None], bool]:
    """The finished batches of a progress file ({batch number: its digest, None in a file written before digests})
    and whether the VCF differs from the interrupted run's (the caller then keeps only the batches whose digest
    the edited input reproduces). Any other difference of the fingerprint is an error; a torn last line (a kill
    mid-write) is cut off the file."""
    if not path.is_file():
        return {}, False
    done, good_bytes, vcf_changed = {}, 0, False
    with open(path, "rb") as fh:
        for n, raw in enumerate(fh):
            if not raw.endswith(b"\n"):
                break
            try:
                obj = json.loads(raw)
            except json.JSONDecodeError:
                break
            if n == 0:
                old = obj.get("fingerprint") or {}
                changed = {k for k in set(old) | set(fingerprint) if old.get(k) != fingerprint.get(k)}
                if changed - {"vcf"}:
                    raise ResumeMismatchError(
                        f"{path} was written by a run whose {describe_change(old, fingerprint)} differ(s) from this "
                        "one (inputs are compared by content); rerun with the same inputs and options to --resume, "
                        "or pass --force to start over")
                vcf_changed = bool(changed)
            else:
                done[int(obj["batch"])] = obj.get("digest")
            good_bytes += len(raw)
    with open(path, "r+b") as fh:
        fh.truncate(good_bytes)
    return done, vcf_changed


def keep_batches(path: Path, fingerprint: dict, keep: set[int]) -> None:
    """Rewrite a progress file (atomically) under ``fingerprint`` with the lines of the ``keep`` batches only."""
    from bioreason.app.writers import dumps
    from bioreason.atomic import AtomicFile

    with open(path, "rb") as src, AtomicFile(path, "wb") as out:
        next(src, None)
        out.write(dumps({"fingerprint": fingerprint}).encode())
        for raw in src:
            if int(json.loads(raw)["batch"]) in keep:
                out.write(raw)


def _file_results(path: Path):
    """(item index, result, variant key) of one progress file, in file order (increasing item index)."""
    with open(path, "rb") as fh:
        next(fh, None)  # the fingerprint line
        for n, raw in enumerate(fh, 2):
            obj = json.loads(raw)
            keys = obj.get("keys") or {}
            for k in sorted(obj["results"], key=int):
                yield int(k), obj["results"][k], keys.get(k), f"{path}:{n}"


def iter_results(paths):
    """All ranks' results merged in input order: (item index, result, key); a key that is not the input's
    variant at that index is caught by the output writer."""
    import heapq

    for idx, result, key, _ in heapq.merge(*(_file_results(p) for p in paths if Path(p).is_file()),
                                           key=lambda t: t[0]):
        yield idx, result, key


def output_lock(prefix: str):
    """The lock that keeps a second run off this output prefix (``bioreason.atomic.locked``, not waiting)."""
    from bioreason.atomic import locked

    return locked(Path(prefix), wait=False)
