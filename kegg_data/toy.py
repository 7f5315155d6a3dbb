"""A toy task whose label is decided by the DNA alone: for tests of SFT/GRPO and the 2-process run.

Each example holds one sequence that is mostly A/G (purine-rich: answer ``pathogenic``) or mostly C/T
(pyrimidine-rich: ``benign``), with 10% noise. The question is the same for both, so only the DNA tells them
apart; a text-only model cannot beat chance. Deterministic for a given seed.
"""

from __future__ import annotations

import random

from bioreason.kegg_data.examples import Example

TOY_LABELS = ("pathogenic", "benign")
TOY_QUESTION = "Is this variant pathogenic or benign?"


def toy_examples(n: int = 64, length: int = 64, seed: int = 0) -> list[Example]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        label = TOY_LABELS[i % 2]
        major, minor = ("AG", "CT") if label == "pathogenic" else ("CT", "AG")
        seq = "".join(rng.choice(major) if rng.random() > 0.1 else rng.choice(minor) for _ in range(length))
        reasoning = "The sequence is purine-rich." if label == "pathogenic" else "The sequence is pyrimidine-rich."
        out.append(Example(TOY_QUESTION, [seq], label, reasoning, {"label": label, "task": "toy", "row": i}))
    return out
