"""``bioreason eval``: score a model and baselines on the same items; JSON report, confusion and ROC plots.

The DNA-LLM's prediction is the candidate label with the highest log-likelihood after the prompt (no sampling);
its probability for AUROC is the softmax over candidates. ``--baselines text-only,dna-only`` adds the same LLM
with the DNA as text and no DNA features, and a logistic regression on frozen encoder embeddings (fitted on
``--train-source`` when given, else by k-fold cross-validation on the evaluated items).
"""

from __future__ import annotations

import sys

from bioreason.app.eval_steps import EvalSteps
from bioreason.app.options import (add_answer_tokens_option, add_model_option, model_arg, non_negative_int,
                                   positive_int, quantize_mode)

BASELINES = ("text-only", "dna-only", "annotation-only", "facts-only", "tfidf")


def add_parser(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a model (and baselines) with bootstrap confidence intervals",
                       description=__doc__)
    p.add_argument("--task", required=True,
                   choices=("toy", "kegg", "variant_effect_coding", "variant_effect_non_snv", "user", "vcf",
                            "annotated_vcf"),
                   help="what to evaluate on (vcf / annotated_vcf: a labelled VCF + --fasta)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="task option (YAML value), e.g. --option mode=sequence --option gene=BRCA1 --option strand=-1 "
                        "--option 'split={part: validation}'; annotated_vcf: --option mode=both scores the DNA-LLM "
                        "with annotated and with sequence-only prompts on the same items")
    p.add_argument("--source", default=None, help="dataset file/folder or hub name (default: the task's hub name)")
    p.add_argument("--split", default="test", help="dataset split (default test)")
    p.add_argument("--fasta", default=None, help="reference FASTA for coordinate inputs ('bundled' for chr17)")
    p.add_argument("--label-field", default="LABEL", help="INFO field holding the label (task vcf)")
    p.add_argument("--labels-tsv", default=None, help="TSV chrom,pos,ref,alt,label instead of an INFO field")
    p.add_argument("--limit", type=positive_int, default=None, help="evaluate only the first N items")
    add_model_option(p)
    p.add_argument("--traces", type=traces_arg, default=0, metavar="N|all",
                   help="also generate greedy traces for N items (evenly spaced) or all of them. annotated_vcf: "
                        "report the share whose stated consequence agrees with the true one; kegg: check each "
                        "trace against the gene, the variant and the 37 names, and with 'all' score the answers "
                        "parsed from the generated text as a system of their own (dna-llm-generated: the paper's "
                        "metric), and as another with the traces that named no disease of the set completed by the "
                        "most likely name after them (dna-llm-answered)")
    p.add_argument("--text-model", default=None, type=model_arg, metavar="FOLDER",
                   help="kegg: the LLM-only baseline, a model fine-tuned the same way on the question alone "
                        "(data.mode=none); scored like the DNA-LLM (likelihoods, and generated answers with --traces)")
    p.add_argument("--baselines", default="",
                   help="comma-separated: text-only, dna-only, annotation-only (annotation class -> positive rate), "
                        "facts-only (logistic regression on the facts an annotated prompt states: consequence "
                        "class, BLOSUM62, distance into the intron; fitted on the training blocks), tfidf "
                        "(TF-IDF of the question text + logistic regression: what the question alone decides)")
    p.add_argument("--gtf", default="auto", metavar="FILE|auto|bundled|none",
                   help="annotated_vcf: transcript model that annotates records without CSQ/ANN/CONSEQ (auto: BRCA1 "
                        "with the bundled reference)")
    p.add_argument("--strip-annotation", action="store_true",
                   help="annotated_vcf: ignore the VCF's own annotation, as if the file were bare (every annotated "
                        "prompt then uses the one computed from --gtf)")
    p.add_argument("--train-source", default=None, help="training items for the dna-only baseline (same format)")
    p.add_argument("--positive", default=None, help="positive label for AUROC (binary tasks; default the first)")
    p.add_argument("--bootstrap", type=non_negative_int, default=1000,
                   help="bootstrap resamples for the 95%% CIs (0: no intervals)")
    p.add_argument("--batch-size", type=positive_int, default=8)
    p.add_argument("--max-new-tokens", type=positive_int, default=256, help="cap on each generated trace (default 256)")
    add_answer_tokens_option(p)
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="report folder")
    p.add_argument("--force", action="store_true", help="overwrite an existing report")
    p.add_argument("--resume", action="store_true",
                   help="go on with an interrupted eval into the same -o folder: steps it finished (a system's "
                        "predictions, a model's traces) are reused when the settings and inputs are the same")
    p.set_defaults(handler=run)


def traces_arg(value: str) -> int:
    """``--traces``: a count, or ``all`` (-1)."""
    import argparse

    if value == "all":
        return -1
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is neither a number nor 'all'") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"{value!r}: give a count >= 0 or 'all'")
    return n


def trace_indices(n_items: int, traces: int) -> range:
    """The items ``--traces`` asks for: ``traces`` of them evenly spaced, or all (-1)."""
    n = n_items if traces < 0 else traces
    return range(0, n_items, max(1, n_items // max(1, n)))[:n]


def with_progress(desc: str, total: int, fn):
    """``fn(bar)`` with a progress reporter for ``total`` items (tqdm on a terminal, a line every 30 s in a log):
    scoring 900 KEGG items or generating their traces takes minutes to an hour on a CPU."""
    from bioreason.app.inputs import progress

    bar = progress(total, 0, f"eval: {desc}", "items")
    try:
        return fn(bar)
    finally:
        bar.close()


def kegg_generated(model, proc, exs, labels, system, args, prefix: str = "", mode: str = "dna",
                   store=None, bar=None) -> tuple[dict, dict]:
    """Trace checks for one KEGG model and, when every item got a trace, two systems: the answer parsed from each
    trace (``generated``, the paper's metric) and the same with the traces that named no disease of the set
    completed by the most likely name after them (``answered``)."""
    from bioreason.kegg_evaluation import answered_after_traces, kegg_trace_checks

    checks = kegg_trace_checks(model, proc, exs, labels, system, trace_indices(len(exs), args.traces),
                               batch_size=args.batch_size, prefix=prefix, max_new_tokens=args.max_new_tokens, mode=mode,
                               answer_tokens=args.answer_tokens, store=store, bar=bar)
    print(f"of {checks['n']} traces, {checks['gene']:.3f} name the gene, "
          f"{checks['change'] if checks['change'] is None else round(checks['change'], 3)} state the variant, "
          f"{checks['answer_in_set']:.3f} answer one of the {len(labels)} names; all three {checks['all_three']:.3f} "
          f"({checks['forced']} closed at --max-new-tokens and answered after it: budget forcing)", file=sys.stderr)
    if checks["n"] < len(exs):
        return checks, {}
    by_index = {it["index"]: it["answer"] for it in checks["items"]}
    answered = answered_after_traces(model, proc, exs, checks, labels, system, mode)
    checks["completed"] = sum(a["completed"] for a in answered)
    return checks, {"generated": [{"pred": by_index[i], "probs": None} for i in range(len(exs))],
                    "answered": [{"pred": a["pred"], "probs": a["probs"]} for a in answered]}


def check_model_fits_task(args, pcfg, model) -> None:
    """A trained model is evaluated on the task it was trained for: a KEGG model (37 disease names) on --task kegg
    only, a variant-effect model (LOF/FUNC) not on kegg. The scores would otherwise be a report of nonsense."""
    from bioreason.errors import RecipeError

    name = model or "the default model (brca1-lof-v1)"
    if pcfg.prompt == "kegg" and args.task != "kegg":
        raise RecipeError(f"{name} is a KEGG pathway model (it names one of {len(pcfg.labels)} diseases); evaluate "
                          f"it with --task kegg, or give a variant-effect model for --task {args.task}")
    if args.task == "kegg" and pcfg.prompt == "annotated_variant":
        raise RecipeError(f"{name} was trained on {pcfg.prompt} prompts (labels {', '.join(pcfg.labels)}), not on "
                          "the KEGG task; --task kegg needs a KEGG model, e.g. --model kegg-v1")


def run(args) -> int:
    from bioreason.app.job_state import output_lock

    with output_lock(args.output):  # a second eval into this folder would mix its steps with this one's
        return _evaluate(args)


def _evaluate(args) -> int:
    from bioreason.app.writers import check_outputs
    from bioreason.errors import RecipeError

    baselines = [b.strip() for b in args.baselines.split(",") if b.strip()]
    unknown = [b for b in baselines if b not in BASELINES]
    if unknown:
        raise RecipeError(f"unknown baseline(s) {unknown}; choose from {', '.join(BASELINES)}")
    from pathlib import Path

    check_outputs([Path(args.output) / "report.json"], args.force)
    from bioreason import evaluation as ev
    from bioreason.checkpoints import load_model
    from bioreason.kegg_data.build import build_examples
    from bioreason.kegg_data.tasks import SYSTEM_PROMPT

    import yaml

    options = {}
    for item in args.option:
        if "=" not in item:
            raise RecipeError(f"--option {item!r} is not KEY=VALUE")
        key, val = item.split("=", 1)
        options[key] = yaml.safe_load(val)
    if args.task == "annotated_vcf":
        options = {"gtf": args.gtf, **({"strip": True} if args.strip_annotation else {}), **options}
    from bioreason.predict import PredictConfig, check_batch_fits

    pcfg = PredictConfig.for_model(args.model)  # scored and traced exactly as predict does
    check_model_fits_task(args, pcfg, args.model)
    if args.text_model:
        check_model_fits_task(args, PredictConfig.for_model(args.text_model), args.text_model)
    system = pcfg.system or SYSTEM_PROMPT
    if args.task == "kegg":  # the prompt a KEGG model was trained with (compact genes, stated variant)
        options = {**(pcfg.kegg or {}), **options}
    elif args.task in ("vcf", "user") and pcfg.prompt == "question" and pcfg.window:  # its window (and question)
        options = {"window": pcfg.window, **({"question": pcfg.question} if args.task == "vcf" else {}), **options}
    data = {"task": args.task, "source": args.source, "split": args.split, "fasta": args.fasta,
            "label_field": args.label_field, "labels_tsv": args.labels_tsv, "limit": args.limit, "options": options}
    steps = EvalSteps(args.output, args)  # each finished step kept, so --resume redoes only the unfinished ones
    # auto resolved once (the report names it); a resumed run keeps the interrupted run's choice
    args.quantize = steps.run("quantize", lambda: quantize_mode(args, generates=bool(args.traces),
                                                                prompt_mode=options.get("mode", pcfg.mode)))
    model, proc = load_model(args.model, quantize=args.quantize)
    modes = ["annotated", "sequence"] if args.task == "annotated_vcf" and options.get("mode") == "both" else [None]
    sets = {m: build_examples({**data, "options": {**options, "mode": m}} if m else data, proc.max_nucleotides)
            for m in modes}
    examples, labels = sets[modes[0]]
    check_batch_fits(model, args.batch_size, min(args.batch_size, len(examples)))  # before the first batch
    if any([e.meta.get("variant") for e in exs] != [e.meta.get("variant") for e in examples]
           for exs, _ in sets.values()):
        raise RecipeError("the prompt modes gave different items; report this as a bug")
    labels = list(labels or sorted({e.meta["label"] for e in examples}))
    if args.positive is not None and args.positive not in labels:
        raise RecipeError(f"--positive {args.positive!r} is not one of the labels {labels}")
    positive = args.positive or (labels[0] if len(labels) == 2 else None)
    if args.task == "kegg" and pcfg.prompt == "kegg" and pcfg.labels:
        labels = list(pcfg.labels)  # the model's closed set of disease names (an item outside it is just wrong)
    shown = ", ".join(labels) if len(labels) <= 6 else f"{', '.join(labels[:3])}, ..., {labels[-1]}"
    print(f"evaluating {len(examples):,} items, {len(labels)} labels: {shown}", file=sys.stderr)
    prior = pcfg.label_log_prior
    systems, agreement = {}, {}
    for m, (exs, _) in sets.items():
        name = f"dna-llm-{m}" if m and len(sets) > 1 else "dna-llm"
        systems[name] = steps.run(name, lambda exs=exs, n=name: with_progress(
            f"{n} scoring", len(exs), lambda bar: ev.llm_predictions(
                model, proc, exs, labels, system, "dna", args.batch_size, prior,
                pcfg.decision,  # labels by the model's own decision rule, as predict
                normalise=args.task == "kegg", bar=bar)))  # multi-token disease names
        traced = len(trace_indices(len(exs), args.traces)) if args.traces else 0
        if args.traces and args.task == "kegg":
            agreement[name], generated = steps.run(f"{name}-traces", lambda exs=exs, n=name: with_progress(
                f"{n} traces", traced, lambda bar: kegg_generated(
                    model, proc, exs, labels, system, args, pcfg.trace_prefix, store=steps.chunks(f"{n}-traces"),
                    bar=bar)))
            systems.update({f"{name}-{kind}": preds for kind, preds in generated.items()})
        if args.traces and args.task == "annotated_vcf":
            agreement[name] = steps.run(f"{name}-traces", lambda exs=exs, n=name: with_progress(
                f"{n} traces", traced, lambda bar: ev.consequence_agreement(
                    model, proc, exs, system, trace_indices(len(exs), args.traces), batch_size=args.batch_size,
                    n_boot=args.bootstrap, prefix=pcfg.trace_prefix, answer_tokens=args.answer_tokens,
                    store=steps.chunks(f"{n}-traces"), bar=bar)))
            print(f"{name}: consequence stated correctly in {agreement[name]['share']:.3f} "
                  f"{agreement[name]['ci95']} of {agreement[name]['n']} traces", file=sys.stderr)
    if "text-only" in baselines:  # the sequence-only prompt with its DNA written as text, no DNA features
        text_exs = sets["sequence"][0] if "sequence" in sets else examples
        systems["text-only"] = steps.run("text-only", lambda: with_progress(
            "text-only scoring", len(text_exs), lambda bar: ev.llm_predictions(
                model, proc, text_exs, labels, system, "text", max(1, args.batch_size // 4), prior, bar=bar)))
    if args.text_model:  # the LLM-only baseline fine-tuned on the question alone: same items, same scoring
        tmodel, tproc = load_model(args.text_model, quantize=args.quantize)
        systems["llm-only"] = steps.run("llm-only", lambda: with_progress(
            "llm-only scoring", len(examples), lambda bar: ev.llm_predictions(
                tmodel, tproc, examples, labels, system, "none", args.batch_size, normalise=args.task == "kegg",
                bar=bar)))
        if args.traces and args.task == "kegg":
            agreement["llm-only"], generated = steps.run("llm-only-traces", lambda: with_progress(
                "llm-only traces", len(trace_indices(len(examples), args.traces)), lambda bar: kegg_generated(
                    tmodel, tproc, examples, labels, system, args, mode="none",
                    store=steps.chunks("llm-only-traces"), bar=bar)))
            systems.update({f"llm-only-{kind}": preds for kind, preds in generated.items()})
        del tmodel
    train = None
    holdout = options.get("holdout") or {}
    if args.train_source or (options.get("split") or {}).get("part") == "validation" or holdout.get("part") in \
            ("validation", "seen"):
        # baselines fit on the training part: --train-source, or the other blocks of the same file
        train_opts = {**options, "mode": modes[0]} if modes[0] else dict(options)
        for key in ("split", "holdout"):
            if isinstance(train_opts.get(key), dict):
                train_opts[key] = {**train_opts[key], "part": "train"}
        train = build_examples({**data, "source": args.train_source or args.source, "limit": None,
                                "options": train_opts}, proc.max_nucleotides)[0]
    if "dna-only" in baselines:
        systems["dna-only"] = steps.run("dna-only", lambda: ev.dna_only_predictions(model, proc, examples, labels,
                                                                                   train))
    if "annotation-only" in baselines:
        if not positive or not any(e.meta.get("annotation") for e in examples):
            raise RecipeError("annotation-only needs a binary task whose items carry an annotation class "
                              "(--task annotated_vcf)")
        systems["annotation-only"] = steps.run("annotation-only", lambda: ev.annotation_only_predictions(
            examples, labels, positive, train_examples=train))
    if "tfidf" in baselines:
        systems["tfidf"] = steps.run("tfidf", lambda: ev.tfidf_predictions(examples, labels, train))
    if "facts-only" in baselines:
        if args.task != "annotated_vcf":
            raise RecipeError("facts-only needs --task annotated_vcf (items with consequence, BLOSUM62 and intron "
                              "facts)")
        systems["facts-only"] = steps.run("facts-only", lambda: ev.facts_only_predictions(examples, labels,
                                                                                          train_examples=train))
    report = ev.write_report(args.output, examples, systems, labels, positive,
                             meta={"task": args.task, "source": args.source, "model": args.model or "base",
                                   "split": args.split, "options": options, "quantize": args.quantize,
                                   "traces": {"n": args.traces, "max_new_tokens": args.max_new_tokens,
                                              "answer_tokens": args.answer_tokens} if args.traces else None},
                             n_boot=args.bootstrap,
                             agreement=agreement or None,
                             agreement_key="trace_checks" if args.task == "kegg" else "consequence_agreement")
    steps.finish()

    def ci(m, key):  # " [low, high]" of the 95% bootstrap interval, when there is one
        v = m.get(f"{key}_ci95")
        return f" [{v[0]:.3f}, {v[1]:.3f}]" if v and None not in v else ""

    for name, m in report["systems"].items():
        auc = f", AUROC {m['auroc']:.3f}{ci(m, 'auroc')}" if m.get("auroc") is not None else ""
        top = f", top-3 {m['top3_likelihood']:.3f}" if m.get("top3_likelihood") is not None else ""
        und = m.get("question_undecided")
        und = f", {und['accuracy']:.3f} on the {und['n']} items the question alone does not decide" if und else ""
        print(f"{name}: accuracy {m['accuracy']:.3f}{ci(m, 'accuracy')}, macro-F1 {m['macro_f1']:.3f}"
              f"{ci(m, 'macro_f1')}{auc}{top}{und}")
    print(f"report: {Path(args.output) / 'report.json'}")
    return 0
