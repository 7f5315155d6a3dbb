"""Draft tokens for speculative greedy decoding, looked up in text the model has already seen or written.

A trace mostly copies: the variant's coordinates, gene and annotation from its prompt, and sentences every trace of
the run shares ("On the transcript it is c.", "Codon ... changes from ..."). :class:`NgramDrafter` proposes the
next tokens of a row by finding the longest recent n-gram (``max_n`` down to ``min_n`` tokens) that ends the row's
text in, first, the row's own prompt and completion so far (prompt lookup decoding, as transformers'
``prompt_lookup_num_tokens``), then in the completions finished earlier in the same call (suffix decoding across
requests, as SuffixDecoding does for repeated agentic output), and returns the tokens that followed it there.
``decoding.decode_slots`` feeds them with the row's last token in one step and keeps the longest prefix the model
itself would have chosen, so a greedy output is the same with or without drafts; a wrong draft costs only the
extra query positions of that step. Those are not free on a CPU (a step of 8 rows costs about twice as much with 4
drafts each as with none), so :meth:`NgramDrafter.width` picks how many drafts a step feeds: the most tokens per
second expected from the acceptance rate seen so far and a step's cost fitted online as a + b x positions
(:class:`StepCost`); free text with few right drafts then decodes as without them. Nothing here runs the model;
the indexes are plain dicts updated per token.
"""

from __future__ import annotations

import threading
import weakref
from collections import deque

MAX_N = 4  # longest n-gram matched
MIN_N = 2  # shortest: single tokens propose too often and too wrongly
KEEP_FINISHED = 16  # finished completions searched (the most recent ones)
PRIOR_POSITIONS = 16  # before steps of different widths were timed: 16 more positions double a step's cost


class StepCost:
    """Seconds of a decode step as a + b x positions (rows x tokens per row), least squares over the steps timed
    so far, older ones weighing less (``decay`` per step)."""

    def __init__(self, decay: float = 0.9):
        self.decay = decay
        self.sums = [0.0] * 5  # weight, sum P, sum P^2, sum t, sum P t

    def observe(self, positions: int, seconds: float) -> None:
        p = float(positions)
        self.sums = [x * self.decay + y for x, y in zip(self.sums, (1.0, p, p * p, seconds, p * seconds))]

    def line(self) -> tuple[float, float] | None:
        """(a, b), or None before any step was timed."""
        w, sp, spp, st, spt = self.sums
        if w <= 0:
            return None
        mp, mt = sp / w, st / w
        var = spp / w - mp * mp
        b = (spt / w - mp * mt) / var if var > 1.0 else mt / (mp + PRIOR_POSITIONS)
        b = min(max(b, 0.0), mt / mp)  # never negative, never a negative fixed part
        return mt - b * mp, b


class _Text:
    """One token sequence with, for each n-gram of length ``min_n``..``max_n`` that something follows, where its
    latest such occurrence ends (an n-gram ending the text is indexed once the next token arrives, so the text's
    own last n-gram finds its earlier occurrences)."""

    def __init__(self, ids=(), min_n: int = MIN_N, max_n: int = MAX_N):
        self.ids: list[int] = []
        self.ends: dict[tuple, int] = {}
        self.min_n, self.max_n = min_n, max_n
        self.extend(ids)
        self.given = len(self.ids)  # tokens it was made with (a row's prompt)

    def extend(self, ids) -> None:
        for tok in ids:
            end = len(self.ids)  # n-grams ending here now have a next token
            self.ids.append(int(tok))
            for n in range(self.min_n, min(self.max_n, end) + 1):
                self.ends[tuple(self.ids[end - n:end])] = end

    def after(self, gram: tuple, k: int) -> list[int]:
        """Up to ``k`` tokens that followed ``gram``'s latest occurrence ([] if it has none)."""
        end = self.ends.get(gram)
        return [] if end is None else self.ids[end:end + k]


class NgramDrafter:
    """Drafts for the rows of one ``decode_slots`` call. ``start(row, prompt_ids)`` when a row begins, ``extend(row,
    ids)`` with each token it emits, ``finish(row)`` when it ends; ``propose(row, k)`` gives up to ``k`` tokens."""

    def __init__(self, min_n: int = MIN_N, max_n: int = MAX_N, keep_finished: int = KEEP_FINISHED,
                 finished: deque | None = None):
        """``finished``: the finished completions to search and add to, shared with other drafters (e.g. the
        demo's requests on one model, each with its own rows: ``recent_completions``); default: this one's own."""
        self.min_n, self.max_n = min_n, max_n
        self.rows: dict[int, _Text] = {}
        self.finished: deque[_Text] = deque(maxlen=keep_finished) if finished is None else finished
        self.proposed = self.accepted = 0  # draft tokens offered and kept (for benchmarks and tests)
        self.trials, self.kept = 2.0, 1.0  # drafts judged (the first rejection ends a row's) and kept: rate 0.5
        self.cost = StepCost()

    def start(self, row: int, prompt_ids) -> None:
        self.rows[row] = _Text(prompt_ids, self.min_n, self.max_n)

    def extend(self, row: int, ids) -> None:
        if row in self.rows:
            self.rows[row].extend(ids)

    def finish(self, row: int) -> None:
        text = self.rows.pop(row, None)
        if text is not None and len(text.ids) > text.given:
            self.finished.append(_Text(text.ids[text.given:], self.min_n, self.max_n))

    def propose(self, row: int, k: int) -> list[int]:
        own = self.rows.get(row)
        if own is None or k < 1:
            return []
        ids = own.ids
        for n in range(min(self.max_n, len(ids)), self.min_n - 1, -1):
            gram = tuple(ids[-n:])
            found = own.after(gram, k)  # an earlier occurrence in its own prompt or completion
            if not found:
                for text in reversed(tuple(self.finished)):  # (a copy: another thread may finish a row)
                    found = text.after(gram, k)
                    if found:
                        break
            if found:
                return found
        return []

    def count(self, proposed: int, accepted: int) -> None:
        self.proposed += proposed
        self.accepted += accepted
        self.trials += min(accepted + 1, proposed)
        self.kept += accepted

    def width(self, lengths: list[int], busy: int, rows: int) -> int:
        """Tokens per row for the next step (1 + drafts fed): the most tokens expected per second of step, with
        each draft token kept with the rate seen so far if the ones before it were (``lengths``: the busy rows'
        draft lengths; ``rows``: the rows the step computes, busy or not)."""
        most = 1 + max(lengths, default=0)
        line = self.cost.line()
        if most == 1 or line is None:
            return 1 if line is None else most
        a, b = line
        rate = self.kept / self.trials
        best, best_w, gain = busy / (a + b * rows), 1, 0.0
        for w in range(2, most + 1):
            gain += sum(rate ** (w - 1) for n in lengths if n >= w - 1)
            speed = (busy + gain) / (a + b * rows * w)
            if speed > best:
                best, best_w = speed, w
        return best_w


_RECENT = weakref.WeakKeyDictionary()  # model -> its recent_completions
_LOCK = threading.Lock()


def recent_completions(model) -> deque:
    """The finished completions kept for ``model`` (held as long as the model is): what separate calls on one
    loaded model (the demo's requests, one ``decode_slots`` each) draft from, so a trace can copy the sentences
    of the traces before it as ``predict``'s batches do. Appending and reading are safe across threads (a deque's
    append is atomic; ``propose`` reads a copy)."""
    with _LOCK:
        found = _RECENT.get(model)
        if found is None:
            found = _RECENT[model] = deque(maxlen=KEEP_FINISHED)
        return found


__all__ = ["NgramDrafter", "StepCost", "recent_completions"]
