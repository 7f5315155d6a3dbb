"""The ``bf16-matmul`` inference path: the LLM's linear products in bfloat16, everything else in fp32.

``--quantize bf16`` casts the whole LLM to bfloat16, residual stream, norms and attention included; on the shipped
BRCA1 model that moves 23 of 120 labels and the validation AUROC by 0.010. Here only the products of the decoder
layers' linears run in bfloat16, as mixed-precision autocast does: each weight is kept once, in bfloat16 (half the
memory), each input is rounded to bfloat16 for the product, and the output comes back to the input's dtype (fp32)
before it meets the residual stream; the norms, the rotary embedding, attention, the output head, the DNA encoder
and the projector stay fp32. On CPUs with native bfloat16 matmuls (AVX512-BF16, AMX) those products run at about
twice fp32's rate (``cpu_math.bf16_products_pay`` measures it once per process), and scoring, which is mostly those
products, gets about 1.4x faster. Linears reading the same input (q/k/v, gate/up) share one rounding and one
product over their stacked weights (``int8_decode.FusedGroup``). What it changes on the shipped models (labels,
AUROC, traces, speed) is in the README; ``quantize.resolve_mode`` makes it the CLI's default where it pays.
"""

from __future__ import annotations

import torch


def bf16_linear(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``x @ weight.T`` with ``x`` rounded to bfloat16 (``weight`` is), returned in ``x``'s dtype."""
    return torch.nn.functional.linear(x.to(torch.bfloat16), weight).to(x.dtype)


class BF16Products(torch.nn.Module):
    """An ``nn.Linear`` whose product runs in bfloat16: ``y = linear(x in bf16, W in bf16)`` back in ``x``'s dtype,
    plus the bias (kept as it was). Inference only: the weight is a bfloat16 copy held as a buffer (``bweight``)."""

    def __init__(self, linear: torch.nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.register_buffer("bweight", linear.weight.detach().to(torch.bfloat16))
        self.bias = linear.bias
        self.group = None  # an int8_decode.FusedGroup once stacked with its siblings

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.group.output(self, x) if self.group is not None else bf16_linear(x, self.bweight)
        return y if self.bias is None else y + self.bias

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, products in bfloat16"


def add_bf16_products(decoder) -> int:
    """Replace every ``nn.Linear`` inside the decoder's layers by a :class:`BF16Products` and stack the q/k/v and
    gate/up siblings; returns how many linears."""
    from bioreason.int8_decode import fuse_siblings

    targets = [(parent, name, child) for layer in decoder.layers for parent in layer.modules()
               for name, child in parent.named_children() if type(child) is torch.nn.Linear]
    for parent, name, child in targets:
        setattr(parent, name, BF16Products(child))
    fuse_siblings(decoder, BF16Products, ("bweight",), bf16_linear)
    return len(targets)


__all__ = ["BF16Products", "add_bf16_products", "bf16_linear"]
