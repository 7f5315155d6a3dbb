"""Evaluation: predictions of the DNA-LLM and its baselines on the same items, metrics with bootstrap CIs, plots.

Systems: ``dna-llm`` (each candidate label scored by its log-likelihood after the prompt, as ``predict
--score-only`` does; probabilities are the softmax over candidates), ``text-only`` (the same LLM with the DNA
written into the prompt as text and no DNA features), ``dna-only`` (frozen encoder embeddings of the ref/alt
windows, mean and variant-centred pooling, + logistic regression; trained on a given training set or by k-fold
cross-validation on the evaluated items), optional ``annotation-only`` (an annotation class -> the positive rate
among training items with that class) and ``facts-only`` (a logistic regression on exactly the facts an annotated
prompt states: consequence class, BLOSUM62, distance into the intron). Metrics: accuracy, macro-F1, per class, AUROC
for binary tasks (probability of the positive label), each with a seeded bootstrap 95% interval. The report keeps
every per-item prediction, so its numbers can be recomputed from it. The baselines themselves live in
``bioreason.baselines`` (re-exported here).
"""

from __future__ import annotations

import json
import math
import random
import re
from pathlib import Path

from bioreason.baselines import (annotation_only_predictions, dna_features, dna_only_predictions,  # noqa: F401
                                 fact_features, facts_only_predictions, logistic_predictions, tfidf_predictions)
from bioreason.kegg_data.metrics import classification_metrics


def auroc(y: list[int], s: list[float]) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties); NaN without both classes."""
    pos = sum(y)
    neg = len(y) - pos
    if pos == 0 or neg == 0:
        return float("nan")
    order = sorted(range(len(s)), key=lambda i: s[i])
    ranks = [0.0] * len(s)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and s[order[j + 1]] == s[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    rank_pos = sum(r for r, t in zip(ranks, y) if t)
    return (rank_pos - pos * (pos + 1) / 2) / (pos * neg)


def roc_points(y: list[int], s: list[float]):
    pts, P, N = [(0.0, 0.0)], sum(y), len(y) - sum(y)
    tp = fp = 0
    for score, t in sorted(zip(s, y), key=lambda x: -x[0]):
        tp, fp = tp + t, fp + (1 - t)
        pts.append((fp / max(N, 1), tp / max(P, 1)))
    return pts


def bootstrap_indices(n: int, n_boot: int, seed: int = 0):
    """The item indices of each of ``n_boot`` seeded resamples (with replacement) of ``n`` items."""
    rng = random.Random(seed)
    for _ in range(n_boot):
        yield [rng.randrange(n) for _ in range(n)]


def ci95(values) -> list[float] | None:
    """The percentile 95% interval of bootstrap values, or None when there are none."""
    vals = sorted(values)
    return [vals[int(0.025 * (len(vals) - 1))], vals[int(0.975 * (len(vals) - 1))]] if vals else None


def metrics_with_ci(golds, preds, pos_scores, labels, positive=None, n_boot: int = 1000, seed: int = 0) -> dict:
    """Point metrics plus bootstrap 95% intervals (percentile) for accuracy, macro-F1 and AUROC."""
    base = classification_metrics(golds, preds, labels)
    y = [int(g == positive) for g in golds] if positive else None
    if y is not None and pos_scores is not None:
        base["auroc"] = auroc(y, pos_scores)
    boots: dict[str, list[float]] = {"accuracy": [], "macro_f1": [], "auroc": []}
    for idx in bootstrap_indices(len(golds), n_boot, seed):
        g, p = [golds[i] for i in idx], [preds[i] for i in idx]
        m = classification_metrics(g, p, labels)
        boots["accuracy"].append(m["accuracy"])
        boots["macro_f1"].append(m["macro_f1"])
        if "auroc" in base:
            a = auroc([y[i] for i in idx], [pos_scores[i] for i in idx])
            if not math.isnan(a):
                boots["auroc"].append(a)
    for key, vals in boots.items():
        if vals:
            base[f"{key}_ci95"] = ci95(vals)
    base["bootstrap"] = {"resamples": n_boot, "seed": seed}
    return base


def llm_predictions(model, processor, examples, labels, system=None, mode="dna", batch_size: int = 8,
                    log_prior: dict | None = None, decision: dict | None = None, normalise: bool = False, bar=None):
    """[{pred, probs}] from candidate log-likelihoods (mode ``dna``) or the text-only prompt (mode ``text``),
    with the model's label prior correction (``PredictConfig.label_log_prior``) and decision rule
    (``PredictConfig.decision``) as ``predict`` applies them. Each label is scored as the data writes it when the
    examples carry ``meta['label_texts']`` (KEGG: the label ``alzheimer s disease`` is the trained answer
    ``alzheimer's disease``; scoring the normalised form put the possessive names last). ``bar``: a progress
    reporter (``update(n)``) told of each scored batch."""
    import torch

    from bioreason.predict import decide, with_log_prior
    from bioreason.rl import PrefixCache, score_candidates

    out, shared = [], PrefixCache()  # the weights are fixed here: the template prefix is computed once
    texts = (examples[0].meta.get("label_texts") or {}) if examples else {}
    candidates = [texts.get(lab, lab) for lab in labels]
    for i in range(0, len(examples), batch_size):
        chunk = examples[i:i + batch_size]
        prompts = [e.to_messages(system, mode, with_answer=False) for e in chunk]
        scores = score_candidates(model, processor, prompts, candidates, normalise=normalise,
                                  prefix_cache=shared)  # (B, K)
        probs = torch.softmax(with_log_prior(scores, list(labels), log_prior), dim=1)
        for row in probs.tolist():
            p = {lab: v for lab, v in zip(labels, row)}
            out.append({"pred": decide(p, decision)[0], "probs": p})
        if bar is not None:
            bar.update(len(chunk))
    return out


_STATED = re.compile(r"The consequence is ([^.\n]+)\.")


def stated_consequence(trace: str | None) -> str | None:
    """The consequence a trace states (its last 'The consequence is X.' sentence), normalised; None if absent."""
    found = _STATED.findall(trace or "")
    return normalise_consequence(found[-1]) if found else None


def normalise_consequence(name: str | None) -> str | None:
    return " ".join(str(name).replace("_", " ").lower().split()) if name else None


def greedy_traces(model, processor, examples, system=None, indices=None, max_new_tokens: int = 160,
                  batch_size: int = 8, prefix: str = "", mode: str = "dna", answer_tokens: int = 0, store=None,
                  bar=None):
    """(index, example, trace, forced) for ``examples[indices]``: greedy traces generated in batches, started with
    ``prefix`` as ``predict --traces`` starts them; ``mode`` as ``Example.to_messages`` takes it;
    ``answer_tokens``: budget forcing at ``max_new_tokens`` (``sampling.sample_groups``). ``store``: where each
    finished chunk of ``4 x batch_size`` prompts is kept and found again (``get``/``put``, e.g. ``eval``'s
    ``ChunkStore``); chunks are cut at the same places on a rerun, so reused and new traces are the ones an
    uninterrupted run gives. ``bar``: a progress reporter (``update(n)``) told of each finished chunk."""
    import torch

    from bioreason.drafting import NgramDrafter
    from bioreason.rl import PrefixCache
    from bioreason.sampling import sample_groups

    indices = list(range(len(examples))) if indices is None else list(indices)
    shared, drafter = PrefixCache(), NgramDrafter()  # later chunks draft from earlier chunks' traces
    queued = 4 * batch_size  # per call: batch_size rows decode at once, a finished row takes the next prompt
    for k in range(0, len(indices), queued):
        chunk = [examples[i] for i in indices[k:k + queued]]
        key, expect = f"{k:07d}", indices[k:k + queued]
        kept = store.get(key, expect) if store is not None else None
        if kept is None:
            prompts = [e.to_messages(system, mode, with_answer=False) for e in chunk]
            with torch.inference_mode():
                s = sample_groups(model, processor, prompts, 1, max_new_tokens, do_sample=False, prefix=prefix,
                                  prefix_cache=shared, slots=batch_size, answer_tokens=answer_tokens,
                                  drafter=drafter)
            kept = {"texts": list(s.texts), "forced": [bool(f) for f in s.forced]}
            if store is not None:
                store.put(key, kept, expect)
        if bar is not None:
            bar.update(len(chunk))
        yield from zip(indices[k:k + queued], chunk, kept["texts"], kept["forced"])


def consequence_agreement(model, processor, examples, system=None, indices=None, max_new_tokens: int = 160,
                          batch_size: int = 8, n_boot: int = 1000, prefix: str = "", answer_tokens: int = 0,
                          store=None, bar=None) -> dict:
    """Greedy traces for ``examples[indices]`` (``greedy_traces``); the share whose stated consequence equals the
    true one (``meta['annotation']``), with a bootstrap 95% interval, and every trace."""
    items = []
    for i, e, text, forced in greedy_traces(model, processor, examples, system, indices, max_new_tokens, batch_size,
                                            prefix, answer_tokens=answer_tokens, store=store, bar=bar):
        true, stated = normalise_consequence(e.meta.get("annotation")), stated_consequence(text)
        items.append({"index": i, "true": true, "stated": stated, "agree": stated == true, "trace": text,
                      "forced": forced})
    trues = [it["true"] or "<none>" for it in items]
    m = metrics_with_ci(trues, [it["stated"] or "<none>" for it in items], None, sorted(set(trues)), None, n_boot)
    return {"share": m["accuracy"], "ci95": m.get("accuracy_ci95"), "n": len(items), "items": items}


def topk_accuracy(golds, systems_preds, k: int) -> float:
    """Share of items whose gold label is among the ``k`` most probable."""
    hits = [g in sorted(p["probs"], key=p["probs"].get, reverse=True)[:k] for g, p in zip(golds, systems_preds)]
    return sum(hits) / len(hits) if hits else float("nan")


def plot_confusion(path, golds, preds, labels, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = list(labels) + (["<none>"] if any(p is None for p in preds) else [])
    mat = [[sum(g == a and (p if p is not None else "<none>") == b for g, p in zip(golds, preds)) for b in cols]
           for a in labels]
    big = len(cols) > 10  # KEGG's 37 diseases: smaller cells and type, empty cells left blank (a ~150 KB file)
    cell, fs = (0.3, 6) if big else (0.9, 10)
    margin = (3.5, 3.0) if big else (1.2, 1.0)  # room for the names
    fig, ax = plt.subplots(figsize=(margin[0] + cell * len(cols), margin[1] + cell * len(labels)))
    ax.imshow(mat, cmap="Blues")
    for i, row in enumerate(mat):
        for j, v in enumerate(row):
            if v or not big:
                ax.text(j, i, str(v), ha="center", va="center", fontsize=fs)
    ax.set_xticks(range(len(cols)), cols, rotation=90 if big else 30, fontsize=fs)
    ax.set_yticks(range(len(labels)), labels, fontsize=fs)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_roc(path, curves: dict, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.6, 4.4))
    for name, (pts, area) in curves.items():
        ax.plot([p[0] for p in pts], [p[1] for p in pts], label=f"{name} (AUROC {area:.3f})")
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def choose_threshold(golds, pos_scores, positive, step: float = 0.001) -> dict:
    """The decision rule a model folder can ship: the probability of ``positive``, rounded down to ``step``, that
    maximises the positive label's F1 on these items; with its precision and recall here."""
    ys = [int(g == positive) for g in golds]
    best = None
    for t in sorted(set(pos_scores)):
        tp = sum(1 for y, s in zip(ys, pos_scores) if y and s >= t)
        fp = sum(1 for y, s in zip(ys, pos_scores) if not y and s >= t)
        f1 = 2 * tp / (2 * tp + fp + (sum(ys) - tp)) if tp else 0.0
        if best is None or f1 > best[0]:
            best = (f1, t)
    threshold = math.floor(best[1] / step) * step if best else 0.5
    tp = sum(1 for y, s in zip(ys, pos_scores) if y and s >= threshold)
    called = sum(1 for s in pos_scores if s >= threshold)
    return {"positive": positive, "threshold": round(threshold, 6), "rule": "maximum F1 of the positive label, "
            f"rounded down to {step}", "precision": tp / called if called else None,
            "recall": tp / sum(ys) if sum(ys) else None, "n": len(ys), "n_positive": sum(ys)}


def write_report(out_dir, examples, systems: dict, labels, positive=None, meta: dict | None = None,
                 n_boot: int = 1000, agreement: dict | None = None,
                 agreement_key: str = "consequence_agreement") -> dict:
    """Metrics with CIs per system, per-item predictions, confusion and ROC PNGs, ``report.json``.
    ``agreement``: {system: consequence_agreement(...)} stored under ``consequence_agreement``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    golds = [e.meta["label"] for e in examples]
    report = {"meta": meta or {}, "labels": list(labels), "positive": positive, "n": len(examples), "systems": {}}
    curves = {}
    for name, preds in systems.items():
        pos_scores = [p["probs"].get(positive) for p in preds] if positive and all(p["probs"] for p in preds) else None
        m = metrics_with_ci(golds, [p["pred"] for p in preds], pos_scores, list(labels), positive, n_boot)
        if positive and len(labels) == 2:
            m["threshold_max_f1"] = choose_threshold(golds, pos_scores, positive)
        undecided = [i for i, e in enumerate(examples) if e.meta.get("question_decides") is False]
        if undecided:  # KEGG: items whose pathway question has several answers in the split (the variant decides)
            m["question_undecided"] = {"n": len(undecided), "accuracy": sum(
                preds[i]["pred"] == golds[i] for i in undecided) / len(undecided)}
        if len(labels) > 3 and all(p["probs"] for p in preds):  # KEGG's diseases: gold among the k most probable?
            m["top1_likelihood"], m["top3_likelihood"] = (topk_accuracy(golds, preds, k) for k in (1, 3))
        report["systems"][name] = m
        plot_confusion(out / f"confusion_{name}.png", golds, [p["pred"] for p in preds], labels, name)
        if positive and "auroc" in m and not math.isnan(m["auroc"]):
            curves[name] = (roc_points([int(g == positive) for g in golds], pos_scores), m["auroc"])
    if curves:
        plot_roc(out / "roc.png", curves, f"{positive} vs rest, n={len(examples)}")
    report["items"] = [{"index": i, "gold": g, "meta": {k: v for k, v in e.meta.items() if isinstance(
        v, (str, int, float)) or v is None}, **{name: preds[i] for name, preds in systems.items()}}
        for i, (e, g) in enumerate(zip(examples, golds))]
    if agreement:
        report[agreement_key] = agreement
    from bioreason.atomic import AtomicFile

    with AtomicFile(out / "report.json") as fh:  # a reader (or a resumed run) never sees half a report
        fh.write(json.dumps(report, indent=1, default=str))
    return report
