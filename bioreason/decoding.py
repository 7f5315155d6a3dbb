"""The decode loop: a KV cache whose rows are slots, finished rows leave, queued prompts take their place.

``decode_slots`` replaces ``model.generate`` for every batched decode (``sampling.sample_groups``: GRPO sampling,
``predict --traces``, ``eval --traces``). ``model.generate`` runs a batch until its longest completion ends, doing
full-width work for rows that already finished; here each row is a *slot* of one cache of ``slots`` rows x L
columns, L growing ``GROW`` columns at a time (most traces end long before ``max_new_tokens``). When a row ends,
a queued prompt is prefilled (its DNA encoded, its template prefix from ``rl.prefill``) and its keys and values
are copied into the free row (continuous batching, as vLLM and TGI do); when the queue is empty, finished rows are
dropped from the cache (row compaction), so the step shrinks with the work left. All rows write the same column at
each step: a joining prompt's keys sit in the columns just before it (the keys are stored after rotary embedding,
so only the attention mask and each row's position ids say where a row's tokens are), and when the cache's end is
reached the columns are shifted left, then the cache grows. Each decoding step calls the model as the caller holds
it (peft, DDP, FSDP wrappers see it). ``COMPACTION`` switches both refill and compaction off for benchmarks. A row
that reaches ``max_new_tokens`` still reasoning can be closed and given room to answer (budget forcing, ``force``).
"""

from __future__ import annotations

import weakref
from collections import deque

import torch

from bioreason.int8_decode import decoding_steps

COMPACTION = True  # benchmarks switch it off (every slot then runs until the longest row of its batch ends)
GROW = 64  # columns the cache gains at a time: most traces end long before max_new_tokens, so room for all of it
# up front (8 rows x 256 tokens: about 190 MB of keys and values for the embedded default) is mostly never written


def _cast_to_cache(layer):
    """``layer.update`` writing a step's keys and values in the dtypes the prefill left in the cache. Under bf16
    autocast with LoRA on some projections a step's values can come out bf16 where the prefill's cache holds fp32
    (transformers before 5.2x promotes a layer's values to its keys' dtype when it concatenates them); a static
    layer's in-place write needs one dtype, and the prefill's is what ``generate`` would keep. The layer is held
    weakly: a closure holding its own layer is a reference cycle, which kept every batch's cache (about 270 MB for
    8 traces) alive until a full garbage collection."""
    update, ref = type(layer).update, weakref.ref(layer)

    def cast_update(keys, values, *args, **kwargs):
        this = ref()
        return update(this, keys.to(this.keys.dtype), values.to(this.values.dtype), *args, **kwargs)

    return cast_update


class SlotCache:
    """A transformers ``StaticCache`` of ``rows`` x ``cols`` positions plus the attention mask over its columns and
    the column ``t`` the next step writes. Row and column moves (``keep``, ``shift``, ``grow``) rebuild the cache's
    tensors; each step writes in place."""

    def __init__(self, config, rows: int, cols: int, kv, allocate: bool = True):
        """``kv``: a prefill's [(keys, values)] per layer, which sets each tensor's heads, head size and dtype (under
        autocast with LoRA on some projections, keys and values can come out in different dtypes; a decode step
        writes what its prefill wrote). ``allocate=False``: each layer is allocated by the first ``place`` instead,
        just before that layer's prefill is copied in (see ``place``)."""
        from transformers import StaticCache

        self.cache = StaticCache(config=config, max_cache_len=cols)
        self.layers = self.cache.layers
        self.mask = torch.zeros((rows, cols), dtype=torch.long, device=kv[0][0].device)
        self.t = 0
        if allocate:
            for layer, (k, v) in zip(self.layers, kv):
                self._allocate(layer, k, v)

    def _allocate(self, layer, k, v):
        """The layer's rows x cols keys and values (transformers' own lazy set-up takes rows, heads, head size and
        dtype from these empty tensors), written in the prefill's dtypes at each step."""
        layer.lazy_initialization(k.new_empty((self.rows, k.shape[1], 0, k.shape[3])),
                                  v.new_empty((self.rows, v.shape[1], 0, v.shape[3])))
        layer.update = _cast_to_cache(layer)

    @property
    def rows(self) -> int:
        return self.mask.shape[0]

    @property
    def cols(self) -> int:
        return self.mask.shape[1]

    def _each(self, fn):
        """Apply a row/column move ``fn`` (on (rows, heads, cols, dim) tensors) to keys, values and the mask."""
        for layer in self.layers:
            layer.keys, layer.values = fn(layer.keys), fn(layer.values)
            layer.max_cache_len = layer.keys.shape[2]
        self.mask = fn(self.mask[:, None, :, None])[:, 0, :, 0].contiguous()

    def keep(self, rows: torch.Tensor):
        """Only these rows, in this order."""
        self._each(lambda x: x.index_select(0, rows))

    def shift(self, delta: int):
        """Move every row's columns by ``delta`` (negative: left), padding with masked-out zeros."""
        if delta == 0:
            return

        def move(x):
            out = torch.zeros_like(x)
            if delta > 0:
                out[:, :, delta:] = x[:, :, :-delta]
            else:
                out[:, :, :delta] = x[:, :, -delta:]
            return out

        self._each(move)
        self.t += delta

    def grow(self, cols: int):
        """At least ``cols`` columns (new ones at the end)."""
        if cols > self.cols:
            extra = cols - self.cols
            self._each(lambda x: torch.cat([x, x.new_zeros(x.shape[:2] + (extra,) + x.shape[3:])], 2))

    def place(self, rows: torch.Tensor, kv: list, mask: torch.Tensor):
        """Prefilled prompts (``kv``: [(keys, values)] per layer, (n, H, W, D); ``mask`` (n, W)) into ``rows``, in
        the W columns before ``t``. ``kv`` is emptied as it is copied, and a layer not allocated yet is allocated
        just before: a new cache and the prefill that fills it are never both held whole (for 8 BRCA1 prompts about
        125 and 100 MB, the decoding's share of predict's peak)."""
        W = mask.shape[1]
        for i, layer in enumerate(self.layers):
            k, v = kv[i]
            kv[i] = None  # the caller's list: its tensors go with k and v below, unless held elsewhere
            if not layer.is_initialized:
                self._allocate(layer, k, v)
            layer.keys[rows, :, self.t - W:self.t] = k.to(layer.keys.dtype)
            layer.values[rows, :, self.t - W:self.t] = v.to(layer.values.dtype)
            del k, v
        self.mask[rows] = 0
        self.mask[rows, self.t - W:self.t] = mask.to(self.mask.dtype)

    def starts(self, rows: torch.Tensor) -> int:
        """The first column any of ``rows`` uses."""
        used = self.mask[rows].sum(0).nonzero()
        return int(used[0]) if used.numel() else self.t

    def step(self, model, tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """One decode step at column ``t`` for every row: next-token logits (rows, V). ``model``: the DNA-LLM as
        the caller holds it (peft, DDP or FSDP wrappers included, so they see the call)."""
        for layer in self.layers:
            layer.cumulative_length.fill_(self.t)
        self.mask[:, self.t] = 1
        with decoding_steps():  # int8-decode models read their int8 weights here (bioreason.int8_decode)
            out = model(input_ids=tokens[:, None], attention_mask=self.mask, position_ids=positions[:, None],
                        cache_position=torch.tensor([self.t], device=tokens.device), use_cache=True,
                        logits_to_keep=1, cache=self.cache)
        self.t += 1
        return out.logits[:, -1]


def _choose(logits, sampler, n_gen: torch.Tensor, min_new: int, eos_id: int, suppress: list[int]) -> torch.Tensor:
    """The next token of each row: never a suppressed id (the DNA placeholders), no eos before ``min_new``. The
    caller's ``logits`` are not written (a prefill's may be the prompts' kept state)."""
    logits = logits.to(torch.float32, copy=True)
    if suppress:
        logits[:, suppress] = float("-inf")
    if min_new:
        logits[n_gen < min_new, eos_id] = float("-inf")
    return logits.argmax(-1) if sampler is None else sampler(None, logits).argmax(-1)


@torch.no_grad()
def decode_slots(model, prefill_chunk, n_prompts: int, group: int, max_new_tokens: int, eos_id: int,
                 slots: int | None = None, sampler=None, min_new_tokens: int = 0, force=None,
                 answer_tokens: int = 0) -> list[list[int]]:
    """Completions (token ids, ending with ``eos_id`` unless cut at ``max_new_tokens``) for ``n_prompts`` x
    ``group`` rows, in prompt order then group order.

    ``prefill_chunk(indices)`` prefills those prompts and returns (last-position logits (n, V), [(keys, values)]
    per layer (n, H, W, D), cache mask (n, W)). ``slots``: rows decoded at once (default: all of them, so only
    compaction applies); at least ``group``. ``sampler``: an ``InverseCDFSampler`` (None: greedy).
    """
    from bioreason.modeling import unwrap_dna_llm

    dna_llm = unwrap_dna_llm(model)
    lm = dna_llm.language_model
    suppress = [i for i in (getattr(dna_llm.config, f"dna_{k}_token_id", None) for k in ("start", "pad", "end"))
                if i is not None]  # as DNALLMForCausalLM.generate: the DNA placeholders carry no text
    total = n_prompts * group
    room = min(max_new_tokens, GROW)  # columns after t a placement leaves; the cache grows by as many when full
    slots = total if slots is None or not COMPACTION else max(min(int(slots), total), group)
    queue = deque(range(n_prompts))
    out: list[list[int]] = [[] for _ in range(total)]
    row_of: list[int] = []  # output row of each cache row (-1: free)
    forced: dict[int, deque] = {}  # output row -> forced token ids not yet fed (budget forcing)
    cap: dict[int, int] = {}  # output row -> its token cap once forced (max_new_tokens for the others)
    sc = None
    device = next(lm.parameters()).device
    tokens = positions = n_gen = None

    def admit(free: list[int]):
        nonlocal sc, tokens, positions, n_gen
        take = [queue.popleft() for _ in range(min(len(free) // group, len(queue)))]
        logits, kv, mask = prefill_chunk(take)
        W = mask.shape[1]
        kv = list(kv)  # ours: place() empties it layer by layer
        if group > 1:  # (at 1 a copy of every layer's keys and values for nothing: ~100 MB for 8 BRCA1 prompts)
            kv = [(k.repeat_interleave(group, 0), v.repeat_interleave(group, 0)) for k, v in kv]
            mask, logits = mask.repeat_interleave(group, 0), logits.repeat_interleave(group, 0)
        if sc is None:  # room for some steps; twice that if prompts will join later (shifts then stay rare)
            sc = SlotCache(lm.config, slots, W + (2 if queue else 1) * room, kv, allocate=False)
            row_of.extend([-1] * slots)
            tokens = torch.zeros(slots, dtype=torch.long, device=device)
            positions, n_gen = torch.zeros_like(tokens), torch.zeros_like(tokens)
        busy = torch.tensor([r for r, o in enumerate(row_of) if o >= 0], dtype=torch.long, device=device)
        if not busy.numel():  # nothing in flight: start again from the first columns
            sc.mask.zero_()
            sc.t = W
        elif sc.t + room > sc.cols:  # room after t for the rows being decoded
            sc.shift(-sc.starts(busy))
        if sc.t < W:  # room before t for the new prompts' keys (the columns at the end must be free to shift)
            sc.grow(W + room)
            sc.shift(W - sc.t)
        sc.grow(sc.t + room)
        rows = torch.tensor(free[:len(take) * group], dtype=torch.long, device=device)
        sc.place(rows, kv, mask)
        n_gen[rows] = 0
        first = _choose(logits, sampler, n_gen[rows], min_new_tokens, eos_id, suppress)
        positions[rows] = mask.sum(1).to(positions.dtype)
        for j, r in enumerate(rows.tolist()):
            row_of[r] = take[j // group] * group + j % group
        accept(rows, first)

    def accept(rows: torch.Tensor, picked: torch.Tensor):
        picked = picked.tolist()
        for j, r in enumerate(rows.tolist()):
            o = row_of[r]
            if o in forced:  # budget forcing: the forced token, not the model's
                picked[j] = forced[o].popleft()
                if not forced[o]:
                    del forced[o]
            tok = picked[j]
            out[o].append(tok)
            if o in forced:
                continue
            if tok == eos_id:
                row_of[r] = -1
            elif len(out[o]) >= cap.get(o, max_new_tokens):
                extra = list(force(out[o])) if force is not None and o not in cap else []
                if extra:
                    forced[o] = deque(extra)
                    cap[o] = len(out[o]) + len(extra) + answer_tokens
                else:
                    row_of[r] = -1
        tokens[rows] = torch.tensor(picked, dtype=tokens.dtype, device=tokens.device)
        n_gen[rows] += 1

    while True:
        free = [r for r, o in enumerate(row_of) if o < 0] if sc is not None else list(range(slots))
        if queue and len(free) >= group:
            admit(free)
            continue
        busy = [r for r, o in enumerate(row_of) if o >= 0]
        if not busy:
            break
        if COMPACTION and not queue and len(busy) < sc.rows:  # nothing left to refill: drop the finished rows
            keep = torch.tensor(busy, dtype=torch.long, device=device)
            sc.keep(keep)
            tokens, positions, n_gen = tokens[keep], positions[keep], n_gen[keep]
            row_of[:] = [row_of[r] for r in busy]
            busy = list(range(len(busy)))
        if sc.t >= sc.cols:  # the cache's end: shift every row left by the columns no busy row uses, then grow
            sc.shift(-sc.starts(torch.tensor(busy, device=device)))
            sc.grow(sc.t + room)
        logits = sc.step(model, tokens, positions)
        positions += 1
        idx = torch.tensor(busy, dtype=torch.long, device=device)
        accept(idx, _choose(logits[idx], sampler, n_gen[idx], min_new_tokens, eos_id, suppress))
    return out


__all__ = ["COMPACTION", "GROW", "SlotCache", "decode_slots"]
