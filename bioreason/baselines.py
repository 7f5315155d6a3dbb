"""Baselines the DNA-LLM is measured against, on the same items: ``tfidf`` (TF-IDF of the question text + logistic
regression), ``dna-only`` (frozen encoder embeddings of the ref/alt windows, mean and variant-centred pooling, +
logistic regression), ``facts-only`` (a logistic regression on exactly the facts an annotated prompt states) and
``annotation-only`` (an annotation class -> the positive rate among training items of that class). Each is fitted
on the training items when given, else by k-fold cross-validation (leave-one-out for annotation-only) on the
evaluated items, and returns one ``{"pred", "probs"}`` per item, the form ``evaluation.write_report`` takes.
"""

from __future__ import annotations


def dna_features(model, processor, examples, batch_size: int = 16, centre: int = 16):
    """Frozen-encoder features per example: for ref and alt, mean pooling and variant-centred pooling."""
    import torch

    feats = []
    enc = model.dna_encoder
    for i in range(0, len(examples), batch_size):
        chunk = examples[i:i + batch_size]
        seqs = [s for e in chunk for s in e.dna[:2]]
        tok = processor.dna_tokenizer(seqs)
        with torch.no_grad():
            h = enc(tok["input_ids"], tok["attention_mask"]).float()  # (n_seqs, L, H)
        m = tok["attention_mask"].unsqueeze(-1).float()
        mean = (h * m).sum(1) / m.sum(1).clamp(min=1)
        mid = [int(tok["attention_mask"][j].sum()) // 2 for j in range(len(seqs))]
        cen = torch.stack([h[j, max(0, c - centre // 2):c + centre // 2].mean(0) for j, c in enumerate(mid)])
        j = 0
        for e in chunk:
            k = len(e.dna[:2])
            parts = [mean[j], cen[j]]
            if k == 2:  # ref/alt pair: both poolings of both windows and their differences
                parts = [mean[j], mean[j + 1], mean[j + 1] - mean[j], cen[j], cen[j + 1], cen[j + 1] - cen[j]]
            feats.append(torch.cat(parts).tolist())
            j += k
    return feats



def tfidf_predictions(examples, labels, train_examples=None, folds: int = 5, seed: int = 0):
    """A text-only baseline: TF-IDF of the question text (words and bigrams) + logistic regression, fitted on the
    training items (or k-fold cross-validation on ``examples``)."""
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import KFold
    from sklearn.pipeline import make_pipeline

    def fit(exs):
        clf = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True),
                            LogisticRegression(max_iter=3000, C=10.0))
        return clf.fit([e.question for e in exs], [e.meta["label"] for e in exs])

    probs = np.zeros((len(examples), len(labels)))

    def place(clf, rows, exs):
        p = clf.predict_proba([e.question for e in exs])
        for j, cls in enumerate(clf.classes_):
            if cls in labels:
                probs[rows, labels.index(cls)] = p[:, j]

    if train_examples:
        place(fit(train_examples), np.arange(len(examples)), examples)
    else:
        for tr, te in KFold(n_splits=min(folds, len(examples)), shuffle=True, random_state=seed).split(examples):
            place(fit([examples[i] for i in tr]), te, [examples[i] for i in te])
    return [{"pred": labels[int(row.argmax())], "probs": dict(zip(labels, map(float, row)))} for row in probs]


def logistic_predictions(X, examples, labels, Xt=None, train_examples=None, C: float = 0.1, folds: int = 5,
                         seed: int = 0):
    """Standardised logistic regression: fit on (``Xt``, ``train_examples``) or k-fold CV on (``X``, ``examples``)."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X = np.asarray(X, dtype=float)
    y = np.array([labels.index(e.meta["label"]) for e in examples])
    probs = np.zeros((len(examples), len(labels)))

    def fit(Xf, yf):
        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=C)).fit(Xf, yf)

    def place(clf, rows, Xp):
        p = clf.predict_proba(Xp)
        for j, cls in enumerate(clf.classes_):
            probs[rows, cls] = p[:, j]

    if train_examples:
        yt = np.array([labels.index(e.meta["label"]) for e in train_examples])
        place(fit(np.asarray(Xt, dtype=float), yt), np.arange(len(examples)), X)
    else:
        k = max(2, min(folds, int(np.bincount(y).min()) if len(set(y)) > 1 else 2))
        for tr, te in StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(X, y):
            place(fit(X[tr], y[tr]), te, X[te])
    return [{"pred": labels[int(row.argmax())], "probs": dict(zip(labels, map(float, row)))} for row in probs]


def dna_only_predictions(model, processor, examples, labels, train_examples=None, folds: int = 5, seed: int = 0):
    """Logistic regression on frozen encoder features: fit on ``train_examples`` or k-fold CV on ``examples``."""
    X = dna_features(model, processor, examples)
    Xt = dna_features(model, processor, train_examples) if train_examples else None
    return logistic_predictions(X, examples, labels, Xt, train_examples, C=0.1, folds=folds, seed=seed)


def fact_features(examples, classes: list[str]) -> list[list[float]]:
    """Exactly the facts an annotated prompt states: consequence class (one-hot), BLOSUM62 of a missense change,
    distance into the intron; each number with a 'not stated' indicator."""
    rows = []
    for e in examples:
        m = e.meta
        blosum, intron = m.get("blosum62"), m.get("intron_offset")
        rows.append([float(m.get("annotation") == c) for c in classes] +
                    [float(blosum or 0), float(blosum is None), float(intron or 0), float(intron is None)])
    return rows


def facts_only_predictions(examples, labels, train_examples=None, folds: int = 5, seed: int = 0):
    """Logistic regression on ``fact_features``, fitted on the training items (or k-fold CV on ``examples``)."""
    classes = sorted({str(e.meta.get("annotation")) for e in (train_examples or examples)})
    Xt = fact_features(train_examples, classes) if train_examples else None
    return logistic_predictions(fact_features(examples, classes), examples, labels, Xt, train_examples, C=1.0,
                                folds=folds, seed=seed)


def annotation_only_predictions(examples, labels, positive, key="annotation", train_examples=None):
    """Annotation class -> positive rate among training items of that class (or leave-one-out on ``examples``)."""
    source = train_examples or examples
    counts: dict[str, list[int]] = {}
    for e in source:
        c = counts.setdefault(str(e.meta.get(key)), [0, 0])
        c[0] += int(e.meta["label"] == positive)
        c[1] += 1
    total_pos = sum(c[0] for c in counts.values()) / max(1, sum(c[1] for c in counts.values()))
    other = [lab for lab in labels if lab != positive][0]
    out = []
    for e in examples:
        pos, n = counts.get(str(e.meta.get(key)), [0, 0])
        if train_examples is None:  # leave this item out of its own class rate
            pos, n = pos - int(e.meta["label"] == positive), n - 1
        rate = pos / n if n > 0 else total_pos
        out.append({"pred": positive if rate >= 0.5 else other, "probs": {positive: rate, other: 1 - rate}})
    return out
