"""DNA encoder registry, sequence clean-up, and the HyenaDNA port against the reference implementation."""

from __future__ import annotations

import logging

import pytest
import torch

from bioreason.dna_encoders import ENCODERS, build_encoder, build_tokenizer, clean_sequence, get_spec
from bioreason.errors import InvalidSequenceError, MissingDependencyError, UnknownEncoderError


def test_registry_lists_builtin_encoders():
    get_spec("tiny")
    assert {"tiny", "hyena", "nucleotide-transformer", "evo2"} <= set(ENCODERS)


def test_unknown_encoder_names_known_ones():
    with pytest.raises(UnknownEncoderError, match="known encoders: .*hyena"):
        get_spec("resnet")


def test_register_decorator_adds_a_new_encoder():
    from bioreason.dna_encoders import register
    from bioreason.dna_encoders.hyena import HyenaTokenizer

    @register("test-identity", tokenizer=HyenaTokenizer, default_config=lambda: {"max_nucleotides": 8,
                                                                                 "max_seq_len": 10})
    class Identity(torch.nn.Module):
        def __init__(self, cfg):
            super().__init__()
            self.hidden_size, self.max_length = 1, 8

        def forward(self, input_ids, attention_mask=None):
            return input_ids.unsqueeze(-1).float()

    try:
        out = build_encoder("test-identity")(torch.tensor([[7, 8]]))
        assert out.shape == (1, 2, 1) and out[0, 1, 0] == 8
    finally:
        ENCODERS.pop("test-identity")


@pytest.mark.parametrize("name,shape", [("tiny", (2, 9, 16)), ("hyena", (2, 9, 128))])
def test_encoder_shapes(name, shape):
    tok = build_tokenizer(name)
    batch = tok(["ACGTACGTA", "ACG"])
    assert batch["attention_mask"].tolist()[1] == [1, 1, 1] + [0] * 6  # right padding
    assert build_encoder(name)(**batch).shape == shape


def test_nucleotide_transformer_tiny_esm():
    tok = build_tokenizer("nucleotide-transformer")
    ids = tok.encode("ACGTAC" * 3 + "GT")
    assert len(ids) == tok.num_tokens(20) == 1 + 3 + 2
    enc = build_encoder("nucleotide-transformer")
    out = enc(**tok(["ACGTAC" * 3 + "GT", "ACGTAC"]))
    assert out.shape == (2, 6, 128)


def test_esm_checkpoints_load_strictly_and_nt_v2_layout_is_refused(tmp_path):
    """A local ESM-layout checkpoint loads tensor for tensor; one whose feed-forward is NT-v2's gated layout (the
    intermediate weight twice as wide, no bias) is refused with an error naming NT-v2, not half-loaded."""
    import torch
    from safetensors.torch import load_file, save_file
    from transformers import EsmConfig, EsmModel

    from bioreason.dna_encoders.nucleotide_transformer import _load_weights, default_config
    from bioreason.errors import CorruptModelError

    cfg = default_config()
    esm = dict(cfg["esm"], vocab_size=6 + 4 ** 6 + 5)
    ref = EsmModel(EsmConfig(**esm), add_pooling_layer=False)
    ref.save_pretrained(tmp_path / "esm")
    enc = build_encoder("nucleotide-transformer")
    _load_weights(enc, str(tmp_path / "esm"))
    assert all(torch.equal(a, b) for a, b in zip(enc.model.state_dict().values(), ref.state_dict().values()))
    ref.save_pretrained(tmp_path / "ntv2")
    weights = tmp_path / "ntv2" / "model.safetensors"
    state = load_file(weights)
    for name in [k for k in state if k.endswith("intermediate.dense.weight")]:  # SwiGLU: gate and value stacked
        state[name] = torch.randn(2 * esm["intermediate_size"], esm["hidden_size"])
    for name in [k for k in state if k.endswith("intermediate.dense.bias")]:
        del state[name]
    save_file(state, weights, metadata={"format": "pt"})
    with pytest.raises(CorruptModelError, match="NT-v2 checkpoints .* are not supported"):
        _load_weights(build_encoder("nucleotide-transformer"), str(tmp_path / "ntv2"))


def test_evo2_missing_package_gives_install_hint():
    pytest.importorskip("torch")
    try:
        import evo2  # noqa: F401
        pytest.skip("evo2 is installed")
    except ImportError:
        pass
    with pytest.raises(MissingDependencyError, match="pip install bioreason\\[evo2\\]"):
        build_encoder("evo2")


def test_clean_sequence_rules(caplog):
    assert clean_sequence("acgtn") == "ACGTN"
    with caplog.at_level(logging.WARNING):
        assert clean_sequence("ACRYT") == "ACNNT"
    assert "IUPAC" in caplog.text
    with pytest.raises(InvalidSequenceError, match="'X' at position 3"):
        clean_sequence("ACXT")
    with pytest.raises(InvalidSequenceError, match="empty"):
        clean_sequence("  ")


def test_hyena_port_matches_reference_implementation(real_windows):
    """Our native port equals the remote code shipped with the checkpoint, on real GRCh38 windows."""
    pytest.importorskip("anticapt", reason="the anticapt package holds the real HyenaDNA-tiny weights")
    from transformers import AutoModel, AutoTokenizer

    from bioreason.dna_encoders.hyena import anticapt_folder, load_anticapt_weights

    folder = str(anticapt_folder())
    # trust_remote_code is used here, in the test only, to run the reference implementation
    ref = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
    ref_tok = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
    port = load_anticapt_weights(build_encoder("hyena")).eval()
    ours = build_tokenizer("hyena")
    for seq in real_windows:
        ids = torch.tensor([ref_tok(seq)["input_ids"]])  # 1,024 nt + [SEP]
        assert ids[0, :-1].tolist() == ours.encode(seq)
        with torch.no_grad():
            r = ref(ids)
            r = r.last_hidden_state if hasattr(r, "last_hidden_state") else r
            same_ids = port(ids)
            no_sep = port(ids[:, :-1])  # our tokenizer's input (no [SEP]): causal, so equal up to FFT rounding
        assert (r - same_ids).abs().max().item() <= 1e-5  # same ids: the port is the reference (0.0 seen)
        # dropping [SEP] changes the FFT size (2,050 -> 2,048): float32 rounding only (about 1e-5 seen)
        assert (r[:, :-1] - no_sep).abs().max().item() <= 5e-5
