"""Two systems of ``eval`` reports compared item by item: the paired differences the model cards state.

``eval`` gives each system's metrics with its own bootstrap interval; whether one system beats another on the same
items needs the interval of their difference, resampled in pairs (an item drawn once counts for both systems), which
is much narrower than two overlapping intervals suggest. :func:`compare_reports` takes two ``report.json`` files
(or one, twice) and a system name in each, checks that both hold the same items (count; gold label, variant and
dataset row of every item), and returns accuracy and macro-F1 (AUROC too for a binary task with probabilities) for
each, their difference with a paired percentile-bootstrap 95% interval (1,000 resamples, seed 0, as ``eval``), the
items right in one only, and how many predicted labels agree. ``bioreason compare`` prints it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from bioreason.errors import InputFormatError
from bioreason.evaluation import auroc, bootstrap_indices, ci95


def load_system(spec: str) -> tuple[dict, str, list[dict]]:
    """``PATH[:SYSTEM]`` -> (report, system, per-item predictions). PATH is a report.json or its folder; without
    SYSTEM, the report's only system or its DNA-LLM ('dna-llm', else the first 'dna-llm-*')."""
    path, _, system = spec.rpartition(":") if ":" in spec and not Path(spec).exists() else (spec, "", "")
    p = Path(path)
    p = p / "report.json" if p.is_dir() else p
    if not p.is_file():
        raise InputFormatError(f"{path}: no such report (give an eval output folder or its report.json, "
                               "optionally followed by :SYSTEM)")
    try:
        report = json.loads(p.read_text())
        names = list(report["systems"])
        items = report["items"]
    except (ValueError, KeyError, TypeError) as exc:
        raise InputFormatError(f"{p}: not a bioreason eval report ({exc})") from exc
    if not system:
        dna = [n for n in names if n == "dna-llm"] or [n for n in names if n.startswith("dna-llm")]
        system = names[0] if len(names) == 1 else (dna[0] if dna else "")
        if not system:
            raise InputFormatError(f"{p}: several systems ({', '.join(names)}); name one as {p}:SYSTEM")
    if system not in names:
        raise InputFormatError(f"{p}: no system {system!r}; it has {', '.join(names)}")
    return report, system, [it[system] for it in items]


def _metrics(golds, preds, labels, scores, positive) -> dict:
    from bioreason.kegg_data.metrics import classification_metrics

    m = classification_metrics(golds, preds, labels)
    out = {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"]}
    if scores is not None:
        out["auroc"] = auroc([int(g == positive) for g in golds], scores)
    return out


def compare_reports(spec_a: str, spec_b: str, n_boot: int = 1000, seed: int = 0) -> dict:
    ra, sa, pa = load_system(spec_a)
    rb, sb, pb = load_system(spec_b)
    ga, gb = [it["gold"] for it in ra["items"]], [it["gold"] for it in rb["items"]]
    if len(ga) != len(gb):
        raise InputFormatError(f"the reports hold {len(ga)} and {len(gb)} items: a paired comparison needs the same "
                               "items (the same eval command and options, on the same data)")

    def ident(it):  # the gold label, and the item's identity where the task records one (variant, dataset row)
        meta = it.get("meta") or {}
        return (it["gold"],) + tuple(meta.get(k) for k in ("variant", "row"))

    ia, ib = [ident(it) for it in ra["items"]], [ident(it) for it in rb["items"]]
    differ = [i for i, (x, y) in enumerate(zip(ia, ib)) if x != y]
    if differ:
        raise InputFormatError(f"the reports' items differ (item {differ[0]}: {ia[differ[0]]} vs {ib[differ[0]]}; "
                               f"{len(differ)} of {len(ia)} differ): a paired comparison needs the same items")
    labels = list(ra.get("labels") or sorted(set(ga)))
    positive = ra.get("positive") if len(labels) == 2 else None

    def scores(preds):
        if positive and all((p.get("probs") or {}).get(positive) is not None for p in preds):
            return [p["probs"][positive] for p in preds]
        return None

    ya, yb = [p["pred"] for p in pa], [p["pred"] for p in pb]
    sa_, sb_ = scores(pa), scores(pb)
    if sa_ is None or sb_ is None:
        sa_ = sb_ = None
    ma, mb = _metrics(ga, ya, labels, sa_, positive), _metrics(ga, yb, labels, sb_, positive)
    n = len(ga)
    diffs: dict[str, list[float]] = {k: [] for k in ma}
    for idx in bootstrap_indices(n, n_boot, seed):  # the same resamples as eval's own intervals
        g = [ga[i] for i in idx]
        a = _metrics(g, [ya[i] for i in idx], labels, sa_ and [sa_[i] for i in idx], positive)
        b = _metrics(g, [yb[i] for i in idx], labels, sb_ and [sb_[i] for i in idx], positive)
        for k in diffs:
            if not (math.isnan(a[k]) or math.isnan(b[k])):
                diffs[k].append(a[k] - b[k])
    out = {"a": {"report": spec_a, "system": sa, **ma}, "b": {"report": spec_b, "system": sb, **mb}, "n": n,
           "bootstrap": {"resamples": n_boot, "seed": seed, "paired": True}}
    for k, vals in diffs.items():
        out[f"{k}_difference"] = {"value": ma[k] - mb[k], "ci95": ci95(vals)}
    right_a = [i for i in range(n) if ya[i] == ga[i] and yb[i] != ga[i]]
    right_b = [i for i in range(n) if yb[i] == ga[i] and ya[i] != ga[i]]
    out.update(right_only_a=right_a, right_only_b=right_b, same_label=sum(x == y for x, y in zip(ya, yb)))
    return out


def format_comparison(c: dict) -> str:
    a, b = c["a"], c["b"]
    lines = [f"A: {a['report']} [{a['system']}]", f"B: {b['report']} [{b['system']}]",
             f"{c['n']} items, paired bootstrap ({c['bootstrap']['resamples']} resamples, seed "
             f"{c['bootstrap']['seed']}), 95% interval of A - B:"]
    for k in ("accuracy", "macro_f1", "auroc"):
        if f"{k}_difference" in c:
            d = c[f"{k}_difference"]
            ci = "[{:+.3f}, {:+.3f}]".format(*d["ci95"]) if d["ci95"] else "[no interval]"
            lines.append(f"  {k:<9} A {a[k]:.4f}  B {b[k]:.4f}  A - B {d['value']:+.4f} {ci}")

    def few(ix):
        return ", ".join(map(str, ix[:10])) + (" ..." if len(ix) > 10 else "")

    lines.append(f"  right in A only: {len(c['right_only_a'])} ({few(c['right_only_a']) or '-'}); right in B only: "
                 f"{len(c['right_only_b'])} ({few(c['right_only_b']) or '-'}); same label {c['same_label']}/{c['n']}")
    return "\n".join(lines)
