"""Property tests (hypothesis) for the window builder on a random reference with real-like edges."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bioreason.kegg_data.reference import Reference
from bioreason.kegg_data.variants import Skip, Variant, WindowBuilder

LENGTH = 3000
W = 256


@pytest.fixture(scope="module")
def ref_path(tmp_path_factory):
    rng = random.Random(11)
    seq = "".join(rng.choice("ACGT") for _ in range(LENGTH))
    path = tmp_path_factory.mktemp("ref") / "r.fa"
    path.write_text(">c1\n" + "\n".join(seq[i:i + 70] for i in range(0, LENGTH, 70)) + "\n")
    return path


alleles = st.text(alphabet="ACGT", min_size=1, max_size=12)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pos=st.integers(1, LENGTH - 12), ref_len=st.integers(1, 12), alts=st.lists(alleles, min_size=1, max_size=4))
def test_window_invariants(ref_path, pos, ref_len, alts):
    reference = Reference(ref_path)
    builder = WindowBuilder(reference, window=W, max_allele_len=12)
    pos0 = pos - 1
    ref = reference.fetch("c1", pos0, pos0 + ref_len)
    out = builder.build("c1", pos, ref, alts)
    assert len(out) == len(alts)  # one outcome per ALT (multi-allelic split)
    s = builder.stats
    assert s.alleles == s.windows + s.skips == len(alts)
    off = W // 2
    for i, (alt, item) in enumerate(zip(alts, out)):
        if alt == ref:
            assert isinstance(item, Skip) and item.reason == "ALT equals REF"
            continue
        if alt in alts[:i]:  # a repeated ALT is predicted once
            assert isinstance(item, Skip) and item.reason == f"ALT {alt} repeats allele {alts.index(alt) + 1} of " \
                                                              "this record"
            continue
        assert isinstance(item, Variant)
        assert len(item.ref_window) == len(item.alt_window) == W  # length invariant
        assert item.offset == off and item.window_start == pos0 - off  # documented offset
        assert item.ref_window == reference.fetch("c1", pos0 - off, pos0 - off + W)  # the FASTA slice
        assert item.ref_window[off:off + len(ref)] == ref
        # the alternate window: same left flank, the allele, then the reference after REF
        assert item.alt_window[:off] == item.ref_window[:off]
        assert item.alt_window[off:off + len(alt)] == alt
        tail = reference.fetch("c1", pos0 + len(ref), pos0 + len(ref) + W - off - len(alt))
        assert item.alt_window[off + len(alt):] == tail
        if len(ref) == len(alt):  # substitutions differ exactly at the allele's changed bases
            diffs = [i for i in range(W) if item.ref_window[i] != item.alt_window[i]]
            assert diffs == [off + i for i in range(len(ref)) if ref[i] != alt[i]]
        padded = pos0 - off < 0 or pos0 - off + W > LENGTH or pos0 + len(ref) + W - off - len(alt) > LENGTH
        assert ("edge_padded" in item.flags) == padded


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pos=st.integers(1, LENGTH - 12), ref_len=st.integers(1, 6), wrong=st.sampled_from("ACGT"))
def test_ref_check_skip_catches_every_mismatch(ref_path, pos, ref_len, wrong):
    reference = Reference(ref_path)
    true = reference.fetch("c1", pos - 1, pos - 1 + ref_len)
    vcf_ref = wrong + true[1:]
    (item,) = WindowBuilder(reference, window=W, ref_check="skip", max_allele_len=12).build(
        "c1", pos, vcf_ref, ["A" * 7])
    assert isinstance(item, Skip) == (vcf_ref != true)
