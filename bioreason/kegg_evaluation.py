"""KEGG evaluation from generated traces: the paper's metric and the trace fact checks.

``kegg_trace_checks`` generates a greedy trace per item (``evaluation.greedy_traces``, the slot decoder), parses its
``Answer:`` line (BioReason's metric: the answer is what the generated text says) and checks the trace against facts
computed from the inputs (``kegg_data.tasks.check_kegg_trace``): the gene named, the base change stated, the answer
one of the closed set of disease names. ``answered_after_traces`` completes the traces that named no disease of the
set (cut at the token cap, say) with the most likely name after them, so every item gets an answer from the set.
Used by ``bioreason eval --task kegg --traces``.
"""

from __future__ import annotations

from bioreason.evaluation import greedy_traces


def kegg_trace_checks(model, processor, examples, names, system=None, indices=None, max_new_tokens: int = 256,
                      batch_size: int = 8, prefix: str = "", mode: str = "dna", answer_tokens: int = 0,
                      store=None, bar=None) -> dict:
    """Greedy traces for ``examples[indices]``, each checked against facts computed from its inputs
    (``kegg_data.tasks.check_kegg_trace``): the share passing each check and all three (an indel's base-change
    check does not apply), the accuracy of the answer parsed from the trace, and every trace. ``answer_tokens``:
    budget forcing for traces still reasoning at ``max_new_tokens`` (``sampling.sample_groups``); each item says
    whether its trace was forced (``forced``); ``store``: finished chunks kept for a resumed run, ``bar``: progress
    (both as ``greedy_traces`` takes them)."""
    from bioreason.answers import extract_answer, match_label
    from bioreason.kegg_data.tasks import check_kegg_trace

    items = []
    for i, e, text, forced in greedy_traces(model, processor, examples, system, indices, max_new_tokens, batch_size,
                                            prefix, mode, answer_tokens, store, bar):
        named = match_label(extract_answer(text), list(names)) if extract_answer(text) else None
        items.append({"index": i, "trace": text, "answer": named, "correct": named == e.meta["label"],
                      "forced": forced, **check_kegg_trace(text, e.meta, names)})
    out = {"n": len(items), "items": items,  # the paper's metric: the answer parsed from the generated text
           "answer_accuracy": sum(it["correct"] for it in items) / max(1, len(items))}
    for key in ("gene", "change", "answer_in_set"):
        judged = [it[key] for it in items if it[key] is not None]
        out[key] = sum(judged) / len(judged) if judged else None
    out["forced"] = sum(it["forced"] for it in items)
    out["all_three"] = sum(1 for it in items if it["gene"] and it["change"] is not False and it["answer_in_set"]) / max(
        1, len(items))
    return out


def answer_prefix_after(trace: str) -> str:
    """The assistant's text up to where the disease name goes: the trace up to its last ``Answer:``, or, for a
    trace that never answered (cut at the token cap), the trace closed as the model closes one
    (``answers.closing_for``)."""
    from bioreason.answers import closing_for

    cut = trace.rfind("Answer:")
    if cut >= 0:
        return trace[:cut] + "Answer: "
    return trace.rstrip() + closing_for(trace.rstrip()) + " "


def complete_answer(model, processor, messages: list[dict], trace: str, names, texts: dict | None = None):
    """(name, {name: probability}) for a trace that named no disease of ``names``: the name whose own tokens (as
    the data writes them: ``texts``, label -> text) are most likely, per token, after the trace closed with
    ``Answer:``, and the softmax over the names. ``messages``: the prompt the trace answered."""
    import torch

    from bioreason.rl import score_candidates

    names = list(names)
    scores = score_candidates(model, processor, [messages], [(texts or {}).get(n, n) for n in names],
                              answer_prefix=answer_prefix_after(trace), normalise=True, own_tokens=True)[0]
    return names[int(scores.argmax())], dict(zip(names, torch.softmax(scores, 0).tolist()))


def final_answer(model, processor, messages: list[dict], trace: str, names, texts: dict | None = None):
    """(label, note) a KEGG trace ends on, as ``ask`` and the demo show it: the name its ``Answer:`` line gives when
    that is one of ``names`` (note None), else :func:`complete_answer`'s, with a note saying it was completed."""
    from bioreason.answers import extract_answer, match_label

    said = extract_answer(trace)
    named = match_label(said, list(names)) if said else None
    if named:
        return named, None
    name, probs = complete_answer(model, processor, messages, trace, names, texts)
    return name, (f"completed: the trace named none of the model's {len(list(names))} diseases; the most likely "
                  f"after it, p={probs[name]:.2f}")


def answered_after_traces(model, processor, examples, checks: dict, names, system=None, mode: str = "dna") -> list:
    """[{pred, probs, completed}] for every item of ``checks`` (``kegg_trace_checks`` over all of ``examples``): the
    name its trace answered where that is one of ``names``; else (``completed``) :func:`complete_answer` with the
    names as the data writes them (``meta['label_texts']``). The paper's metric stays the parsed answer; this is
    what a user of the trace gets when the model stops without a name of the set (``ask`` prints the same)."""
    texts = (examples[0].meta.get("label_texts") or {}) if examples else {}
    out = []
    for it in sorted(checks["items"], key=lambda it: it["index"]):
        if it["answer"] in names:
            out.append({"pred": it["answer"], "probs": None, "completed": False})
            continue
        e = examples[it["index"]]
        pred, probs = complete_answer(model, processor, e.to_messages(system, mode, with_answer=False), it["trace"],
                                      names, texts)
        out.append({"pred": pred, "probs": probs, "completed": True})
    return out
