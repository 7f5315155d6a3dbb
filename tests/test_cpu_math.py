"""bioreason.cpu_math: fp32 CPU matmuls on oneDNN only where they stay fp32, and the CLI's BIOREASON_CPU_MATMUL."""

from __future__ import annotations

import pytest
import torch

from bioreason import cpu_math
from bioreason.processing import user_message


@pytest.fixture
def fresh_probe():
    cpu_math.onednn_keeps_fp32.cache_clear()
    before = torch.backends.mkldnn.matmul.fp32_precision
    yield
    cpu_math.onednn_keeps_fp32.cache_clear()
    torch.backends.mkldnn.matmul.fp32_precision = before


def test_probe_refuses_a_backend_that_rounds_to_bf16(fresh_probe, monkeypatch):
    real = torch.nn.functional.linear

    def rounding(x, w, b=None):  # what oneDNN's bf16 fpmath does on CPUs with AMX
        return real(x.bfloat16().float(), w.bfloat16().float(), b)

    monkeypatch.setattr(torch.nn.functional, "linear", rounding)
    torch.backends.mkldnn.matmul.fp32_precision = "none"
    assert cpu_math.onednn_keeps_fp32() is False
    assert cpu_math.use_onednn_matmuls("auto") is False
    assert torch.backends.mkldnn.matmul.fp32_precision == "none"  # auto leaves torch as it was
    assert cpu_math.use_onednn_matmuls("onednn") is True  # asked for explicitly, it is the user's call


def test_modes_switch_and_restore(fresh_probe):
    torch.backends.mkldnn.matmul.fp32_precision = "none"
    with cpu_math.matmuls("onednn") as used:
        assert used and cpu_math.onednn_in_use()
        with cpu_math.matmuls("blas") as inner:
            assert not inner and not cpu_math.onednn_in_use()
        assert cpu_math.onednn_in_use()
    assert torch.backends.mkldnn.matmul.fp32_precision == "none"
    from bioreason.errors import BioreasonError

    with pytest.raises(BioreasonError, match="BIOREASON_CPU_MATMUL.*'fast'"):
        cpu_math.use_onednn_matmuls("fast")


@pytest.mark.skipif(not cpu_math.onednn_keeps_fp32(), reason="oneDNN rounds fp32 products on this CPU")
def test_onednn_scores_equal_blas_to_fp32_precision(fresh_probe):
    from bioreason.rl import score_candidates
    from bioreason.tiny import build_tiny

    model, proc = build_tiny(seed=1)
    prompts = [[user_message("Effect of this variant?", ["ACGT" * 40, "ACGA" + "ACGT" * 39])]]
    with torch.inference_mode():
        with cpu_math.matmuls("blas"):
            want = score_candidates(model.eval(), proc, prompts, ["pathogenic", "benign"])
        with cpu_math.matmuls("onednn"):
            got = score_candidates(model, proc, prompts, ["pathogenic", "benign"])
    assert torch.allclose(got, want, atol=1e-5, rtol=0), (got - want).abs().max()


def test_cli_names_a_bad_setting(monkeypatch, capsys, tmp_path):
    from bioreason.app.cli import main

    monkeypatch.setenv("BIOREASON_CPU_MATMUL", "gpu")
    assert main(["predict", str(tmp_path / "none.vcf"), "--fasta", "bundled", "-o", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "BIOREASON_CPU_MATMUL" in err and "'gpu'" in err and "Traceback" not in err


def test_a_torch_without_the_setting_is_left_alone(monkeypatch):
    from bioreason.errors import BioreasonError

    monkeypatch.setattr(cpu_math, "_backend", lambda: None)  # torch < 2.9
    assert cpu_math.use_onednn_matmuls("auto") is False and cpu_math.use_onednn_matmuls("blas") is False
    assert not cpu_math.onednn_in_use()
    with cpu_math.matmuls("auto") as used:
        assert used is False
    with pytest.raises(BioreasonError, match="torch >= 2.9"):
        cpu_math.use_onednn_matmuls("onednn")


def test_bf16_probe_says_no_where_bf16_products_fail_or_do_not_pay(monkeypatch):
    real = torch.nn.functional.linear
    cpu_math.bf16_products_pay.cache_clear()
    try:
        def no_bf16(x, w, b=None):
            if x.dtype == torch.bfloat16:
                raise RuntimeError("no bf16 matmul on this CPU")
            return real(x, w, b)

        monkeypatch.setattr(torch.nn.functional, "linear", no_bf16)
        assert cpu_math.bf16_products_pay() is False
        cpu_math.bf16_products_pay.cache_clear()

        def slow_bf16(x, w, b=None):  # emulated bfloat16: no faster than fp32
            out = real(x, w, b)
            if x.dtype == torch.bfloat16:
                real(x.float(), w.float(), b)
            return out

        monkeypatch.setattr(torch.nn.functional, "linear", slow_bf16)
        assert cpu_math.bf16_products_pay() is False
    finally:
        cpu_math.bf16_products_pay.cache_clear()
