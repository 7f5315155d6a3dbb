"""The one answer parser: where the final answer of a completion is, and which label it names.

Used by the rewards (``bioreason.rl``), evaluation, ``predict`` and the demo, so
that "what did the model answer" has one definition. Rules:
- only text after the last ``</think>`` counts; a completion whose ``<think>`` is
  never closed has no answer (answering only inside ``<think>`` scores nothing);
- the answer is the last line starting with ``Answer:`` (case-free) in that text;
- a label is recognised by whole-word match after lower-casing and stripping
  punctuation; an answer naming more than one label has no label (listing both
  labels cannot collect the correctness reward).
Pure Python; no torch import.
"""

from __future__ import annotations

import re

ANSWER_TOKENS = 32  # budget forcing's default: tokens a trace closed at its cap gets to write its answer (the
# longest of the KEGG model's 37 names is 12 tokens)
_ANSWER_LINE = re.compile(r"^[ \t>*#-]*answer\s*[:：]\s*(.*?)\s*$", re.IGNORECASE | re.MULTILINE)
_PUNCT = re.compile(r"[.,!?;:\"'`()\[\]{}*]+")


def split_think(text: str) -> tuple[str, str]:
    """(reasoning inside <think>, text after the last </think>). No <think> at all: ('', text)."""
    if text is None:
        return "", ""
    close = text.rfind("</think>")
    if close >= 0:
        think = text[:close]
        think = think[think.find("<think>") + len("<think>"):] if "<think>" in think else think
        return think.strip(), text[close + len("</think>"):]
    if "<think>" in text:  # opened, never closed: everything is reasoning, there is no answer
        return text[text.find("<think>") + len("<think>"):].strip(), ""
    return "", text


def extract_answer(text: str) -> str | None:
    """The content of the last ``Answer:`` line outside ``<think>``, or None."""
    _, rest = split_think(text or "")
    found = _ANSWER_LINE.findall(rest)
    if not found:
        return None
    ans = found[-1].strip()
    return ans or None


def closing_for(text: str) -> str:
    """The text that closes a completion cut before its answer so that what comes next is its answer: the
    reasoning closed and an ``Answer:`` line opened, as a trained model writes them (``"\\n</think>\\n\\nAnswer:"``;
    ``"\\n\\nAnswer:"`` after a closed ``<think>``, ``"\\nAnswer:"`` without one); ``""`` when it already has an
    ``Answer:`` line. Budget forcing (``decoding.decode_slots``) appends it to traces cut at the token cap, and the
    names' likelihoods after a cut trace are scored after it (``kegg_evaluation.answer_prefix_after``)."""
    text = text or ""
    if "</think>" in text:
        return "" if _ANSWER_LINE.search(split_think(text)[1]) else "\n\nAnswer:"
    if "<think>" in text:
        return "\n</think>\n\nAnswer:"
    return "" if _ANSWER_LINE.search(text) else "\nAnswer:"


def normalise_text(text: str) -> str:
    """Lower-case, punctuation stripped, whitespace collapsed."""
    return " ".join(_PUNCT.sub(" ", (text or "").lower()).split())


def match_label(answer: str | None, labels: list[str] | tuple[str, ...], aliases: dict | None = None) -> str | None:
    """The single label that ``answer`` names (whole words), else None (none, or more than one).

    ``aliases`` maps extra phrasings to labels, e.g. ``{"loss of function": "LOF"}``.
    """
    if not answer:
        return None
    norm = f" {normalise_text(answer)} "
    hits = set()
    for label in labels:
        if f" {normalise_text(label)} " in norm:
            hits.add(label)
    for phrase, label in (aliases or {}).items():
        if f" {normalise_text(phrase)} " in norm:
            hits.add(label)
    # a label that is a sub-phrase of another matched label does not count twice ("pathogenic" in "likely pathogenic")
    if len(hits) > 1:
        names = {h: normalise_text(h) for h in hits}
        hits = {h for h in hits if not any(h != o and f" {names[h]} " in f" {names[o]} " for o in hits)}
    return next(iter(hits)) if len(hits) == 1 else None
