"""``DNALLMProcessor``: chat messages with DNA -> model inputs (ids, labels, DNA ids).

The only place that knows how many ``<|dna_pad|>`` placeholders a DNA sequence
becomes: ``ceil(encoder_tokens(len) / pool_stride)``, the count the model's
pooler emits. A user message is a list of parts, ``{"type": "text", "text": ...}``
or ``{"type": "dna", "sequence": ...}``, in any number; each DNA part becomes
``<|dna_start|>`` + n placeholders + ``<|dna_end|>``. The chat template is the
text tokenizer's. Labels are -100 everywhere except the final assistant turn
(its end-of-turn token included, so a trained model learns to stop).
Truncation cuts only the answer's tail, never a DNA block; otherwise the
example is dropped or an error names the lengths.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from bioreason.configuration import DNA_END, DNA_PAD, DNA_START
from bioreason.dna_encoders import build_tokenizer, clean_sequence
from bioreason.errors import SequenceTooLongError, TruncationError

log = logging.getLogger(__name__)
IGNORE_INDEX = -100
PROCESSOR_FILE = "processor_config.json"


def user_message(question: str, dna: list[str] | tuple[str, ...] = ()) -> dict:
    """A user turn holding the DNA sequences (in order) followed by the question."""
    parts = [{"type": "dna", "sequence": s} for s in dna]
    return {"role": "user", "content": parts + [{"type": "text", "text": question}]}


class DNALLMProcessor:
    """Text tokenizer + DNA tokenizer + the placeholder rule. See the module docstring."""

    def __init__(self, tokenizer, dna_encoder: str, dna_config: dict | None = None, pool_stride: int = 16,
                 max_dna_tokens: int = 64):
        self.tokenizer = tokenizer
        self.dna_encoder = dna_encoder
        self.dna_config = dict(dna_config or {})
        self.dna_tokenizer = build_tokenizer(dna_encoder, self.dna_config)
        self.pool_stride = int(pool_stride)
        self.max_dna_tokens = int(max_dna_tokens)
        missing = [t for t in (DNA_START, DNA_PAD, DNA_END) if t not in tokenizer.get_vocab()]
        if missing:
            tokenizer.add_special_tokens({"additional_special_tokens": [DNA_START, DNA_PAD, DNA_END]})
        self.dna_start_id, self.dna_pad_id, self.dna_end_id = tokenizer.convert_tokens_to_ids(
            [DNA_START, DNA_PAD, DNA_END])
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self._template_prefixes: dict = {}  # system text -> the chat template's token prefix (see prefix_len)

    # --- the placeholder rule ----------------------------------------------------------------------------
    @property
    def max_nucleotides(self) -> int:
        return self.dna_tokenizer.max_length

    def num_placeholders(self, seq_len: int) -> int:
        """LLM positions for a DNA sequence of ``seq_len`` nucleotides (the pooler's output count)."""
        n_tok = self.dna_tokenizer.num_tokens(seq_len)
        return -(-n_tok // self.pool_stride)

    def check_sequence(self, seq: str, index: int = 1) -> str:
        """Validate one DNA sequence (clean-up rules in ``clean_sequence``) and its length."""
        seq = clean_sequence(seq, name=f"DNA sequence {index}")
        if len(seq) > self.max_nucleotides:
            raise SequenceTooLongError(
                f"DNA sequence {index} has {len(seq):,} nt but the encoder takes at most {self.max_nucleotides:,}; "
                f"give a window of at most {self.max_nucleotides:,} nt (sequences are not tiled)"
            )
        n = self.num_placeholders(len(seq))
        if n > self.max_dna_tokens:
            raise SequenceTooLongError(
                f"DNA sequence {index} would become {n} LLM tokens, more than max_dna_tokens={self.max_dna_tokens}; "
                "raise pool_stride or shorten the sequence"
            )
        return seq

    # --- rendering -----------------------------------------------------------------------------------------
    def _render_content(self, content: Any, dna_out: list[str]) -> str:
        if isinstance(content, str):
            return content
        pieces = []
        for part in content:
            if part["type"] == "dna":
                seq = self.check_sequence(part["sequence"], len(dna_out) + 1)
                dna_out.append(seq)
                pieces.append(DNA_START + DNA_PAD * self.num_placeholders(len(seq)) + DNA_END)
            elif part["type"] == "text":
                pieces.append(part["text"])
            else:
                raise ValueError(f"unknown message part type {part['type']!r}; use 'text' or 'dna'")
        return "".join(pieces)

    def render(self, messages: list[dict]) -> tuple[str, str | None, list[str]]:
        """Messages -> (prompt text, full text or None, DNA sequences in order).

        If the last message is the assistant's, it is the target: ``prompt`` ends with the generation
        prompt and ``full`` adds the answer; otherwise ``full`` is None.
        """
        dna: list[str] = []
        flat = [{"role": m["role"], "content": self._render_content(m["content"], dna)} for m in messages]
        has_answer = flat[-1]["role"] == "assistant"
        prompt_msgs = flat[:-1] if has_answer else flat
        prompt = self.tokenizer.apply_chat_template(prompt_msgs, tokenize=False, add_generation_prompt=True)
        full = self.tokenizer.apply_chat_template(flat, tokenize=False) if has_answer else None
        return prompt, full, dna

    def encode_one(self, messages: list[dict], max_length: int | None = None,
                   truncation: str = "error") -> dict | None:
        """One conversation -> ids/labels/DNA lists (unpadded). Returns None if dropped by truncation."""
        prompt, full, dna = self.render(messages)
        tok = self.tokenizer
        prompt_ids = tok(prompt, add_special_tokens=False)["input_ids"]
        if full is None:
            ids, labels = prompt_ids, None
        else:
            ids = tok(full, add_special_tokens=False)["input_ids"]
            if ids[: len(prompt_ids)] != prompt_ids:
                raise ValueError("the chat template renders the prompt differently with and without the answer")
            labels = [IGNORE_INDEX] * len(prompt_ids) + ids[len(prompt_ids):]
            eos = tok.eos_token_id  # nothing after the answer's end-of-turn token is learned (template newlines)
            last = max((i for i in range(len(prompt_ids), len(ids)) if ids[i] == eos), default=None)
            if last is not None:
                labels[last + 1:] = [IGNORE_INDEX] * (len(ids) - last - 1)
        if max_length is not None and len(ids) > max_length:
            ids, labels = self._truncate(ids, labels, max_length, truncation)
            if ids is None:
                return None
        return {"input_ids": ids, "labels": labels, "dna": dna}

    def _truncate(self, ids, labels, max_length, truncation):
        last_dna = max((i for i, t in enumerate(ids) if t == self.dna_end_id), default=-1)
        first_label = len(ids) if labels is None else next(
            (i for i, t in enumerate(labels) if t != IGNORE_INDEX), len(ids))
        problem = None
        if last_dna >= max_length:
            problem = f"it would cut a DNA block (the last one ends at token {last_dna + 1})"
        elif labels is None:
            problem = "prompts are never truncated (there is no answer to shorten)"
        elif first_label >= max_length:
            problem = f"it would remove the whole answer (the prompt alone is {first_label} tokens)"
        if problem is None:
            return ids[:max_length], labels[:max_length]
        msg = (f"an example of {len(ids)} tokens does not fit max_length={max_length}: {problem}; "
               "raise max_length or use shorter DNA windows / questions")
        if truncation == "drop":
            log.warning("dropped: %s", msg)
            return None, None
        raise TruncationError(msg)

    # --- the shared prompt prefix ---------------------------------------------------------------------------------
    def template_prefix_ids(self, messages: list[dict]) -> list[int]:
        """The token ids a prompt of ``messages`` starts with whatever its user turn says: the system turn and the
        user turn's opening, as the chat template renders them (cached per system text). Empty for chats that do
        not start with an optional system turn then the user turn."""
        roles = [m["role"] for m in messages]
        has_system = bool(roles) and roles[0] == "system"
        if roles[int(has_system):int(has_system) + 1] != ["user"] or (
                has_system and not isinstance(messages[0]["content"], str)):
            return []
        key = messages[0]["content"] if has_system else None
        if key not in self._template_prefixes:
            sentinel = "\u2063BIOREASON-USER-TEXT\u2063"
            chat = ([{"role": "system", "content": key}] if has_system else []) + [{"role": "user",
                                                                                     "content": sentinel}]
            text = self.tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
            cut = text.find(sentinel)
            self._template_prefixes[key] = self.tokenizer(text[:cut], add_special_tokens=False)["input_ids"] \
                if cut > 0 else []
        return self._template_prefixes[key]

    def prefix_len(self, conversations: list[list[dict]], enc) -> int:
        """How many leading tokens every prompt of a left-padded batch (``enc``, from ``__call__``) shares from the
        chat template (system turn + the user turn's opening): the part whose KV cache ``bioreason.rl.prefill``
        computes once and shares (prefix caching). Each row keeps at least two tokens of its own; 0 when the
        prompts share nothing."""
        if not conversations:
            return 0
        template = self.template_prefix_ids(conversations[0])
        ids, mask = enc["input_ids"], enc["attention_mask"]
        shared = len(template)
        for row, m in zip(ids.tolist(), mask.tolist()):
            real = [t for t, k in zip(row, m) if k]
            n = 0
            while n < min(shared, len(real)) and real[n] == template[n]:
                n += 1
            shared = min(n, len(real) - 2)
        return max(0, shared)

    # --- batching --------------------------------------------------------------------------------------------
    def __call__(self, conversations: list[list[dict]], *, max_length: int | None = None,
                 truncation: str = "error", padding_side: str | None = None, return_kept: bool = False):
        """A batch of conversations -> padded tensors (``BatchFeature``).

        Keys: ``input_ids``, ``attention_mask`` (B, T); ``labels`` (B, T) when every conversation ends with an
        assistant turn; ``dna_input_ids``, ``dna_attention_mask`` (N, L) for the N sequences in batch order.
        Padding is on the left for prompts (generation) and on the right for training examples.
        """
        import torch
        from transformers import BatchFeature

        encoded = [self.encode_one(c, max_length, truncation) for c in conversations]
        kept = [i for i, e in enumerate(encoded) if e is not None]
        encoded = [e for e in encoded if e is not None]
        with_labels = bool(encoded) and all(e["labels"] is not None for e in encoded)
        side = padding_side or ("right" if with_labels else "left")
        width = max((len(e["input_ids"]) for e in encoded), default=0)
        pad_id = self.tokenizer.pad_token_id
        B = len(encoded)
        input_ids = torch.full((B, width), pad_id, dtype=torch.long)
        attn = torch.zeros((B, width), dtype=torch.long)
        labels = torch.full((B, width), IGNORE_INDEX, dtype=torch.long)
        for i, e in enumerate(encoded):
            n = len(e["input_ids"])
            sl = slice(0, n) if side == "right" else slice(width - n, width)
            input_ids[i, sl] = torch.tensor(e["input_ids"])
            attn[i, sl] = 1
            if with_labels:
                labels[i, sl] = torch.tensor(e["labels"])
        data = {"input_ids": input_ids, "attention_mask": attn}
        if with_labels:
            data["labels"] = labels
        seqs = [s for e in encoded for s in e["dna"]]
        dna = self.dna_tokenizer(seqs) if seqs else {"input_ids": torch.zeros((0, 0), dtype=torch.long),
                                                      "attention_mask": torch.zeros((0, 0), dtype=torch.long)}
        data["dna_input_ids"], data["dna_attention_mask"] = dna["input_ids"], dna["attention_mask"]
        out = BatchFeature(data)
        return (out, kept) if return_kept else out

    def decode(self, ids, **kw) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True, **kw)

    # --- persistence -------------------------------------------------------------------------------------------
    def save_pretrained(self, folder) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save_pretrained(folder)
        cfg = dict(dna_encoder=self.dna_encoder, dna_config=self.dna_config, pool_stride=self.pool_stride,
                   max_dna_tokens=self.max_dna_tokens)
        (folder / PROCESSOR_FILE).write_text(json.dumps(cfg, indent=2))

    @classmethod
    def from_pretrained(cls, folder) -> "DNALLMProcessor":
        from transformers import AutoTokenizer

        folder = Path(folder)
        cfg = json.loads((folder / PROCESSOR_FILE).read_text())
        return cls(AutoTokenizer.from_pretrained(folder), **cfg)

    @classmethod
    def for_model(cls, tokenizer, config) -> "DNALLMProcessor":
        """The processor matching a ``DNALLMConfig`` (same encoder, same stride)."""
        return cls(tokenizer, config.dna_encoder, config.dna_config, config.pool_stride, config.max_dna_tokens)
