"""Which examples each training step takes: the epoch's pool (``data.balance``) and its seeded order.

``balanced_pool`` repeats the examples of rare groups (a label, a question, or the pair; ``balance_keys`` names
each example's group) so that one epoch sees them more often, tempered by a power; ``DataOrder`` turns a pool into
the examples of every (step, micro-batch, process): a seeded permutation per epoch, consumed in order, so the data
a step sees is a pure function of (seed, step) and a resumed run continues exactly where it stopped, on any number
of processes with the same global batch. The training loop (``bioreason.trainer``) is their one user.
"""

from __future__ import annotations

import random


def balanced_pool(keys: list, power: float = 1.0) -> list[int]:
    """Example indices with each example repeated ``round((largest group / its group) ** power)`` times (at least
    once), its group being its key (``data.balance``, ``recipe_values.balance_setting``); deterministic."""
    by: dict = {}
    for i, key in enumerate(keys):
        by.setdefault(key, []).append(i)
    top = max(len(v) for v in by.values())
    return sorted(i for v in by.values() for i in v * max(1, round((top / len(v)) ** power)))


def balance_keys(examples: list, by: str) -> list:
    """Each example's group for ``data.balance``: its label, its question text, or the pair."""
    from bioreason.kegg_data.tasks import question_group

    if by == "label":
        return [e.meta.get("label") for e in examples]
    if by == "question":
        return [question_group(e) for e in examples]
    return [(question_group(e), e.meta.get("label")) for e in examples]


class DataOrder:
    """Example indices of every (step, micro-batch, rank): a seeded permutation per epoch, consumed in order.
    ``pool``: the number of examples, or a list of example indices (with repeats) that makes up one epoch."""

    def __init__(self, pool, seed: int, batch_size: int, world: int, grad_accum: int):
        self.pool = list(range(pool)) if isinstance(pool, int) else list(pool)
        self.n, self.seed, self.bs, self.world, self.ga = len(self.pool), seed, batch_size, world, grad_accum
        self._perms: dict[int, list[int]] = {}

    def _at(self, i: int) -> int:
        epoch, k = divmod(i, self.n)
        if epoch not in self._perms:
            perm = list(self.pool)
            random.Random(self.seed * 1_000_003 + epoch).shuffle(perm)
            self._perms = {epoch: perm}
        return self._perms[epoch][k]

    def micro(self, step: int, m: int, rank: int) -> list[int]:
        global_bs = self.bs * self.world
        start = (step * self.ga + m) * global_bs + rank * self.bs
        return [self._at(i) for i in range(start, start + self.bs)]


__all__ = ["DataOrder", "balance_keys", "balanced_pool"]
