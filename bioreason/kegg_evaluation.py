"""KEGG evaluation from generated traces: the paper's metric and the trace fact checks, and the answer chosen among
the closed set of disease names after the model's own trace.

``kegg_trace_checks`` generates a greedy trace per item (``evaluation.greedy_traces``, the slot decoder), parses its
``Answer:`` line (BioReason's metric) and checks the trace against facts computed from the inputs
(``kegg_data.tasks.check_kegg_trace``). ``answers_after_traces`` keeps each trace as it was generated and scores
every one of the names after it (length-normalised log-likelihood, as ``rl.score_candidates`` scores them after an
empty think): a constrained final answer, which a trace that loops or names no disease of the set still gets.
"""

from __future__ import annotations

from bioreason.evaluation import greedy_traces


def kegg_trace_checks(model, processor, examples, names, system=None, indices=None, max_new_tokens: int = 256,
                      batch_size: int = 8, prefix: str = "", mode: str = "dna") -> dict:
    """Greedy traces for ``examples[indices]``, each checked against facts computed from its inputs
    (``kegg_data.tasks.check_kegg_trace``): the share passing each check and all three (an indel's base-change
    check does not apply), the accuracy of the answer parsed from the trace, and every trace."""
    from bioreason.answers import extract_answer, match_label
    from bioreason.kegg_data.tasks import check_kegg_trace

    items = []
    for i, e, text in greedy_traces(model, processor, examples, system, indices, max_new_tokens, batch_size, prefix,
                                    mode):
        named = match_label(extract_answer(text), list(names)) if extract_answer(text) else None
        items.append({"index": i, "trace": text, "answer": named, "correct": named == e.meta["label"],
                      **check_kegg_trace(text, e.meta, names)})
    out = {"n": len(items), "items": items,  # the paper's metric: the answer parsed from the generated text
           "answer_accuracy": sum(it["correct"] for it in items) / max(1, len(items))}
    for key in ("gene", "change", "answer_in_set"):
        judged = [it[key] for it in items if it[key] is not None]
        out[key] = sum(judged) / len(judged) if judged else None
    out["all_three"] = sum(1 for it in items if it["gene"] and it["change"] is not False and it["answer_in_set"]) / max(
        1, len(items))
    return out


def answer_prefix_after(trace: str) -> str:
    """The assistant's text up to where the disease name goes: the trace up to its last ``Answer:``, or, for a
    trace that never answered (cut at the token cap), the trace closed as the model closes one."""
    cut = trace.rfind("Answer:")
    if cut >= 0:
        return trace[:cut] + "Answer: "
    if "</think>" in trace:
        return trace.rstrip() + "\n\nAnswer: "
    return trace.rstrip() + "\n</think>\n\nAnswer: "


def answers_after_traces(model, processor, examples, traces: dict, names, system=None, mode: str = "dna") -> list:
    """[{pred, probs}] for ``examples``: the mean log-probability of each name's own tokens (and the end of the turn)
    after the item's generated trace (``traces``: index -> text), and the softmax over the names. One
    ``score_candidates`` call per item, since every item's answer follows its own trace; the template prefix all
    prompts share is computed once."""
    import torch

    from bioreason.rl import PrefixCache, score_candidates

    out, shared = [], PrefixCache()
    for i, e in enumerate(examples):
        prompt = [e.to_messages(system, mode, with_answer=False)]
        scores = score_candidates(model, processor, prompt, list(names), answer_prefix=answer_prefix_after(traces[i]),
                                  normalise=True, prefix_cache=shared, own_tokens=True)[0]
        probs = torch.softmax(scores, 0).tolist()
        out.append({"pred": names[int(scores.argmax())], "probs": dict(zip(names, probs))})
    return out
