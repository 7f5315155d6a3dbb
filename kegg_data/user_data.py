"""Users' own genomic datasets -> validated ``Example`` lists; and labelled VCFs -> examples.

Table format (JSONL, CSV/TSV or parquet; or any ``datasets`` hub name), one row per example:

| column | required | meaning |
|---|---|---|
| ``question`` | yes | the question text |
| ``answer`` | for training | the expected final answer (e.g. ``pathogenic``) |
| ``reasoning`` | no | a reasoning trace put inside ``<think>`` in the SFT target |
| ``label`` | no | the class used by evaluation (default: the answer, normalised) |
| DNA, either ``reference_sequence`` + ``variant_sequence`` | one of the three | sequences as text |
| or ``sequences`` | | a list of sequences (in CSV: separated by ``|``) |
| or ``chrom``, ``pos``, ``ref``, ``alt`` | | a variant (1-based POS) cut from ``--fasta`` into ref/alt windows |

Validation names the file, line, row and column of the first bad value, and the fix.
A labelled VCF becomes examples through ``examples_from_vcf``: the label is an
INFO field (``--label-field``) or comes from a TSV with columns
``chrom, pos, ref, alt, label``; variants without a label are skipped with that reason.
"""

from __future__ import annotations

import csv
from pathlib import Path

from bioreason.answers import normalise_text
from bioreason.dna_encoders.base import clean_sequence
from bioreason.errors import DatasetValidationError, InvalidSequenceError
from bioreason.kegg_data.examples import Example, load_table
from bioreason.kegg_data.reference import prompt_chrom
from bioreason.kegg_data.text_files import data_suffix
from bioreason.kegg_data.variants import Skip, Variant, WindowBuilder
from bioreason.kegg_data.vcf_reader import VariantReader

DEFAULT_QUESTION = ("Variant {chrom}:{pos} {ref}>{alt}{gene}. The first DNA sequence is the reference window and "
                    "the second carries the variant at position {offset}. What is the effect of this variant?")


def variant_question(v: Variant, template: str = DEFAULT_QUESTION, gene: str | None = None) -> str:
    """The question for a variant window pair (``offset`` is 1-based, as a person reads it; the chromosome as
    ``reference.prompt_chrom`` states it)."""
    return template.format(chrom=prompt_chrom(v.chrom), pos=v.pos, ref=v.ref, alt=v.alt,
                           gene=f" in {gene}" if gene else "", offset=v.offset + 1, kind=v.kind)


def _where(source: str, row: int, is_csv: bool) -> str:
    path = Path(source)
    if path.is_file():
        line = row + 2 if is_csv else row + 1  # CSV has a header line; JSONL is one row per line
        return f"{path}:{line} (row {row + 1})"
    return f"{source} row {row + 1}"


def load_user_dataset(source: str, fasta=None, split: str | None = None, require_answer: bool = True,
                      max_nucleotides: int = 1024, **window_options) -> tuple[list[Example], list[Skip]]:
    """Read and validate a user table. Rows given as coordinates need ``fasta``; their skips are returned."""
    table = load_table(source, split)
    cols = set(table.column_names)
    is_csv = data_suffix(source) in (".csv", ".tsv")  # also gzipped: line numbers count the header line
    if "question" not in cols:
        raise DatasetValidationError(f"{source}: no 'question' column (columns: {sorted(cols)}); every row needs one")
    if require_answer and "answer" not in cols:
        raise DatasetValidationError(f"{source}: no 'answer' column; training needs the expected answer per row")
    coords = {"chrom", "pos", "ref", "alt"} <= cols
    pair = {"reference_sequence", "variant_sequence"} <= cols
    if not (coords or pair or "sequences" in cols):
        raise DatasetValidationError(
            f"{source}: no DNA columns; give 'reference_sequence' + 'variant_sequence', or 'sequences', or "
            f"'chrom','pos','ref','alt' with a FASTA (columns found: {sorted(cols)})")
    builder = None
    if coords and not (pair or "sequences" in cols):
        if fasta is None:
            raise DatasetValidationError(f"{source}: rows are given as chrom/pos/ref/alt; pass the reference "
                                         "FASTA to cut their windows (train: data.fasta=FILE; eval: --fasta FILE)")
        builder = WindowBuilder(fasta, window=window_options.pop("window", max_nucleotides), **window_options)
    examples, skips = [], []
    for i, row in enumerate(table):
        where = _where(source, i, is_csv)

        def bad(col, problem, fix):
            raise DatasetValidationError(f"{where}, column {col!r}: {problem}; {fix}")

        question = str(row.get("question") or "").strip()
        if not question:
            bad("question", "empty", "every row needs a question")
        answer = row.get("answer")
        answer = None if answer is None else str(answer).strip()
        if require_answer and not answer:
            bad("answer", "empty", "give the expected answer")
        meta = {"row": i, "label": str(row["label"]).strip() if row.get("label") not in (None, "") else
                (normalise_text(answer) if answer else None)}
        if builder is not None:
            try:
                pos = int(row["pos"])
            except (TypeError, ValueError):
                bad("pos", f"{row['pos']!r} is not an integer", "use the 1-based VCF position")
            (out,) = builder.build(str(row["chrom"]), pos, str(row["ref"]), [str(row["alt"])], rec_i=i,
                                   where=lambda _i: where)
            if isinstance(out, Skip):
                skips.append(out)
                continue
            dna, meta["variant"] = [out.ref_window, out.alt_window], out.key
        else:
            if "sequences" in cols and row.get("sequences") is not None:
                seqs = row["sequences"]
                names = ["sequences"] * (len(seqs) if isinstance(seqs, list) else len(str(seqs).split("|")))
                seqs = seqs if isinstance(seqs, list) else str(seqs).split("|")
            else:
                seqs = [row.get("reference_sequence"), row.get("variant_sequence")]
                names = ["reference_sequence", "variant_sequence"]
            dna = []
            for col, seq in zip(names, seqs):
                try:
                    seq = clean_sequence(str(seq or ""), name="the sequence")  # bad() names the column
                except InvalidSequenceError as exc:
                    bad(col, str(exc), "use A/C/G/T/N sequences")
                if len(seq) > max_nucleotides:
                    bad(col, f"{len(seq):,} nt, more than the encoder's {max_nucleotides:,}",
                        "cut windows of at most that length around the variant")
                dna.append(seq)
        reasoning = str(row.get("reasoning") or "").strip() or None
        examples.append(Example(question, dna, answer, reasoning, meta))
    return examples, skips


def read_label_tsv(path) -> dict[str, str]:
    """``chrom, pos, ref, alt, label`` (tab-separated, header line) -> {"chrom:pos:ref:alt": label}."""
    out = {}
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh, delimiter="\t")
        need = {"chrom", "pos", "ref", "alt", "label"}
        if not need <= set(reader.fieldnames or []):
            raise DatasetValidationError(f"{path}:1: the header needs columns {sorted(need)}, "
                                         f"found {reader.fieldnames}")
        for line, row in enumerate(reader, start=2):
            try:
                key = f"{row['chrom']}:{int(row['pos'])}:{row['ref'].upper()}:{row['alt'].upper()}"
            except (TypeError, ValueError):
                raise DatasetValidationError(f"{path}:{line}, column 'pos': {row.get('pos')!r} is not an "
                                             "integer; use the 1-based VCF position") from None
            out[key] = row["label"].strip()
    return out


def examples_from_vcf(vcf, fasta, label_field: str | None = "LABEL", labels_tsv=None,
                      question: str = DEFAULT_QUESTION, info_fields=(), **window_options):
    """A labelled VCF -> (examples, skips, stats). Labels from an INFO field or a TSV keyed by variant."""
    table = read_label_tsv(labels_tsv) if labels_tsv else None
    fields = tuple(info_fields) + ((label_field,) if label_field and table is None else ())
    reader = VariantReader(vcf, fasta, info_fields=fields, **window_options)
    examples, skips = [], []
    for item in reader:
        if isinstance(item, Skip):
            skips.append(item)
            continue
        label = table.get(item.key) if table is not None else item.info.get(label_field)
        if label in (None, "", "."):
            reader.stats.windows -= 1  # re-account: this allele ends as a skip, not an example
            reader.stats.skips += 1
            reader.stats.reasons["no label"] = reader.stats.reasons.get("no label", 0) + 1
            skips.append(Skip(item.chrom, item.pos, item.ref, item.alt,
                              f"no label ({'not in ' + str(labels_tsv) if table is not None else 'INFO/' + str(label_field) + ' missing'})",
                              item.record, item.allele))
            continue
        examples.append(Example(variant_question(item, question), [item.ref_window, item.alt_window],
                                answer=str(label), meta={"label": str(label), "variant": item.key,
                                                         "info": item.info, "flags": item.flags}))
    return examples, skips, reader.stats
