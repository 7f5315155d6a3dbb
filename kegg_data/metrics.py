"""Classification metrics without heavy dependencies: accuracy, macro-F1, per-class precision/recall/F1.

``None`` predictions (no parsable answer) count as wrong and appear as the
class ``"<none>"`` in the confusion counts but not in macro-F1's class list. Macro-F1 averages over the classes
present in the gold labels or the predictions (scikit-learn's ``f1_score(average="macro")``): a 37-disease label
set evaluated on a split holding 20 of them is not averaged with 17 zeros.
"""

from __future__ import annotations


def classification_metrics(golds: list[str], preds: list[str | None], labels: list[str] | None = None) -> dict:
    if len(golds) != len(preds):
        raise ValueError(f"{len(golds)} gold labels but {len(preds)} predictions")
    labels = list(labels) if labels else sorted(set(golds))
    n = len(golds)
    correct = sum(g == p for g, p in zip(golds, preds))
    per_class, f1s = {}, []
    for lab in labels:
        tp = sum(g == lab and p == lab for g, p in zip(golds, preds))
        fp = sum(g != lab and p == lab for g, p in zip(golds, preds))
        fn = sum(g == lab and p != lab for g, p in zip(golds, preds))
        prec = tp / (tp + fp) if tp + fp else 0.0
        rec = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        per_class[lab] = {"precision": prec, "recall": rec, "f1": f1, "support": tp + fn}
        if tp + fn or tp + fp:  # as scikit-learn: a class neither present nor predicted is not averaged
            f1s.append(f1)
    confusion: dict[str, dict[str, int]] = {}
    for g, p in zip(golds, preds):
        row = confusion.setdefault(g, {})
        key = p if p is not None else "<none>"
        row[key] = row.get(key, 0) + 1
    return {"n": n, "accuracy": correct / n if n else 0.0, "macro_f1": sum(f1s) / len(f1s) if f1s else 0.0,
            "unparsed": sum(p is None for p in preds), "per_class": per_class, "confusion": confusion}
