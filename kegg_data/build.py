"""One entry point from a recipe's ``data`` section to examples: ``build_examples(data_cfg) -> (examples, labels)``.

``labels`` is the closed label set when the task has one (used by correctness rewards and evaluation), else None.
Used by the trainers and by ``bioreason eval``; the task classes, user tables and labelled VCFs do the work.
"""

from __future__ import annotations

from bioreason.errors import RecipeError


WINDOW_OPTIONS = ("window", "ref_check", "max_allele_len", "left_normalise")  # kegg_data.variants.WindowBuilder
TASK_OPTIONS = {  # what data.options (eval's --option) each task reads; anything else is refused
    "toy": (), "variant_effect_coding": ("holdout",), "variant_effect_non_snv": ("holdout",),
    "user": WINDOW_OPTIONS, "vcf": ("question", "info_fields", *WINDOW_OPTIONS),
    "annotated_vcf": ("split", "gtf", "mode", "gene", "strand", "annotated_share", "strip", *WINDOW_OPTIONS),
}


def _option_values() -> dict:
    from bioreason.recipe_values import number, one_of, whole

    return {"window": whole(16), "ref_check": one_of("error", "warn", "skip", "fix"), "max_allele_len": whole(1),
            "left_normalise": one_of(True, False), "strand": one_of(1, -1),
            "mode": one_of("annotated", "sequence", "mixed", "both"), "annotated_share": number(0, 1),
            "strip": one_of(True, False)}


def check_options(task: str, opts: dict, known) -> None:
    """Refuse option keys ``task`` does not read (a typo would otherwise be ignored, or end in a TypeError) and
    values the loaders would reject with a traceback (``mode=foo``, ``window=abc``) or ignore (``strand=2``)."""
    from bioreason.recipe_values import check_value

    unknown = sorted(set(opts) - set(known))
    if unknown:
        takes = ", ".join(known) if known else "no options"
        raise RecipeError(f"data.options {unknown} mean nothing to the {task} task; it takes {takes} (eval: "
                          "--option KEY=VALUE)")
    values = _option_values()
    for key in sorted(set(opts) & set(values)):
        check_value(f"option {key}", opts[key], values[key])


def mapping_option(name: str, value, known: dict):
    """``value`` of the option ``name`` checked: a mapping whose keys are all in ``known`` ({key: what it takes}),
    or None. YAML reads ``{part:validation}`` (no space after the colon) as the key 'part:validation', which would
    otherwise be ignored and the default part used without a word."""
    if value is None:
        return None
    how = "{" + ", ".join(f"{k}: {v}" for k, v in known.items()) + "}"
    if not isinstance(value, dict):
        raise RecipeError(f"option {name}={value!r}: give a mapping {how}")
    unknown = [k for k in value if k not in known]
    if unknown:
        hint = " (YAML needs a space after each colon: {key: value})" if any(":" in str(k) for k in unknown) else ""
        raise RecipeError(f"option {name}: unknown key {unknown[0]!r}{hint}; it takes {how}")
    return value


def skip_summary(task: str, source, skips: list, kept: int) -> str:
    """The warning for records a dataset build skipped (REF mismatch under ref_check=skip, a contig the FASTA lacks,
    no label, ...): how many of how many, then each kind with its count and first record."""
    from bioreason.kegg_data.variants import skip_category

    kinds: dict = {}
    for s in skips:
        kinds.setdefault(skip_category(s.reason), []).append(s)
    lines = [f"data.task={task}: {len(skips):,} of {len(skips) + kept:,} records of {source} skipped, "
             f"{kept:,} became examples:"]
    lines += [f"  {len(group):,} x {kind} (first: {group[0].chrom}:{group[0].pos} {group[0].ref}>{group[0].alt}: "
              f"{group[0].reason})" for kind, group in sorted(kinds.items(), key=lambda kv: -len(kv[1]))]
    return "\n".join(lines)


def build_examples(data: dict, dna_length: int = 1024, skipped: list | None = None):
    """(examples, labels) for a recipe's ``data`` section (eval builds one from its flags). Records that could not
    become examples are warned about (``skip_summary``) and, when ``skipped`` is a list, appended to it (the
    trainers write them to ``OUTPUT/skipped.tsv``)."""
    from bioreason.kegg_data.bundled import resolve_fasta

    data = {**data, "fasta": resolve_fasta(data.get("fasta"))}
    task = data.get("task", "toy")
    limit, skips, built = data.get("limit"), [], None
    if task in TASK_OPTIONS:
        check_options(task, data.get("options") or {}, TASK_OPTIONS[task])
    if task == "toy":
        from bioreason.kegg_data.toy import TOY_LABELS, toy_examples

        examples, labels = toy_examples(n=int(data.get("n") or 64), seed=int(data.get("seed", 0))), list(TOY_LABELS)
    elif task in ("kegg", "variant_effect_coding", "variant_effect_non_snv"):
        from bioreason.kegg_data.tasks import get_task

        opts = dict(data.get("options") or {})
        holdout = mapping_option("holdout", opts.pop("holdout", None), {
            "part": "train|validation|seen", "fraction": 0.15, "seen": 0.08, "seed": 0})
        t = get_task(task, dna_length=dna_length, **(kegg_prompt_options(opts) if task == "kegg" else {}))
        examples, labels = t.load(data.get("source"), data.get("split") or "train"), list(t.labels) or None
        if task == "kegg":  # a closed set: every disease name of the split (37 in train), before any holdout
            labels = sorted({e.meta["label"] for e in examples})
            texts: dict[str, str] = {}  # each name as the data writes it ("alzheimer's disease"), for scoring
            for e in examples:
                texts.setdefault(e.meta["label"], e.answer)
            for e in examples:
                e.meta["label_texts"] = texts  # one dict shared by every example
            from bioreason.kegg_data.tasks import question_answers

            answers = question_answers(examples)
            for e in examples:  # does the pathway question alone decide the answer, across the whole split?
                e.meta["question_decides"] = len(answers[e.meta["group"]]) == 1
        if holdout:
            examples = holdout_part(examples, holdout)
    elif task == "user":
        from bioreason.kegg_data.user_data import load_user_dataset

        if not data.get("source"):
            raise RecipeError("data.task=user needs data.source (a JSONL/CSV/TSV file, plain or .gz, a parquet "
                              "file, or a hub name)")
        examples, skips = load_user_dataset(data["source"], fasta=data.get("fasta"), split=data.get("split"),
                                            max_nucleotides=dna_length, options_as="dataset",
                                            **(data.get("options") or {}))
        labels = sorted({e.meta["label"] for e in examples if e.meta.get("label")}) or None
    elif task == "vcf":
        from bioreason.kegg_data.user_data import examples_from_vcf

        if not data.get("source") or not data.get("fasta"):
            raise RecipeError("data.task=vcf needs data.source (a labelled VCF) and data.fasta (eval: --source, "
                              "--fasta)")
        opts = dict(data.get("options") or {})
        window = opts.pop("window", None) or data.get("window") or dna_length
        examples, skips, _ = examples_from_vcf(data["source"], data["fasta"], label_field=data.get("label_field"),
                                               labels_tsv=data.get("labels_tsv"), window=window,
                                               options_as="dataset", **opts)
        labels = sorted({e.meta["label"] for e in examples})
    elif task == "annotated_vcf":  # labelled VCF with LOF/FUNC/INT labels, fact-only traces, two prompt modes
        from bioreason.kegg_data.annotated_variants import LABELS, block_split, load_annotated

        if not data.get("source") or not data.get("fasta"):
            raise RecipeError("data.task=annotated_vcf needs data.source (a labelled VCF) and data.fasta (eval: "
                              "--source, --fasta)")
        from bioreason.kegg_data.transcripts import resolve_gtf

        opts = dict(data.get("options") or {})
        split = mapping_option("split", opts.pop("split", None), {
            "n_blocks": 5, "val_blocks": [4], "part": "train|validation"})
        if split and split.get("part", "train") not in ("train", "validation"):
            raise RecipeError(f"option split: part {split['part']!r}: use train or validation")
        opts["transcripts"] = resolve_gtf(opts.pop("gtf", "auto"), data["fasta"])  # annotates bare records
        window = opts.pop("window", None) or data.get("window") or dna_length
        examples, skips = load_annotated(data["source"], data["fasta"], label_field=data.get("label_field") or "LABEL",
                                         window=window, options_as="dataset", **opts)
        if split:
            built = len(examples)  # the skip warning counts the whole file's records, not one part's
            train, val = block_split(examples, int(split.get("n_blocks", 5)), tuple(split.get("val_blocks", [4])))
            examples = val if split.get("part") == "validation" else train
        labels = list(LABELS)
    else:
        raise RecipeError(f"unknown data.task {task!r}; use toy, kegg, variant_effect_coding, "
                          "variant_effect_non_snv, user, vcf or annotated_vcf")
    if skips and examples:
        import logging

        logging.getLogger(__name__).warning(skip_summary(task, data.get("source"), skips,
                                                         len(examples) if built is None else built))
    if skipped is not None:
        skipped.extend(skips)
    if limit:
        examples = examples[: int(limit)]
    if not examples:
        first = next(iter(skips), None)
        if first is not None:  # every record was skipped: say why, with the first one, instead of a bare "none"
            raise RecipeError(f"data.task={task} gave no examples: all {len(skips)} records of {data.get('source')} "
                              f"were skipped, e.g. {first.chrom}:{first.pos} {first.ref}>{first.alt}: {first.reason}"
                              + ("; name the INFO field that holds the label (data.label_field, eval's "
                                 "--label-field) or give a labels TSV (data.labels_tsv, --labels-tsv)"
                                 if first.reason.startswith("no label") else ""))
        raise RecipeError(f"data.task={task} gave no examples; check data.source / data.split")
    return examples, labels


def holdout_part(examples: list, holdout: dict) -> list:
    """One part of ``data.options.holdout``: ``validation`` (whole question-text groups, ``fraction`` of the
    records), ``seen`` (``seen`` of the remaining records drawn one by one: their questions stay in training), or
    ``train`` (the rest)."""
    from bioreason.kegg_data.tasks import grouped_split, seen_split

    part, seed = holdout.get("part", "train"), int(holdout.get("seed", 0))
    if part not in ("train", "validation", "seen"):
        raise RecipeError(f"holdout part {part!r}: use train, validation (unseen questions) or seen (held-out "
                          "records of training questions)")
    train, val = grouped_split(examples, float(holdout.get("fraction", 0.15)), seed)
    if part == "validation":
        return val
    train, seen = seen_split(train, float(holdout.get("seen") or 0), seed)
    if part == "seen" and not seen:
        raise RecipeError("holdout part 'seen' is empty: give the holdout a seen fraction, e.g. "
                          "holdout={part: seen, fraction: 0.15, seen: 0.08}")
    return seen if part == "seen" else train


KEGG_PROMPT_OPTIONS = ("compact_genes", "state_variant", "trace_steps", "max_variant_nt", "gene_description")


def kegg_prompt_options(opts: dict) -> dict:
    """The KEGG task's prompt options out of a recipe's ``data.options`` (an unknown key is an error)."""
    check_options("kegg", opts, ("holdout", *KEGG_PROMPT_OPTIONS))
    return {k: opts[k] for k in KEGG_PROMPT_OPTIONS if k in opts}


def task_spec(data: dict, labels: list | None = None, seen: list | None = None,
              label_set: list | None = None, label_texts: dict | None = None,
              answers: list | None = None) -> dict | None:
    """What a trained folder records in ``bioreason_task.json`` so ``predict``/``ask``/``demo`` prompt it the way it
    was trained (read by ``bioreason.predict.PredictConfig.for_model``); None for tasks with no fixed prompt.
    ``labels``/``seen``: the training labels, and as often as training saw them; when they differ (``data.balance``)
    the spec carries the log prior correction ``log(natural rate / seen rate)`` per label. ``label_set``: the task's
    closed answer set (KEGG: every disease name of the split, also those a holdout left out of training);
    ``label_texts``: each label as the data writes it (KEGG's ``alzheimer's disease``), how answers are scored.
    ``answers``: each example's trained answer, in ``labels``' order (``vcf``/``user``: what ``predict`` scores)."""
    if data.get("task") == "kegg":
        from bioreason.kegg_data.tasks import SYSTEM_PROMPT

        return {"labels": sorted(label_set or set(labels or [])), "prompt": "kegg", "system": SYSTEM_PROMPT,
                "window": data.get("window") or 1024, "kegg": kegg_prompt_options(data.get("options") or {}),
                "mode": data.get("mode") or "dna",  # none: an LLM-only model, trained on the question alone
                **({"label_texts": dict(sorted(label_texts.items()))} if label_texts else {})}
    if data.get("task") in ("vcf", "user"):
        return _labelled_variants_spec(data, labels, answers)
    if data.get("task") != "annotated_vcf":
        return None
    import math
    from bioreason.kegg_data.annotated_variants import LABELS, TRACE_PREFIX
    from bioreason.kegg_data.tasks import SYSTEM_PROMPT

    opts = data.get("options") or {}
    spec = {"labels": list(LABELS), "prompt": "annotated_variant", "gene": opts.get("gene"),
            "strand": opts.get("strand"), "system": SYSTEM_PROMPT, "window": data.get("window") or 1024,
            "trace_prefix": TRACE_PREFIX}
    if labels and seen and data.get("balance"):
        spec["label_log_prior"] = {lab: math.log((labels.count(lab) / len(labels)) / (seen.count(lab) / len(seen)))
                                   for lab in LABELS if labels.count(lab) and seen.count(lab)}
    return spec


def _labelled_variants_spec(data: dict, labels: list | None, answers: list | None) -> dict | None:
    """``vcf`` and ``user`` tasks: the answers the model learned to give, as it writes them, so ``predict`` scores
    those and not its default pathogenic/benign; for ``vcf`` also the question template, and for both the window.
    None when they are no label set: under two, a label written two ways, a label column that names something
    other than the answer (``LOF`` for ``loss of function``: the model never wrote ``LOF``), or free text (fewer
    than two examples per answer on average). ``user`` rows bring their own questions: ``predict`` asks its own."""
    from bioreason.answers import normalise_text
    from bioreason.kegg_data.tasks import SYSTEM_PROMPT
    from bioreason.kegg_data.user_data import DEFAULT_QUESTION

    pairs = {(str(lab), str(ans)) for lab, ans in zip(labels or [], answers or []) if lab not in (None, "")}
    texts = sorted({ans for _, ans in pairs})
    one_each = len({lab for lab, _ in pairs}) == len(pairs) == len(texts)
    if (not answers or len(texts) < 2 or not one_each or len(texts) > len(answers) / 2
            or any(normalise_text(lab) != normalise_text(ans) for lab, ans in pairs)):
        return None
    opts = data.get("options") or {}
    spec = {"labels": texts, "prompt": "question", "system": SYSTEM_PROMPT,
            "window": opts.get("window") or data.get("window") or 1024}
    if data.get("task") == "vcf":
        spec["question"] = opts.get("question") or DEFAULT_QUESTION
    return spec
