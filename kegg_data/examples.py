"""``Example``: the unit every data source produces and every consumer (processor, trainer, CLI) takes.

A question, the DNA sequences it refers to (in order), the expected answer and
optional reasoning, plus free-form ``meta`` (task, label, variant key, ...).
``to_messages`` renders the chat in BioReason's format: a user turn with the
DNA parts then the question; the assistant target is ``<think>\\n...\\n</think>``
then ``Answer: ...``. In ``text`` mode (the text-only baseline) the DNA is
written into the question instead, as BioReason's ``--model_type llm`` does;
in ``none`` mode the question goes alone (an LLM-only baseline without the DNA).
Also ``load_table``: the one way files and hub datasets are read (``datasets``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from bioreason.errors import DatasetValidationError, MissingDependencyError
from bioreason.kegg_data.text_files import data_suffix


@dataclass
class Example:
    question: str
    dna: list[str]
    answer: str | None = None
    reasoning: str | None = None
    meta: dict = field(default_factory=dict)

    def target(self, reasoning: bool = True) -> str | None:
        """The assistant's text: ``<think>`` reasoning ``</think>`` then ``Answer: ...``.

        Without reasoning (none given, or ``reasoning=False``) the think block is empty, the form that
        ``predict --score-only`` scores answers after (``bioreason.rl.SCORE_PREFIX``).
        """
        if self.answer is None:
            return None
        body = self.reasoning.strip() if (reasoning and self.reasoning) else ""
        return f"<think>\n{body}\n</think>\n\nAnswer: {self.answer.strip()}"

    def to_messages(self, system: str | None = None, mode: str = "dna", with_answer: bool = True,
                    reasoning: bool = True) -> list[dict]:
        """Chat messages. ``mode``: ``dna`` (sequences as DNA parts), ``text`` (sequences written as text) or
        ``none`` (the question alone)."""
        if mode == "dna":
            parts = [{"type": "dna", "sequence": s} for s in self.dna] + [{"type": "text", "text": self.question}]
        elif mode == "text":
            names = ["Reference sequence", "Variant sequence"] if len(self.dna) == 2 else [
                f"Sequence {i + 1}" for i in range(len(self.dna))]
            lines = [f"{n}: {s}" for n, s in zip(names, self.dna)]
            parts = [{"type": "text", "text": "\n".join(lines + [f"Question: {self.question}"])}]
        elif mode == "none":
            parts = [{"type": "text", "text": self.question}]
        else:
            raise ValueError(f"mode must be 'dna', 'text' or 'none', not {mode!r}")
        msgs = [{"role": "system", "content": system}] if system else []
        msgs.append({"role": "user", "content": parts})
        if with_answer and self.answer is not None:
            msgs.append({"role": "assistant", "content": self.target(reasoning)})
        return msgs


def center_crop(seq: str, length: int, center: int | None = None) -> str:
    """``length`` nt of ``seq`` centred on 0-based ``center`` (default: the middle); N-padded at the edges."""
    if len(seq) <= length and center is None:
        return seq
    center = len(seq) // 2 if center is None else center
    start = center - length // 2
    left = "N" * max(0, -start)
    body = seq[max(0, start):start + length]
    return (left + body + "N" * length)[:length]


def load_table(source: str, split: str | None = None):
    """A ``datasets.Dataset`` from a local JSONL/JSON/CSV/TSV (each plain or ``.gz``)/parquet file (or folder), or a
    hub name.

    Local files: the builder is chosen from the extension. A folder may hold hub-style split files
    (``train-00000-of-00001.parquet``, ``val.jsonl``...) or be a hub snapshot root with them under ``data/``;
    ``split`` picks that split's files (a split the folder does not have is an error listing the ones it has);
    files that are not data (``.gitattributes``, ``README.md``) are ignored. Anything else is passed to
    ``datasets.load_dataset(source, split=split)`` (needs network).
    """
    try:
        import datasets
    except ImportError as exc:
        raise MissingDependencyError("loading datasets needs `pip install bioreason[train]`") from exc
    path = Path(source)
    kinds = {".jsonl": "json", ".json": "json", ".csv": "csv", ".tsv": "csv", ".parquet": "parquet"}
    if path.exists():
        files = [path]
        if path.is_dir():
            folder = path / "data" if (path / "data").is_dir() else path  # a hub snapshot keeps them in data/
            files = sorted(p for p in folder.iterdir() if p.is_file() and data_suffix(p) in kinds
                           and not p.name.startswith("."))
            if not files:
                raise DatasetValidationError(f"{source}: no .jsonl, .json, .csv, .tsv or .parquet files in {folder}")
            if split:
                by_split = {}
                for p in files:
                    by_split.setdefault(re.split(r"[-.]", p.name, maxsplit=1)[0], []).append(p)
                if split not in by_split and set(by_split) & {"train", "test", "val", "validation", "dev"}:
                    raise DatasetValidationError(f"{source}: no '{split}' split in {folder}; it has "
                                                 f"{', '.join(sorted(by_split))}")
                files = by_split.get(split, files)
        exts = {data_suffix(p) for p in files}
        builder = {kinds.get(e) for e in exts}
        if len(builder) > 1 and None not in builder:  # a folder of tables in several formats: one is meant
            raise DatasetValidationError(
                f"{source}: the folder holds tables in several formats ({', '.join(sorted(exts))}); give one file, "
                "or a folder of one format (its files are read together as one table)")
        if len(builder) != 1 or None in builder:
            vcf = any(p.name.lower().endswith((".vcf", ".vcf.gz", ".bcf")) for p in files)
            raise DatasetValidationError(
                f"{source}: cannot tell the file format from {sorted(exts)}; use .jsonl, .csv, .tsv (each also .gz) "
                "or .parquet"
                + ("; a labelled VCF is read by the vcf and annotated_vcf tasks, with a FASTA" if vcf else ""))
        kind = builder.pop()
        kw = {"delimiter": "\t"} if exts == {".tsv"} else {}
        from bioreason.kegg_data.table_errors import duplicate_columns, quiet_datasets_load, read_failure

        for p in files if kind == "csv" else []:
            problem = duplicate_columns(p, kw.get("delimiter", ","))
            if problem:
                raise DatasetValidationError(problem)
        try:
            with quiet_datasets_load(files):
                return datasets.load_dataset(kind, data_files=[str(p) for p in files], split="train", **kw)
        except Exception as exc:  # a malformed file: say where and how to fix it, not datasets' traceback
            raise read_failure(files, kind, exc, kw.get("delimiter", ",")) from exc
    if source.startswith((".", "/", "~")) or data_suffix(source) in kinds:
        raise DatasetValidationError(f"dataset file {source} does not exist")
    from bioreason.kegg_data.table_errors import LOCAL_COPY, hub_unreachable

    offline = hub_unreachable(source)
    if offline:
        raise DatasetValidationError(offline)
    try:
        return datasets.load_dataset(source, split=split or "train")
    except Exception as exc:  # offline, unknown name, missing split: one clear message instead of a traceback
        raise DatasetValidationError(
            f"cannot load {source!r} (split {split or 'train'}) with datasets.load_dataset: {type(exc).__name__}: "
            f"{str(exc)[:300]}; check the name, the split and the network, or "
            + LOCAL_COPY.format(name=source)) from exc
