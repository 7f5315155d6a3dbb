"""Task classes: how each task loads, phrases its prompt, normalises answers and is evaluated.

One class per task, registered by name in ``TASKS``:
- ``kegg``: KEGG pathway reasoning (``wanglab/kegg``): disease name answers, Claude-written reasoning;
- ``variant_effect_coding`` (``wanglab/variant_effect_coding``): pathogenic/benign (+ disease);
- ``variant_effect_non_snv`` (``wanglab/variant_effect_non_snv``): pathogenic/benign for indels and MNVs.
Each loads through ``datasets.load_dataset``: the hub name when online, or local
JSONL/CSV/parquet files with the same columns. Schemas and prompt format follow
BioReason (see the README's "Tasks" section). BioReason's sequences are longer
than our default encoder takes (4,001 nt for KEGG, 4,096 for non-SNV), so each
task crops both sequences to ``dna_length`` nt around the variant, whose 0-based
index in the source sequences is known (2,000 for KEGG, 2,048 for non-SNV, the
middle for coding).
"""

from __future__ import annotations

from bioreason.answers import extract_answer, match_label, normalise_text
from bioreason.errors import DatasetValidationError
from bioreason.kegg_data.examples import Example, center_crop, load_table
from bioreason.kegg_data.metrics import classification_metrics

TASKS: dict[str, type["Task"]] = {}
SYSTEM_PROMPT = ("You are BioReason, an assistant that reasons step by step about DNA variants. "
                 "Think inside <think>...</think>, then give the final answer on a line 'Answer: ...'.")


def register_task(cls):
    TASKS[cls.name] = cls
    return cls


def get_task(name: str, **kw) -> "Task":
    if name not in TASKS:
        raise DatasetValidationError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}")
    return TASKS[name](**kw)


class Task:
    """Base class. Subclasses set ``name``, ``hub_name``, ``columns`` and implement ``to_example``."""

    name = ""
    hub_name = ""
    columns: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()  # empty: open set (answers compared after normalisation)
    variant_index: int | None = None  # 0-based index of the variant in the source sequences

    def __init__(self, dna_length: int = 1024, system: str | None = SYSTEM_PROMPT):
        self.dna_length = dna_length
        self.system = system

    def load(self, source: str | None = None, split: str = "train") -> list[Example]:
        table = load_table(source or self.hub_name, split)
        table = self.rename(table)
        missing = [c for c in self.columns if c not in table.column_names]
        if missing:
            raise DatasetValidationError(
                f"{source or self.hub_name} ({split}) lacks column(s) {missing}; the {self.name} task needs "
                f"{list(self.columns)}")
        return [self.to_example(row, i) for i, row in enumerate(table)]

    def rename(self, table):
        return table

    def crop(self, seq: str) -> str:
        seq = (seq or "").strip().upper()
        return center_crop(seq, self.dna_length, self.variant_index) if len(seq) > self.dna_length else seq

    def to_example(self, row: dict, index: int) -> Example:  # pragma: no cover - abstract
        raise NotImplementedError

    def to_messages(self, example: Example, mode: str = "dna", with_answer: bool = True) -> list[dict]:
        return example.to_messages(self.system, mode, with_answer)

    def normalise_answer(self, text: str | None) -> str | None:
        """A completion or bare answer -> canonical label (closed set) or normalised text (open set)."""
        ans = extract_answer(text) if text and ("Answer" in text or "answer" in text or "</think>" in text) else text
        if ans is None:
            return None
        if self.labels:
            return match_label(ans.split(";")[0], self.labels)
        return normalise_text(ans) or None

    def gold(self, example: Example) -> str:
        return example.meta["label"]

    def evaluate(self, examples: list[Example], completions: list[str]) -> dict:
        golds = [self.gold(e) for e in examples]
        preds = [self.normalise_answer(c) for c in completions]
        return classification_metrics(golds, preds, list(self.labels) or None)


@register_task
class KEGGTask(Task):
    """KEGG disease reasoning. Prompt options (recorded in a trained model's ``bioreason_task.json`` so ``ask``,
    ``eval`` and the demo phrase questions the way it was trained): ``compact_genes`` drops the gene descriptions
    of the 'Genes in the pathway' line (about 40% of the question's tokens); ``state_variant`` adds a line with the
    variant computed from the two sequences (``Variant: C>T``); ``trace_steps`` keeps the first N 'Step' lines of
    the dataset's reasoning, after a first line that restates the variant and the gene (None: the whole text);
    ``max_variant_nt`` states a variant whose trimmed alleles are longer than this (REF + ALT nt) by its size
    (``a 66-nt insertion``) instead of spelling out both alleles (None: always spelt out; a repeat expansion's
    alleles can run to 200 nt, which a prompt line and the trace's first line would each copy);
    ``gene_description`` keeps the description of the gene asked about when ``compact_genes`` drops the others
    (``SNCA (synuclein alpha)``, about 5 tokens) and names it in the trace's first line, so the reasoning step
    that follows reads the gene's product from the prompt instead of inventing one."""

    name = "kegg"
    hub_name = "wanglab/kegg"
    columns = ("question", "answer", "reasoning", "reference_sequence", "variant_sequence")
    variant_index = 2000  # ref = chrom[start-2000 : start+len(REF)+2000]

    def __init__(self, dna_length: int = 1024, system: str | None = SYSTEM_PROMPT, compact_genes: bool = False,
                 state_variant: bool = False, trace_steps: int | None = None, max_variant_nt: int | None = None,
                 gene_description: bool = False):
        super().__init__(dna_length, system)
        self.compact_genes, self.state_variant = bool(compact_genes), bool(state_variant)
        self.gene_description = bool(gene_description)
        self.trace_steps = int(trace_steps) if trace_steps else None
        self.max_variant_nt = int(max_variant_nt) if max_variant_nt else None

    def to_example(self, row, index):
        answer = str(row["answer"]).strip().lower()
        return kegg_example(str(row["question"]), row["reference_sequence"], row["variant_sequence"], answer,
                            str(row.get("reasoning") or ""), self.dna_length, self.compact_genes, self.state_variant,
                            self.trace_steps, meta={"task": self.name, "label": normalise_text(answer), "row": index},
                            max_variant_nt=self.max_variant_nt, gene_description=self.gene_description)


def kegg_example(question: str, ref: str, alt: str, answer: str | None = None, reasoning: str | None = None,
                 dna_length: int = 1024, compact_genes: bool = False, state_variant: bool = False,
                 trace_steps: int | None = None, meta: dict | None = None,
                 max_variant_nt: int | None = None, gene_description: bool = False) -> Example:
    """One KEGG prompt from a question and two sequences, as training built it: both sequences cropped to
    ``dna_length`` nt around the variant (found by :func:`kegg_variant`), the question rewritten as the options say
    (:func:`kegg_question`), the trace cut (:func:`kegg_trace`). Used by the task loader, ``ask`` and the demo."""
    question = question.strip()
    ref, alt = (ref or "").strip().upper(), (alt or "").strip().upper()
    variant = kegg_variant(ref, alt)
    facts = kegg_facts(question, ref, alt, max_variant_nt=max_variant_nt)
    centre = variant[2] if variant else None
    crop = (lambda s: center_crop(s, dna_length, centre)) if max(len(ref), len(alt)) > dna_length else (lambda s: s)
    shown = {**facts, "product": gene_products(question).get(facts["gene"])} if gene_description else facts
    return Example(question=kegg_question(question, shown, compact_genes, state_variant, gene_description),
                   dna=[crop(ref), crop(alt)], answer=answer,
                   reasoning=kegg_trace((reasoning or "").strip() or None, shown, trace_steps, gene_description),
                   meta={**(meta or {}), **facts, "group": question})


@register_task
class VariantEffectCodingTask(Task):
    name = "variant_effect_coding"
    hub_name = "wanglab/variant_effect_coding"
    columns = ("question", "answer", "reference_sequence", "variant_sequence")
    labels = ("pathogenic", "benign")

    def to_example(self, row, index):
        answer = str(row["answer"]).strip()
        label = match_label(answer.split(";")[0], self.labels)
        if label is None:
            raise DatasetValidationError(f"row {index + 1}, column 'answer': {answer[:60]!r} names neither "
                                         "'pathogenic' nor 'benign'")
        return Example(question=str(row["question"]).strip(),
                       dna=[self.crop(row["reference_sequence"]), self.crop(row["variant_sequence"])],
                       answer=answer, reasoning=None, meta={"task": self.name, "label": label, "row": index})


@register_task
class VariantEffectNonSNVTask(VariantEffectCodingTask):
    name = "variant_effect_non_snv"
    hub_name = "wanglab/variant_effect_non_snv"
    variant_index = 2048  # fixed 4,096-nt windows with the variant at 2,048

    def rename(self, table):
        if "mutated_sequence" in table.column_names and "variant_sequence" not in table.column_names:
            table = table.rename_column("mutated_sequence", "variant_sequence")
        return table

    def to_example(self, row, index):
        ex = super().to_example(row, index)
        # BioReason's train-time clean-up of the disease list: drop [ ] ' and turn _ into spaces
        ex.answer = ex.answer.replace("[", "").replace("]", "").replace("'", "").replace("_", " ")
        return ex


def question_group(e: Example) -> str:
    """The dataset's own question text of an example (``meta['group']``, before prompt options rewrote it)."""
    return e.meta.get("group", e.question)


def question_answers(examples: list[Example]) -> dict[str, set]:
    """Each question's answers (``meta['label']``) among ``examples``, by :func:`question_group`: a question with
    more than one answer is one the sequences must decide."""
    answers: dict[str, set] = {}
    for e in examples:
        answers.setdefault(question_group(e), set()).add(e.meta.get("label"))
    return answers


def grouped_split(examples: list[Example], fraction: float = 0.15, seed: int = 0) -> tuple[list, list]:
    """(train, validation) with whole question-text groups on one side: the same KEGG pathway question recurs
    across variants, so a random split would put near-duplicates on both sides. The text is the dataset's own
    question (``meta['group']``), before any prompt option rewrote it (a stated variant would split one pathway
    question into many groups). Groups are ordered by a seeded hash of their text and taken into validation until
    it holds ``fraction`` of the examples."""
    import hashlib

    groups: dict[str, list[int]] = {}
    for i, e in enumerate(examples):
        groups.setdefault(question_group(e), []).append(i)
    order = sorted(groups, key=lambda q: hashlib.sha256(f"{seed}:{q}".encode()).hexdigest())
    val_idx, target = set(), fraction * len(examples)
    for q in order:
        if len(val_idx) >= target:
            break
        val_idx.update(groups[q])
    train = [e for i, e in enumerate(examples) if i not in val_idx]
    return train, [e for i, e in enumerate(examples) if i in val_idx]


def seen_split(examples: list[Example], fraction: float, seed: int = 0) -> tuple[list, list]:
    """(train, seen): up to a ``fraction`` of ``examples`` (the training side of ``grouped_split``) drawn one
    record at a time, each only while another record of its pathway question stays in training. That is what
    BioReason's own random val/test split looks like from the model's side (its 290 items share their questions
    with train), and it measures what ``grouped_split``'s unseen questions cannot: how well the training questions
    were learnt. Records are taken in the order of a seeded hash of their question and sequences, so the draw does
    not follow file order."""
    import hashlib

    def key(e: Example) -> str:
        return hashlib.sha256(f"{seed}:{question_group(e)}:{''.join(e.dna)}".encode()).hexdigest()

    from collections import Counter

    left = Counter(question_group(e) for e in examples)  # records of each question still in training
    pick, target = set(), round(fraction * len(examples))
    for e in sorted(examples, key=key):
        if len(pick) >= target:
            break
        group = question_group(e)
        if left[group] > 1:
            left[group] -= 1
            pick.add(id(e))
    return [e for e in examples if id(e) not in pick], [e for e in examples if id(e) in pick]


def kegg_variant(ref: str, alt: str, index: int = 2000) -> tuple[str, str, int] | None:
    """(REF, ALT, 0-based start) from two sequences built as BioReason's KEGG records are (``index`` nt of flank on
    each side of the VCF alleles, so ``ref = flank5 + REF + flank3``); otherwise :func:`trim_alleles`. None when
    the sequences are equal."""
    ref, alt = (ref or "").upper(), (alt or "").upper()
    if ref == alt:
        return None
    if min(len(ref), len(alt)) > 2 * index and ref[:index] == alt[:index] and ref[-index:] == alt[-index:]:
        return ref[index:len(ref) - index], alt[index:len(alt) - index], index
    return trim_alleles(ref, alt)


def trim_alleles(ref: str, alt: str) -> tuple[str, str, int]:
    """(REF, ALT, 0-based start): the one segment where two different sequences differ, left after trimming their
    common prefix and suffix (the base before it kept as anchor for an insertion or deletion, as VCF does)."""
    i = 0
    while i < min(len(ref), len(alt)) and ref[i] == alt[i]:
        i += 1
    j = 0
    while j < min(len(ref), len(alt)) - i and ref[-1 - j] == alt[-1 - j]:
        j += 1
    r, a = ref[i:len(ref) - j], alt[i:len(alt) - j]
    if (not r or not a) and i:  # an insertion or deletion: keep the base before it, as VCF does
        i -= 1
        r, a = ref[i:len(ref) - j], alt[i:len(alt) - j]
    return r, a, i


def difference_places(ref: str, alt: str) -> list[int]:
    """1-based starts of the separate runs of differing bases of two equal-length sequences (one for a SNV or an
    MNV; two or more when the pair carries several variants, which :func:`trim_alleles` states as one segment from
    the first to the last). Empty for sequences of different lengths (an indel: no alignment is attempted)."""
    ref, alt = (ref or "").upper(), (alt or "").upper()
    if len(ref) != len(alt):
        return []
    return [i + 1 for i, (r, a) in enumerate(zip(ref, alt)) if r != a and (i == 0 or ref[i - 1] == alt[i - 1])]


def variant_text(ref: str, alt: str, max_nt: int | None = None) -> str:
    """``REF>ALT``, or with ``max_nt`` and longer alleles, the variant by its size: the alleles are trimmed of the
    bases they share at either end (:func:`trim_alleles`), then stated as ``a 66-nt insertion``, ``a 10-nt
    deletion`` or ``a 30-nt to 12-nt replacement`` when REF + ALT still exceed ``max_nt``."""
    if not max_nt or len(ref) + len(alt) <= max_nt:
        return f"{ref}>{alt}"
    r, a, _ = trim_alleles(ref, alt)
    if len(r) + len(a) <= max_nt:
        return f"{r}>{a}"
    if len(r) == 1:
        return f"a {len(a) - 1}-nt insertion"
    if len(a) == 1:
        return f"a {len(r) - 1}-nt deletion"
    return f"a {len(r)}-nt to {len(a)}-nt replacement"


def kegg_facts(question: str, ref: str, alt: str, index: int = 2000, max_variant_nt: int | None = None) -> dict:
    """What a KEGG trace can be checked against, computed from the inputs: the network's starred genes, the gene
    the question asks about ('this PDE11A allele'), and the variant (``C>T``, ``AGTTAG>AGTTAGTTAG``; from
    :func:`kegg_variant`; by its size past ``max_variant_nt``, see :func:`variant_text`)."""
    import re

    network = next((line for line in question.splitlines() if line.startswith("Network Definition")), "")
    starred = sorted(set(re.findall(r"([A-Za-z0-9_.-]+)\*", network)))
    asked = re.search(r"this (\S+) allele", question)
    variant = kegg_variant(ref, alt, index)
    return {"starred": ",".join(starred), "gene": asked.group(1) if asked else None,
            "change": variant_text(variant[0], variant[1], max_variant_nt) if variant else None}


GENES_HEAD = "Genes in the pathway:"


def gene_products(question: str) -> dict:
    """{symbol: description} from the question's 'Genes in the pathway: SYMBOL; description | ...' line."""
    line = next((line for line in question.splitlines() if line.startswith(GENES_HEAD)), "")
    pairs = (entry.split(";", 1) for entry in line[len(GENES_HEAD):].split("|"))
    return {p[0].strip(): p[1].strip() for p in pairs if len(p) == 2 and p[0].strip() and p[1].strip()}


def kegg_question(question: str, facts: dict, compact_genes: bool = False, state_variant: bool = False,
                  gene_description: bool = False) -> str:
    """The question as the model sees it (see :class:`KEGGTask` for the options)."""
    lines = question.splitlines()
    keep = facts.get("gene") if gene_description and facts.get("product") else None

    def compact(entry: str) -> str:
        symbol = entry.split(";")[0].strip()
        return f"{symbol} ({facts['product']})" if symbol == keep else symbol

    if compact_genes:
        lines = [GENES_HEAD + " " + ", ".join(compact(g) for g in line[len(GENES_HEAD):].split("|"))
                 if line.startswith(GENES_HEAD) else line for line in lines]
    if state_variant and facts.get("change"):
        lines.insert(0, f"Variant: {facts['change']}")
    return "\n".join(lines)


def kegg_trace(reasoning: str | None, facts: dict, steps: int | None = None,
               gene_description: bool = False) -> str | None:
    """The training trace: the dataset's reasoning, or with ``steps`` a first line stating the variant and gene
    (computed facts; with ``gene_description`` the gene's description too) then the first ``steps`` 'Step' lines
    of the reasoning."""
    if not reasoning or not steps:
        return reasoning
    kept = [line.strip() for line in reasoning.splitlines() if line.strip().startswith("Step")][:steps]
    gene = facts.get("gene") or "the gene asked about"
    if gene_description and facts.get("gene") and facts.get("product"):
        gene = f"{gene} ({facts['product']})"
    head = f"The variant is {facts['change']} in {gene}." if facts.get("change") else ""
    return "\n".join([head, *kept] if head else kept) or reasoning


def check_kegg_trace(trace: str, meta: dict, names) -> dict:
    """The three fact checks of a generated KEGG trace: it names the gene asked about (or a starred network gene),
    it states the base change computed from the two sequences (SNVs), and its final answer is one of ``names``."""
    from bioreason.answers import extract_answer, match_label

    text = trace or ""
    genes = [g for g in [meta.get("gene"), *(meta.get("starred") or "").split(",")] if g]
    change = meta.get("change")
    answer = extract_answer(text)
    return {"gene": any(g in text for g in genes),
            "change": None if not change else change in text,
            "answer_in_set": answer is not None and match_label(answer, list(names)) is not None}
