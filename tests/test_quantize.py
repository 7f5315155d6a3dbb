"""``--quantize``: the LLM's decoder linears really become torchao int8 layers, a LoRA adapter is merged first (its
update is kept), scores stay close to the fp32 model's, predict runs end to end with it, and a bad mode, a GPU
model or a missing torchao is a one-line error."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from bioreason.processing import user_message

PROMPTS = [[user_message("Is this variant pathogenic?", ["ACGT" * 40, "ACGA" + "ACGT" * 39])],
           [user_message("Effect?", ["TTGACC" * 20])]]


def _lora_tiny():
    from bioreason.modeling import apply_lora
    from bioreason.tiny import build_tiny

    model, proc = build_tiny(seed=2)
    peft = apply_lora(model, r=4, alpha=8, dropout=0.0)
    torch.manual_seed(2)
    with torch.no_grad():  # a non-zero adapter, so losing it on merge would show
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.add_(torch.randn_like(p) * 0.5)
    return peft.eval(), proc


@pytest.mark.parametrize("mode", ["int8", "int8-weight", "bf16"])
def test_quantized_scores_stay_close_and_keep_the_adapter(mode):
    pytest.importorskip("torchao")
    from bioreason.modeling import unwrap_dna_llm
    from bioreason.quantize import quantize_model
    from bioreason.rl import score_candidates

    model, proc = _lora_tiny()
    with torch.inference_mode():
        want = score_candidates(model, proc, PROMPTS, ["pathogenic", "benign"])
        with model.disable_adapter():
            no_adapter = score_candidates(model, proc, PROMPTS, ["pathogenic", "benign"])
    q = quantize_model(model, mode)
    assert not hasattr(q, "peft_config")  # merged for good: inference only
    lm = unwrap_dna_llm(q).language_model
    first = lm.get_decoder().layers[0].self_attn.q_proj
    if mode == "bf16":
        assert first.weight.dtype == torch.bfloat16
    else:
        assert type(first.weight) not in (torch.Tensor, torch.nn.Parameter)  # a torchao int8 tensor subclass
    with torch.inference_mode():
        got = score_candidates(q, proc, PROMPTS, ["pathogenic", "benign"])
    err, adapter = (got - want).abs().max(), (no_adapter - want).abs().max()
    assert err < 0.5 * adapter, (err, adapter)  # much closer to the adapted model than the adapter's own effect


def test_bad_mode_gpu_and_missing_torchao_are_one_line_errors(monkeypatch):
    from bioreason.errors import BioreasonError, MissingDependencyError
    from bioreason.quantize import quantize_model
    from bioreason.tiny import build_tiny

    model, _ = build_tiny(seed=0)
    with pytest.raises(BioreasonError, match="int4"):
        quantize_model(model, "int4")
    monkeypatch.setitem(sys.modules, "torchao.quantization", None)  # as if torchao were not installed
    with pytest.raises(MissingDependencyError, match="pip install"):
        quantize_model(model, "int8")
    assert quantize_model(model, "none") is model


def test_predict_with_quantize_writes_labels(tiny_model_dir, tmp_path):
    pytest.importorskip("torchao")
    from bioreason.app.cli import main

    vcf = Path(__file__).resolve().parents[1] / "examples" / "brca1_sge_24.vcf"
    prefix = tmp_path / "q"
    assert main(["predict", str(vcf), "--fasta", "bundled", "--model", str(tiny_model_dir), "-o", str(prefix),
                 "--quantize", "int8", "--traces", "--max-new-tokens", "6"]) == 0
    rows = [json.loads(x) for x in Path(f"{prefix}.jsonl").read_text().splitlines()]
    assert len(rows) == 24 and all(r["label"] and "trace" in r for r in rows)
