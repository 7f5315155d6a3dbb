"""Frozen weights cast once for mixed-precision training, not on every call (``keep_frozen_casts``).

Under ``torch.autocast`` each linear casts its fp32 weight to the autocast dtype (bf16) on every call. Autocast's
own cache keeps a cast only for leaf weights that require grad, and only until its context exits, so in LoRA
training the frozen base weights (all of the LLM but the adapters) are cast afresh on every forward: every micro-
batch of SFT, the recomputed forward of gradient checkpointing, and every decode step of GRPO sampling, which runs
under the trainer's autocast (``training/grpo.py``). For the embedded default that is ~135M weights read in fp32 and
written in bf16 per call (the tied output head included): ~0.8 GB of memory traffic, more than a decode step's
products at GRPO's batch sizes. Here each frozen ``nn.Linear`` of the LLM keeps its cast copy (weight and bias) and
makes it again only when the weight may have changed: another autocast dtype, another storage or version counter
(``load_state_dict`` on resume), or ``invalidate()``, which ``modeling.merged_lora`` calls around its merge (peft
changes weights through ``weight.data``, which bumps no version counter, and a new storage can reuse a freed
address). The product is then ``linear(x in bf16, W in bf16, b in bf16)``, exactly what autocast computes, so
losses, gradients and samples are bit-identical (tested); outside autocast, or for a weight that requires grad, the
layer runs as it always did. The cost is the copies' memory (half the frozen weights' fp32 bytes). The trainer turns
it on for bf16/fp16 mixed precision on CPUs (one process or several): on a GPU the cast is cheap and memory scarce,
and under FSDP or DeepSpeed a whole-weight copy per layer would undo the sharding. Measured
(``benchmarks/train_step.py``, README): the GRPO step 1.3x faster, the SFT step within noise.
"""

from __future__ import annotations

import torch

KEEP = True  # False: layers given kept copies cast per call again, as autocast does (benchmarks' A/B switch)
_GENERATION = [0]  # bumped by invalidate(): every cached copy is remade at its next use


def invalidate() -> None:
    """Every cached copy is stale (the weights were changed in place, e.g. an adapter merged into them)."""
    _GENERATION[0] += 1


def _cached_forward(self, x: torch.Tensor) -> torch.Tensor:
    w, b = self.weight, self.bias
    device = x.device.type
    if (not KEEP or not torch.is_autocast_enabled(device) or w.requires_grad or (b is not None and b.requires_grad)
            or not w.is_floating_point()):
        return type(self).forward(self, x)
    dtype = torch.get_autocast_dtype(device)
    key = (dtype, w.data_ptr(), w._version, _GENERATION[0])
    cached = self._bioreason_cast
    if cached is None or cached[0] != key:
        with torch.no_grad():
            cached = (key, w.detach().to(dtype), None if b is None else b.detach().to(dtype))
        self._bioreason_cast = cached
    return torch.nn.functional.linear(x.to(dtype) if x.is_floating_point() else x, cached[1], cached[2])


def keep_frozen_casts(language_model) -> int:
    """Give every frozen ``nn.Linear`` of ``language_model`` (peft's base layers included) a kept autocast copy of its
    weight; returns how many. Layers that train are left as they are (checked again at each call)."""
    count = 0
    for module in language_model.modules():
        if type(module) is torch.nn.Linear and not module.weight.requires_grad and "forward" not in vars(module):
            module._bioreason_cast = None
            module.forward = _cached_forward.__get__(module)
            count += 1
    return count


def drop_frozen_casts(language_model) -> None:
    """Undo :func:`keep_frozen_casts`: the layers run as before and their copies' memory is freed."""
    for module in language_model.modules():
        if vars(module).get("forward") is not None and getattr(module.forward, "__func__", None) is _cached_forward:
            del module.forward, module._bioreason_cast


__all__ = ["drop_frozen_casts", "invalidate", "keep_frozen_casts"]
