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
Greedy decoding speculates (``DRAFT``): a step feeds each row its last token and up to ``DRAFT`` draft tokens that
``drafting.NgramDrafter`` copies from the row's prompt or earlier completions, in as many columns, and the row keeps
the drafts the model itself picks plus its next token (the columns of drafts it rejects are masked); traces that
restate their prompt's facts in a shared template then take a fraction of the steps, with the same tokens. On a
CPU each step is timed and the drafter picks how many drafts the next one feeds (``NgramDrafter.width``).
"""

from __future__ import annotations

import time
import weakref
from collections import deque

import torch

from bioreason.int8_decode import decoding_steps

COMPACTION = True  # benchmarks switch it off (every slot then runs until the longest row of its batch ends)
GROW = 64  # columns the cache gains at a time: most traces end long before max_new_tokens, so room for all of it
# up front (8 rows x 256 tokens: about 190 MB of keys and values for the embedded default) is mostly never written
DRAFT = 4  # draft tokens per row and step for greedy decoding (0: none; benchmarks switch it)
MAX_DRAFT = 15  # draft tokens per row and step at most (bioreason.attention's few-query path takes 16 queries)


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
        """One decode step at column ``t`` for every row: next-token logits (rows, V). ``tokens``/``positions`` (rows,
        w) instead of (rows,): w tokens per row in columns t..t+w-1 (a row's last token and its drafts), logits
        (rows, w, V). ``model``: the DNA-LLM as the caller holds it (peft, DDP or FSDP wrappers included, so they
        see the call)."""
        one = tokens.dim() == 1
        if one:
            tokens, positions = tokens[:, None], positions[:, None]
        w = tokens.shape[1]
        for layer in self.layers:
            layer.cumulative_length.fill_(self.t)
        self.mask[:, self.t:self.t + w] = 1
        with decoding_steps():  # int8-decode models read their int8 weights here (bioreason.int8_decode)
            out = model(input_ids=tokens, attention_mask=self.mask, position_ids=positions,
                        cache_position=torch.arange(self.t, self.t + w, device=tokens.device), use_cache=True,
                        logits_to_keep=w, cache=self.cache)
        self.t += w
        return out.logits[:, -1] if one else out.logits


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
                 answer_tokens: int = 0, draft: int | None = None, prompt_ids=None, drafter=None,
                 on_token=None) -> list[list[int]]:
    """Completions (token ids, ending with ``eos_id`` unless cut at ``max_new_tokens``) for ``n_prompts`` x
    ``group`` rows, in prompt order then group order.

    ``prefill_chunk(indices)`` prefills those prompts and returns (last-position logits (n, V), [(keys, values)] per
    layer (n, H, W, D), cache mask (n, W)). ``slots``: rows decoded at once (default: all of them, so only
    compaction applies); at least ``group``. ``sampler``: an ``InverseCDFSampler`` (None: greedy). ``draft``
    (default ``DRAFT``; 0: none): greedy decoding only: up to this many draft tokens per row and step
    (``drafting.NgramDrafter``, or the given ``drafter``, looking in ``prompt_ids(i)``, prompt i's token ids, and
    the completions so far); a step then feeds each row its last token and its drafts and keeps the drafts the model
    itself picks, plus its next token. ``on_token(row, token)``: called with each token as it is emitted (streaming).
    """
    from bioreason.modeling import unwrap_dna_llm

    dna_llm = unwrap_dna_llm(model)
    lm = dna_llm.language_model
    suppress = [i for i in (getattr(dna_llm.config, f"dna_{k}_token_id", None) for k in ("start", "pad", "end"))
                if i is not None]  # as DNALLMForCausalLM.generate: the DNA placeholders carry no text
    total = n_prompts * group
    room = min(max_new_tokens, GROW)  # columns after t a placement leaves; the cache grows by as many when full
    slots = total if slots is None or not COMPACTION else max(min(int(slots), total), group)
    draft = min(int(DRAFT if draft is None else draft), MAX_DRAFT) if sampler is None else 0
    if not draft:
        drafter = None  # nothing drafted (sampling, or drafts off): no n-gram index kept per token either
    elif drafter is None:
        from bioreason.drafting import NgramDrafter

        drafter = NgramDrafter()
    queue = deque(range(n_prompts))
    out: list[list[int]] = [[] for _ in range(total)]
    row_of: list[int] = []  # output row of each cache row (-1: free)
    forced: dict[int, deque] = {}  # output row -> forced token ids not yet fed (budget forcing)
    cap: dict[int, int] = {}  # output row -> its token cap once forced (max_new_tokens for the others)
    sc = None
    device = next(lm.parameters()).device
    tokens = positions = n_gen = None
    # on a CPU, wider steps cost more: their width is chosen from timed steps (on a GPU they are about free)
    timed = bool(draft) and device.type == "cpu" and hasattr(drafter, "width")

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
            if drafter is not None:
                drafter.start(row_of[r], prompt_ids(take[j // group]) if prompt_ids is not None else [])
        accept(rows, first)

    def emit(r: int, tok: int) -> int:
        """Cache row ``r``'s next token (budget forcing may replace it): recorded, and the row freed if it ends."""
        o = row_of[r]
        if o in forced:  # budget forcing: the forced token, not the model's
            tok = forced[o].popleft()
            if not forced[o]:
                del forced[o]
        out[o].append(tok)
        if drafter is not None:
            drafter.extend(o, (tok,))
        if on_token is not None:
            on_token(o, tok)
        if o in forced:
            return tok
        if tok == eos_id:
            row_of[r] = -1
        elif len(out[o]) >= cap.get(o, max_new_tokens):
            extra = list(force(out[o])) if force is not None and o not in cap else []
            if extra:
                forced[o] = deque(extra)
                cap[o] = len(out[o]) + len(extra) + answer_tokens
            else:
                row_of[r] = -1
        if row_of[r] < 0 and drafter is not None:
            drafter.finish(o)
        return tok

    def accept(rows: torch.Tensor, picked: torch.Tensor):
        emitted = [emit(r, tok) for r, tok in zip(rows.tolist(), picked.tolist())]
        tokens[rows] = torch.tensor(emitted, dtype=tokens.dtype, device=tokens.device)
        n_gen[rows] += 1

    def accept_drafts(busy: list[int], fed: torch.Tensor, logits: torch.Tensor):
        """After a step that fed each row its last token and drafts (``fed`` (rows, w)): each row emits the model's
        picks while they agree with what was fed after them; the columns of drafts it did not keep are masked."""
        w = fed.shape[1]
        idx = torch.tensor(busy, dtype=torch.long, device=device)
        gen = (n_gen[idx, None] + torch.arange(w, device=device)).reshape(-1)
        picks = _choose(logits[idx].reshape(len(busy) * w, -1), None, gen, min_new_tokens, eos_id, suppress)
        picks, fed_l, t0 = picks.view(len(busy), w).tolist(), fed[idx].tolist(), sc.t - w
        for i, r in enumerate(busy):
            m = kept = 0
            while True:
                tok = emit(r, picks[i][m])
                m += 1
                same = m < w and tok == fed_l[i][m]  # the model's pick is the draft fed after it
                kept += same
                if not same or row_of[r] < 0 or row_of[r] in forced:
                    break
            drafter.count(sum(1 for x in fed_l[i][1:] if x >= 0), kept)
            sc.mask[r, t0 + m:sc.t] = 0  # drafts not kept (their keys stay, unread, until overwritten or shifted)
            positions[r] += m
            n_gen[r] += m
            tokens[r] = tok

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
        drafts = {}
        if draft:
            for r in busy:
                o = row_of[r]
                d = [] if o in forced else drafter.propose(o, min(draft, cap.get(o, max_new_tokens) - len(out[o])))
                if d:
                    drafts[r] = d
        w = 1 + max((len(d) for d in drafts.values()), default=0)
        if timed:  # as many drafts as pay for their positions on this CPU (drafting.NgramDrafter.width)
            w = drafter.width([len(drafts.get(r, ())) for r in busy], len(busy), sc.rows)
            drafts = {r: d[:w - 1] for r, d in drafts.items()} if w > 1 else {}
        if sc.t + w > sc.cols:  # the cache's end: shift every row left by the columns no busy row uses, then grow
            sc.shift(-sc.starts(torch.tensor(busy, device=device)))
            sc.grow(sc.t + max(room, w))
        started = time.perf_counter()
        if w == 1:
            logits = sc.step(model, tokens, positions)
            if timed:
                drafter.cost.observe(sc.rows, time.perf_counter() - started)
            positions += 1
            idx = torch.tensor(busy, dtype=torch.long, device=device)
            accept(idx, _choose(logits[idx], sampler, n_gen[idx], min_new_tokens, eos_id, suppress))
            continue
        fed = torch.full((sc.rows, w), -1, dtype=torch.long, device=device)  # -1: no draft (fed as token 0)
        fed[:, 0] = tokens
        for r, d in drafts.items():
            fed[r, 1:1 + len(d)] = torch.tensor(d, dtype=torch.long, device=device)
        logits = sc.step(model, fed.clamp(min=0), positions[:, None] + torch.arange(w, device=device))
        if timed:
            drafter.cost.observe(sc.rows * w, time.perf_counter() - started)
        accept_drafts(busy, fed, logits)
    return out


__all__ = ["COMPACTION", "DRAFT", "GROW", "MAX_DRAFT", "SlotCache", "decode_slots"]
