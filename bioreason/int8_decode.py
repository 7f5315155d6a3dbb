"""The ``int8-decode`` inference path: int8 copies of the LLM's linear weights, used by decode steps only.

Decoding one new token per row is bound by reading the weights (the embedded default's decoder linears and output
head: about 540 MB in fp32 per step), so an int8 copy read through torch's own ``_weight_int8pack_mm`` kernel
(bfloat16 activations, fp32 accumulation) makes each step several times cheaper, while prefills, which are
compute-bound and produce every score, label and probability, keep the fp32 weights untouched. A decode step is
whatever runs inside :func:`decoding_steps`: ``decoding.SlotCache.step`` (predict and eval traces) and the
``generate`` of ``inference.stream_answer`` (ask, the demo) enter it. Linears that read the same input (q/k/v,
gate/up) share one stacked int8 weight and one kernel call per step (``fuse_siblings``). GRPO sampling never gets
the copies (``quantize.quantize_model`` is for inference models only, and training changes the weights). Numbers:
the README's ``--quantize`` table.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading

import torch

_DECODING = contextvars.ContextVar("bioreason_decoding_steps", default=False)


@contextlib.contextmanager
def decoding_steps():
    """Model calls inside are decode steps (one new token per row): ``int8-decode`` linears use their int8 weights
    there and nowhere else. Per thread (a context variable), so a demo request scoring in another thread is not
    affected."""
    token = _DECODING.set(True)
    try:
        yield
    finally:
        _DECODING.reset(token)


class Int8DecodeLinear(torch.nn.Module):
    """An ``nn.Linear`` that keeps its fp32 weight (the same Parameter, so tied weights stay tied) and adds an int8
    copy for decode steps: inside :func:`decoding_steps`, for at most ``MAX_ROWS`` rows (a decode step's; a
    prefill's lengths fall back to fp32), ``y = _weight_int8pack_mm(x in bf16, q, s)`` with per-output-channel
    symmetric int8 ``q`` and bf16 scales ``s`` (the values are quantised against the rounded scale, so the
    kernel's scale is the one they were made with); elsewhere exactly ``F.linear(x, weight, bias)``."""

    MAX_ROWS = 64
    CHUNK = 2048  # output rows quantised at a time

    def __init__(self, linear: torch.nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight, self.bias = linear.weight, linear.bias
        w = linear.weight.detach()
        scale = (w.abs().amax(1) / 127).clamp(min=torch.finfo(torch.bfloat16).tiny).to(torch.bfloat16)
        q = torch.empty(w.shape, dtype=torch.int8, device=w.device)
        for i in range(0, w.shape[0], self.CHUNK):  # a few MB of temporaries at a time (the head is 113 MB in fp32)
            rows = slice(i, i + self.CHUNK)
            q[rows] = torch.round(w[rows].float() / scale[rows].float()[:, None]).clamp(-127, 127).to(torch.int8)
        self.register_buffer("qweight", q, persistent=False)
        self.register_buffer("qscale", scale, persistent=False)
        self.group = None  # a FusedGroup once fused with its siblings (fuse_siblings)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.numel() // self.in_features
        if not _DECODING.get() or rows > self.MAX_ROWS:
            return torch.nn.functional.linear(x, self.weight, self.bias)
        y = self.group.output(self, x) if self.group is not None else _int8_mm(x, self.qweight, self.qscale)
        return y if self.bias is None else y + self.bias

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 copy for decode steps"


def _int8_mm(x: torch.Tensor, qweight: torch.Tensor, qscale: torch.Tensor) -> torch.Tensor:
    """``x @ (qweight * qscale).T`` by torch's int8 kernel on bf16 activations, in ``x``'s shape and dtype."""
    rows = x.numel() // x.shape[-1]
    flat = x.reshape(rows, x.shape[-1]).to(torch.bfloat16).contiguous()
    y = torch.ops.aten._weight_int8pack_mm(flat, qweight, qscale).to(x.dtype)
    return y.reshape(*x.shape[:-1], qweight.shape[0])


class FusedGroup:
    """Sibling linears that read the same input (an attention's q, k and v projections; an MLP's gate and up) as
    one product: the first member called computes every member's output from one ``kernel`` call over their
    stacked weights (the ``buffers`` each member holds, e.g. int8 weight and scale), each member then takes its own
    slice for that same input tensor (checked by identity; a different input is computed afresh). One kernel call
    and one cast of the input instead of three (or two): a batch-1 decode step is mostly such fixed costs. Used by
    ``int8-decode`` (the int8 kernel; each output column is exactly what the member's own call gives: tested) and
    ``bf16-matmul`` (``bf16_products``). What has been computed but not yet handed out is kept per thread (the demo
    can run two requests at once on one model)."""

    def __init__(self, members: list, buffers: tuple = ("qweight", "qscale"), kernel=None):
        self.members, self.buffers, self.kernel = members, tuple(buffers), kernel  # None: _int8_mm
        self.sizes = [m.out_features for m in members]
        self._stack()

    def _stack(self):
        """Stack the members' buffers; each member's become views of its rows (the memory stays what it was)."""
        self.stacked = [torch.cat([getattr(m, b) for m in self.members]) for b in self.buffers]
        self.pending = {}  # thread id -> (input, {member: output not yet taken})
        for i, m in enumerate(self.members):
            for b, whole in zip(self.buffers, self.stacked):
                setattr(m, b, whole.split(self.sizes)[i])
            m.group = self

    def output(self, member, x: torch.Tensor) -> torch.Tensor:
        if self.stacked[0].device != x.device:  # the model was moved: the members' buffers went, the stack did not
            self._stack()
        thread = threading.get_ident()
        held, outs = self.pending.get(thread, (None, {}))
        if held is not x or member not in outs:
            outs = dict(zip(self.members, (self.kernel or _int8_mm)(x, *self.stacked).split(self.sizes, -1)))
            self.pending[thread] = (x, outs)
        out = outs.pop(member)
        if not outs:
            del self.pending[thread]  # nothing held between steps
        return out


def add_int8_decode_copies(lm) -> int:
    """Replace every ``nn.Linear`` of the LLM's decoder layers and its output head by an :class:`Int8DecodeLinear`;
    returns how many."""
    targets = [(parent, name, child) for parent in lm.modules() for name, child in parent.named_children()
               if type(child) is torch.nn.Linear]
    for parent, name, child in targets:
        setattr(parent, name, Int8DecodeLinear(child))
    fuse_siblings(lm)
    return len(targets)


SIBLINGS = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))  # Llama, Qwen, Mistral and kin


def fuse_siblings(lm, kind=None, buffers: tuple = ("qweight", "qscale"), kernel=None) -> int:
    """Make each module's q/k/v and gate/up children of type ``kind`` (default :class:`Int8DecodeLinear`) one
    :class:`FusedGroup` over their ``buffers`` and ``kernel``; returns how many groups."""
    kind, n = kind or Int8DecodeLinear, 0
    for parent in lm.modules():
        for names in SIBLINGS:
            members = [getattr(parent, k, None) for k in names]
            if all(isinstance(m, kind) and m.group is None for m in members) and \
                    len({m.in_features for m in members}) == 1:
                FusedGroup(members, buffers, kernel)
                n += 1
    return n


__all__ = ["FusedGroup", "Int8DecodeLinear", "SIBLINGS", "add_int8_decode_copies", "decoding_steps", "fuse_siblings"]
