"""``--quantize``: the LLM's decoder linears really become torchao int8 layers, a LoRA adapter is merged first (its
update is kept), scores stay close to the fp32 model's, predict runs end to end with it, and a bad mode, a GPU
model or a missing torchao is a one-line error; ``int8-decode`` scores bit for bit as fp32 and uses its int8
copies in decode steps only (and only in the thread that is decoding)."""

from __future__ import annotations

import json
import shutil
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


def test_int8_decode_on_a_torch_without_the_int8_kernel_is_a_one_line_error(monkeypatch):
    from types import SimpleNamespace

    from bioreason.errors import BioreasonError
    from bioreason.quantize import quantize_model
    from bioreason.tiny import build_tiny

    model, _ = build_tiny(seed=0)
    monkeypatch.setattr(torch, "ops", SimpleNamespace(aten=SimpleNamespace()))  # as torch before 2.4
    with pytest.raises(BioreasonError, match="_weight_int8pack_mm.*leave --quantize at none"):
        quantize_model(model, "int8-decode")


def test_predict_with_quantize_writes_labels(tiny_model_dir, tmp_path):
    pytest.importorskip("torchao")
    from bioreason.app.cli import main

    vcf = Path(__file__).resolve().parents[1] / "examples" / "brca1_sge_24.vcf"
    prefix = tmp_path / "q"
    assert main(["predict", str(vcf), "--fasta", "bundled", "--model", str(tiny_model_dir), "-o", str(prefix),
                 "--quantize", "int8", "--traces", "--max-new-tokens", "6"]) == 0
    rows = [json.loads(x) for x in Path(f"{prefix}.jsonl").read_text().splitlines()]
    assert len(rows) == 24 and all(r["label"] and "trace" in r for r in rows)


def test_int8_decode_linear_is_fp32_outside_decode_steps_and_int8_inside():
    import threading

    from bioreason.int8_decode import Int8DecodeLinear, decoding_steps

    torch.manual_seed(0)
    lin = torch.nn.Linear(96, 40)
    q = Int8DecodeLinear(lin)
    assert q.weight is lin.weight and q.qweight.dtype == torch.int8 and q.qscale.dtype == torch.bfloat16
    x = torch.randn(3, 1, 96)
    want = torch.nn.functional.linear(x, lin.weight, lin.bias)
    with torch.no_grad():
        assert torch.equal(q(x), want)  # no decode step: the fp32 weight, bit for bit
        with decoding_steps():
            got = q(x)
            long = torch.randn(Int8DecodeLinear.MAX_ROWS + 1, 96)
            assert torch.equal(q(long), torch.nn.functional.linear(long, lin.weight, lin.bias))  # a prefill's rows
            seen = []
            worker = threading.Thread(target=lambda: seen.append(q(x)))  # another thread is not in a decode step
            worker.start()
            worker.join()
    assert got.shape == want.shape and got.dtype == want.dtype and not torch.equal(got, want)
    assert (got - want).abs().max() < 0.02 * want.abs().max(), (got - want).abs().max()
    assert torch.equal(seen[0], want)


def test_int8_decode_scores_exactly_as_fp32_and_decodes_with_the_int8_copies():
    import copy

    from bioreason.inference import stream_answer
    from bioreason.int8_decode import Int8DecodeLinear
    from bioreason.modeling import unwrap_dna_llm
    from bioreason.quantize import merge_adapter_for_good, quantize_model
    from bioreason.rl import score_candidates
    from bioreason.sampling import sample_groups

    model, proc = _lora_tiny()
    fp32 = merge_adapter_for_good(copy.deepcopy(model)).eval()
    q = quantize_model(model, "int8-decode")
    lm = unwrap_dna_llm(q).language_model
    linears = [m for m in lm.modules() if isinstance(m, Int8DecodeLinear)]
    assert len(linears) == 7 * lm.config.num_hidden_layers + 1  # q k v o gate up down per layer, and the head
    assert lm.lm_head.weight is lm.get_input_embeddings().weight  # still tied, not copied
    with torch.inference_mode():
        assert torch.equal(score_candidates(q, proc, PROMPTS, ["pathogenic", "benign"]),
                           score_candidates(fp32, proc, PROMPTS, ["pathogenic", "benign"]))
        greedy = sample_groups(q, proc, PROMPTS, 1, 12, do_sample=False, min_new_tokens=12).completion_ids
    streamed = "".join(stream_answer(q, proc, PROMPTS[0], max_new_tokens=12))  # ask and the demo: generate
    with torch.inference_mode():
        for m in linears:  # decode steps read these copies and nothing else does
            m.qweight.zero_()
        zeroed = sample_groups(q, proc, PROMPTS, 1, 12, do_sample=False, min_new_tokens=12).completion_ids
        assert torch.equal(score_candidates(q, proc, PROMPTS, ["pathogenic", "benign"]),
                           score_candidates(fp32, proc, PROMPTS, ["pathogenic", "benign"]))
    assert torch.equal(greedy[:, 0], zeroed[:, 0])  # the first token comes from the fp32 prefill
    assert not torch.equal(greedy, zeroed)
    assert "".join(stream_answer(q, proc, PROMPTS[0], max_new_tokens=12)) != streamed


def test_int8_decode_fuses_siblings_into_one_kernel_call_with_the_same_tokens(monkeypatch):
    import threading

    from bioreason import int8_decode
    from bioreason.modeling import unwrap_dna_llm
    from bioreason.quantize import quantize_model
    from bioreason.sampling import sample_groups

    model, proc = _lora_tiny()
    q = quantize_model(model, "int8-decode")
    lm = unwrap_dna_llm(q).language_model
    attn, mlp = lm.model.layers[0].self_attn, lm.model.layers[0].mlp
    assert attn.q_proj.group is attn.k_proj.group is attn.v_proj.group is not None
    assert mlp.gate_proj.group is mlp.up_proj.group is not None and mlp.down_proj.group is None
    assert attn.k_proj.qweight.data_ptr() != attn.q_proj.qweight.data_ptr()  # views of the stack, not copies
    assert attn.k_proj.qweight.untyped_storage().data_ptr() == attn.q_proj.group.stacked[0].untyped_storage().data_ptr()
    calls = []
    real = int8_decode._int8_mm
    monkeypatch.setattr(int8_decode, "_int8_mm", lambda *a: calls.append(1) or real(*a))

    def greedy():
        calls.clear()
        with torch.inference_mode():
            return sample_groups(q, proc, PROMPTS, 1, 6, do_sample=False, min_new_tokens=6).completion_ids

    fused = greedy()
    per_step = 4 * lm.config.num_hidden_layers + 1  # qkv, o, gate+up, down per layer, and the head
    assert len(calls) == 5 * per_step  # 6 tokens: the first from the prefill, 5 decode steps
    groups = {m: m.group for m in lm.modules() if isinstance(m, int8_decode.Int8DecodeLinear)}
    for m in groups:
        m.group = None  # each linear on its own view: the kernel once per linear
    alone = greedy()
    assert len(calls) == 5 * (7 * lm.config.num_hidden_layers + 1)
    assert torch.equal(fused, alone)
    for m, g in groups.items():
        m.group = g
    x = torch.randn(2, 1, attn.q_proj.in_features)
    with torch.no_grad(), int8_decode.decoding_steps():
        k_first = attn.k_proj(x)  # any call order, and a member called twice, gets its own slice
        assert torch.equal(attn.q_proj(x), real(x, attn.q_proj.qweight, attn.q_proj.qscale))
        assert torch.equal(attn.k_proj(x), k_first)
        x, other, seen = torch.randn_like(x), torch.randn_like(x), []
        calls.clear()
        attn.q_proj(x)  # k and v pending for this thread; another thread's decode step in between leaves them alone

        def step():
            with int8_decode.decoding_steps():
                seen.extend(m(other) for m in (attn.q_proj, attn.k_proj, attn.v_proj))

        worker = threading.Thread(target=step)
        worker.start()
        worker.join()
        for m in (attn.k_proj, attn.v_proj):
            assert torch.equal(m(x), real(x, m.qweight, m.qscale))
        assert len(calls) == 2  # one stacked product per thread's step: none computed twice
        assert torch.equal(seen[1], real(other, attn.k_proj.qweight, attn.k_proj.qscale))
        assert not attn.q_proj.group.pending  # every output taken: nothing held


def test_bf16_matmul_rounds_only_the_products_and_siblings_share_one_rounding(monkeypatch):
    from bioreason import int8_decode
    from bioreason.bf16_products import BF16Products, bf16_linear
    from bioreason.modeling import unwrap_dna_llm
    from bioreason.quantize import quantize_model
    from bioreason.rl import score_candidates

    torch.manual_seed(0)
    lin = torch.nn.Linear(96, 40)
    x = torch.randn(3, 5, 96)
    with torch.no_grad():
        got = BF16Products(lin)(x)
    want = torch.nn.functional.linear(x.bfloat16(), lin.weight.bfloat16()).float() + lin.bias
    assert got.dtype == torch.float32 and torch.equal(got, want)

    model, proc = _lora_tiny()
    with torch.inference_mode():
        want = score_candidates(model, proc, PROMPTS, ["pathogenic", "benign"])
        with model.disable_adapter():
            no_adapter = score_candidates(model, proc, PROMPTS, ["pathogenic", "benign"])
    q = quantize_model(model, "bf16-matmul")
    lm = unwrap_dna_llm(q).language_model
    products = [m for m in lm.modules() if isinstance(m, BF16Products)]
    assert len(products) == 7 * lm.config.num_hidden_layers  # q k v o gate up down per layer; the head stays fp32
    assert all(m.bweight.dtype == torch.bfloat16 for m in products)
    assert {p.dtype for p in q.parameters()} == {torch.float32}  # norms, embeddings, head, encoder, projector
    attn = lm.model.layers[0].self_attn
    assert attn.q_proj.group is attn.v_proj.group is not None and attn.o_proj.group is None
    calls = []
    monkeypatch.setattr(int8_decode.FusedGroup, "output",
                        lambda self, m, x, real=int8_decode.FusedGroup.output: calls.append(1) or real(self, m, x))
    with torch.inference_mode():
        got = score_candidates(q, proc, PROMPTS, ["pathogenic", "benign"])
        stacked = attn.q_proj(torch.randn(2, 3, attn.q_proj.in_features))
    assert calls and stacked.dtype == torch.float32
    err, adapter = (got - want).abs().max(), (no_adapter - want).abs().max()
    assert got.dtype == want.dtype and 0 < err < 0.2 * adapter, (err, adapter)
    x = torch.randn(2, 3, attn.q_proj.in_features)
    with torch.inference_mode():  # the stacked product gives each member what its own product gives
        for m in (attn.q_proj, attn.k_proj, attn.v_proj):
            assert torch.allclose(m(x), bf16_linear(x, m.bweight), atol=1e-6)


def test_auto_quantize_is_bf16_matmul_only_on_a_cpu_where_it_pays(monkeypatch):
    from bioreason import cpu_math
    from bioreason.quantize import quantize_model, resolve_mode
    from bioreason.tiny import build_tiny

    monkeypatch.setattr(cpu_math, "bf16_products_pay", lambda: True)
    assert resolve_mode("auto", torch.device("cpu")) == "bf16-matmul"
    assert resolve_mode("auto", "cuda:0") == "none" and resolve_mode("int8", "cpu") == "int8"
    model, _ = build_tiny(seed=0)
    assert quantize_model(model, "auto")._bioreason_quantized == "bf16-matmul"
    monkeypatch.setattr(cpu_math, "bf16_products_pay", lambda: False)
    model, _ = build_tiny(seed=0)
    assert quantize_model(model, "auto") is model


def test_cli_default_quantize_is_bf16_matmul_for_scoring_and_for_text_where_the_model_allows(tiny_model_dir, tmp_path,
                                                                                            monkeypatch):
    """``--quantize auto`` (the default) resolves before the model loads: bf16-matmul for predict and eval that
    only score, none when they write traces unless the model's task file allows it; the eval report names the mode
    that ran."""
    from bioreason import checkpoints, cpu_math
    from bioreason.app.cli import main

    monkeypatch.setattr(cpu_math, "bf16_products_pay", lambda: True)
    loaded, real = [], checkpoints.load_model
    monkeypatch.setattr(checkpoints, "load_model", lambda *a, **k: loaded.append(k.get("quantize")) or real(*a, **k))
    vcf = Path(__file__).resolve().parents[1] / "examples" / "brca1_sge_24.vcf"
    common = ["--fasta", "bundled", "--model", str(tiny_model_dir)]
    assert main(["predict", str(vcf), *common, "-o", str(tmp_path / "s")]) == 0
    assert main(["predict", str(vcf), *common, "-o", str(tmp_path / "t"), "--traces", "--max-new-tokens", "4"]) == 0
    assert main(["predict", str(vcf), *common, "-o", str(tmp_path / "n"), "--quantize", "none"]) == 0
    assert [q for q in loaded if q] == ["bf16-matmul", "none", "none"]  # (None: its inner fp32 load)
    assert "##bioreasonQuantize=bf16-matmul" in (tmp_path / "s.vcf").read_text()
    assert "##bioreasonQuantize=none" in (tmp_path / "t.vcf").read_text()
    assert main(["eval", "--task", "toy", "--model", str(tiny_model_dir), "-o", str(tmp_path / "e")]) == 0
    assert json.loads((tmp_path / "e" / "report.json").read_text())["meta"]["quantize"] == "bf16-matmul"
    assert main(["eval", "--task", "toy", "--model", str(tiny_model_dir), "--traces", "2", "--max-new-tokens", "4",
                 "-o", str(tmp_path / "f")]) == 0
    assert json.loads((tmp_path / "f" / "report.json").read_text())["meta"]["quantize"] == "none"
    allowed = tmp_path / "allowed"  # a model whose task file allows bf16 products for its generated text
    shutil.copytree(tiny_model_dir, allowed)
    task = allowed / "bioreason_task.json"
    meta = json.loads(task.read_text()) if task.is_file() else {}
    task.write_text(json.dumps({**meta, "auto_quantize_generation": {"bf16-matmul": ["annotated"]}}))
    loaded.clear()
    assert main(["predict", str(vcf), "--fasta", "bundled", "--model", str(allowed), "-o", str(tmp_path / "a"),
                 "--traces", "--max-new-tokens", "4"]) == 0
    assert [q for q in loaded if q] == ["bf16-matmul"]
    assert "##bioreasonQuantize=bf16-matmul" in (tmp_path / "a.vcf").read_text()
    assert main(["predict", str(vcf), "--fasta", "bundled", "--model", str(allowed), "-o", str(tmp_path / "q"),
                 "--traces", "--max-new-tokens", "4", "--prompt-mode", "sequence"]) == 0  # prompts not measured
    assert "##bioreasonQuantize=none" in (tmp_path / "q.vcf").read_text()
    monkeypatch.setattr(cpu_math, "bf16_products_pay", lambda: False)  # and only where bf16 products pay
    assert main(["predict", str(vcf), "--fasta", "bundled", "--model", str(allowed), "-o", str(tmp_path / "b"),
                 "--traces", "--max-new-tokens", "4"]) == 0
    assert "##bioreasonQuantize=none" in (tmp_path / "b.vcf").read_text()
    task.write_text(json.dumps({**meta, "auto_quantize_generation": {"int8": ["annotated"]}}))  # bf16 products only
    assert main(["predict", str(vcf), "--fasta", "bundled", "--model", str(allowed), "-o", str(tmp_path / "c"),
                 "--traces"]) == 2


def test_shipped_models_allow_bf16_products_for_generation_only_where_measured(monkeypatch):
    """The BRCA1 model's traces on annotated prompts were measured under bf16 products (395/398 validation traces
    identical, the 24-variant example's all; README), on sequence-only prompts they flip (17/24 labels); kegg-v1's
    text stays fp32 (a quarter of its traces move), so eval reproduces its published figures."""
    from bioreason import cpu_math
    from bioreason.hub import shipped_model_dir
    from bioreason.quantize import generation_mode, resolve_for_model

    monkeypatch.setattr(cpu_math, "bf16_products_pay", lambda: True)
    brca1, kegg = shipped_model_dir(), shipped_model_dir("kegg-v1")
    if brca1 is None or kegg is None:
        pytest.skip("the shipped checkpoints are not installed")
    assert [generation_mode(m, "annotated") for m in (brca1, kegg, None)] == ["bf16-matmul", "none", "none"]
    assert generation_mode(brca1, "sequence") == generation_mode(brca1) == "none"
    assert [resolve_for_model("auto", m, True, "annotated") for m in (brca1, kegg, None)] == ["bf16-matmul", "none",
                                                                                              "none"]
    assert resolve_for_model("auto", kegg, generates=False) == "bf16-matmul"


def test_resumed_predict_keeps_the_mode_auto_chose_when_it_started(tiny_model_dir, tmp_path, monkeypatch):
    """A probe that answers differently on resume (a busy machine) does not refuse the resume or mix modes."""
    from bioreason import cpu_math
    from bioreason.app import predict_job
    from bioreason.app.cli import main

    vcf = Path(__file__).resolve().parents[1] / "examples" / "brca1_sge_24.vcf"
    args = ["predict", str(vcf), "--fasta", "bundled", "--model", str(tiny_model_dir), "-o", str(tmp_path / "r"),
            "--batch-size", "8"]
    monkeypatch.setattr(cpu_math, "bf16_products_pay", lambda: True)
    real = predict_job.write_outputs

    def crash(*a, **k):
        raise KeyboardInterrupt  # killed after every batch reached the progress file

    monkeypatch.setattr(predict_job, "write_outputs", crash)
    assert main(args) != 0  # the CLI reports the interruption
    assert list(tmp_path.glob("r.progress.rank*.jsonl"))
    monkeypatch.setattr(predict_job, "write_outputs", real)
    monkeypatch.setattr(cpu_math, "bf16_products_pay", lambda: False)
    assert main(args + ["--resume"]) == 0
    assert "##bioreasonQuantize=bf16-matmul" in (tmp_path / "r.vcf").read_text()
