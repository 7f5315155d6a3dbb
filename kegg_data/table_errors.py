"""Why a local data file could not be read, as one line naming the file, the line and the fix.

``load_table`` hands local JSONL/JSON/CSV/TSV (each also gzipped)/parquet files to ``datasets.load_dataset``; when
its builder fails (an unquoted delimiter, an empty file, Latin-1 text, a broken JSON line, a file that is not
parquet) it raises ``DatasetGenerationError`` with a traceback and the cause only in a chained exception, whose
position is relative to a parser block. :func:`read_failure` finds the first bad line again by reading the file with
the standard library (``csv`` for field counts, ``json`` per line, a strict UTF-8 decode per line), which knows the
real line number, and returns a ``DatasetValidationError`` that says what is wrong there and how to fix it.
:func:`quiet_datasets_load` silences the ``Failed to read file ...`` line ``datasets`` logs before raising, so the
user sees one message (and, for small local tables, its progress bars). :func:`hub_unreachable` says, before
``datasets`` spends half a minute retrying, that a hub dataset cannot be had here (no network, no cached copy) and
what to pass instead.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
from pathlib import Path

from bioreason.errors import DatasetValidationError
from bioreason.kegg_data.text_files import data_suffix, open_text


LOCAL_COPY = ("pass a local copy as the source instead (eval --source, train data.source=): a JSONL/CSV/parquet "
              "file with the dataset's columns, or a folder of its split files (a hub snapshot, e.g. from `hf "
              "download {name} --repo-type dataset --local-dir DIR` on a machine with a network; a clone of the "
              "bioreason repository has KEGG's train split in examples/kegg)")
QUIET_BELOW_BYTES = 50 * 2 ** 20  # local files smaller than this load in seconds: no progress bars for them


@contextlib.contextmanager
def quiet_datasets_load(files=()):
    """``datasets``' builder logs an error line per failed file before raising; our error replaces it. For local
    ``files`` under ``QUIET_BELOW_BYTES`` in all, its progress bars too ('Generating train split: 903 examples',
    printed on every first load of a small table, whose load takes a second); a large table keeps them."""
    import datasets

    logger = logging.getLogger("datasets")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    bars = datasets.is_progress_bar_enabled()
    if files and sum(Path(f).stat().st_size for f in files) < QUIET_BELOW_BYTES:
        datasets.disable_progress_bars()
    try:
        yield
    finally:
        logger.setLevel(level)
        if bars:
            datasets.enable_progress_bars()


def read_failure(files: list[Path], kind: str, exc: BaseException, delimiter: str = ",") -> DatasetValidationError:
    """The error for ``files`` (all of builder ``kind``: json, csv or parquet) that ``datasets`` failed to read."""
    for path in files:
        problem = _not_utf8(path) if kind != "parquet" else None
        if problem is None:
            problem = {"csv": lambda p: _csv_problem(p, delimiter), "json": _json_problem,
                       "parquet": _parquet_problem}[kind](path)
        if problem:
            return DatasetValidationError(problem)
    cause = _root(exc)
    names = ", ".join(str(p) for p in files)
    return DatasetValidationError(f"{names}: cannot read as {kind}: {type(cause).__name__}: {str(cause)[:300]}")


def _root(exc: BaseException) -> BaseException:
    while exc.__cause__ is not None or (exc.__context__ is not None and not exc.__suppress_context__):
        exc = exc.__cause__ or exc.__context__
    return exc


def _not_utf8(path: Path) -> str | None:
    with open_text(path, binary=True) as fh:
        for n, raw in enumerate(fh, 1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as err:
                bad = raw[err.start:err.start + 1].hex()
                read = f"zcat {path.name} | iconv" if path.suffix.lower() == ".gz" else f"iconv {path.name}"
                return (f"{path}:{n}: not UTF-8 text (byte 0x{bad} at column {err.start + 1}); save the file as "
                        f"UTF-8, e.g. `{read} -f latin1 -t utf-8 > fixed{data_suffix(path)}`")
    return None


def duplicate_columns(path: Path, delimiter: str) -> str | None:
    """A CSV/TSV header naming one column twice (pandas would read the second as ``question.1``, silently)."""
    try:
        with open_text(path, encoding="utf-8-sig", newline="") as fh:
            header = next(csv.reader(fh, delimiter=delimiter), None) or []
    except (OSError, UnicodeDecodeError, csv.Error):
        return None  # the reader's own failure is reported by read_failure
    seen: dict[str, int] = {}
    for i, name in enumerate(h.strip() for h in header):
        if name and name in seen:
            return (f"{path}:1: the header names column {name!r} twice (columns {seen[name] + 1} and {i + 1}); "
                    "rename or remove one, each column needs its own name")
        seen.setdefault(name, i)
    return None


def _csv_problem(path: Path, delimiter: str) -> str | None:
    with open_text(path, encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh, delimiter=delimiter)
        header = next(reader, None)
        if not header or not any(h.strip() for h in header):
            return (f"{path}: the file is empty; a {'TSV' if delimiter == chr(9) else 'CSV'} file needs a header "
                    "line naming its columns (question, answer, reference_sequence, variant_sequence, ...) then "
                    "one row per example")
        try:
            start = reader.line_num + 1
            for row in reader:
                if row and len(row) != len(header) and any("\n" in value for value in row):
                    return (f"{path}:{start}: a quoted value opened on this line runs on to line "  # never closed
                            f"{reader.line_num}; close the quote (\") or remove it")
                if row and len(row) != len(header):
                    sep = "tab" if delimiter == "\t" else f"'{delimiter}'"
                    return (f"{path}:{reader.line_num}: {len(row)} fields where the header has {len(header)} "
                            f"({', '.join(header)}); quote a value that contains a {sep} (\"like, this\") or "
                            "remove the extra field")
                start = reader.line_num + 1
        except csv.Error as err:
            return f"{path}:{reader.line_num}: {err}; close the quoted field or remove the stray quote"
    return None


def _json_problem(path: Path) -> str | None:
    with open_text(path, encoding="utf-8-sig") as fh:
        text = fh.read()
    if not text.strip():
        return f"{path}: the file is empty; give one JSON object per line (JSONL) or a JSON list of objects"
    if data_suffix(path) == ".json" and not _one_object(text.lstrip().split("\n", 1)[0]):
        try:  # one JSON document (a list of objects, or a pretty-printed object), not JSON lines
            json.loads(text)
            return None
        except json.JSONDecodeError as err:
            return f"{path}:{err.lineno}: not valid JSON ({err.msg}, column {err.colno}); fix the JSON there"
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as err:
            return (f"{path}:{n}: not a JSON object ({err.msg}, column {err.colno}); each line of a JSONL file is "
                    "one complete object: {\"question\": ..., \"answer\": ..., ...}")
        if not isinstance(value, dict):
            return f"{path}:{n}: a JSON {type(value).__name__}, not an object; each line must be one {{...}} object"
    return None


def _one_object(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except json.JSONDecodeError:
        return False


def _parquet_problem(path: Path) -> str | None:
    try:
        import pyarrow.parquet as pq

        pq.ParquetFile(path)
    except Exception as err:  # pyarrow raises ArrowInvalid / OSError for a file that is not parquet
        return (f"{path}: not a readable parquet file ({str(err)[:200]}); check that the file is complete, or "
                "give JSONL/CSV with the same columns")
    return None


def hub_cached(name: str) -> bool:
    """Whether ``datasets``' own cache holds something of dataset ``name`` (the hub cache is checked by
    ``hub.hub_unreachable``)."""
    import datasets

    return (Path(datasets.config.HF_DATASETS_CACHE) / name.replace("/", "___")).exists()


def hub_unreachable(name: str) -> str | None:
    """Why hub dataset ``name`` cannot be loaded here (``bioreason.hub.hub_unreachable``: no network, no cached
    copy), with what to pass instead; None when it may be."""
    from bioreason.hub import hub_unreachable as unreachable

    why = None if hub_cached(name) else unreachable(name, "dataset")
    return f"cannot load {name!r} from the Hugging Face Hub: {why}; " + LOCAL_COPY.format(name=name) if why else None


__all__ = ["LOCAL_COPY", "hub_cached", "hub_unreachable", "quiet_datasets_load", "read_failure"]
