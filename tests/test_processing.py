"""DNALLMProcessor: placeholder expansion, label masking, truncation rules, bad sequences, batching."""

from __future__ import annotations

import pytest

from bioreason.errors import InvalidSequenceError, SequenceTooLongError, TruncationError
from bioreason.processing import IGNORE_INDEX, user_message


def _conv(seqs, q="Is it pathogenic?", a="<think>reason</think>\nAnswer: benign"):
    return [user_message(q, seqs), {"role": "assistant", "content": a}]


def test_each_dna_marker_expands_to_its_pooled_count(tiny_session):
    _, proc = tiny_session
    b = proc([_conv(["A" * 1024, "C" * 33])])
    ids = b["input_ids"][0].tolist()
    assert ids.count(proc.dna_pad_id) == 64 + 3
    assert ids.count(proc.dna_start_id) == ids.count(proc.dna_end_id) == 2
    # each block: start, n pads, end, in order
    s = ids.index(proc.dna_start_id)
    assert ids[s + 1:s + 65] == [proc.dna_pad_id] * 64 and ids[s + 65] == proc.dna_end_id
    assert b["dna_input_ids"].shape == (2, 1024)


def test_labels_cover_only_the_answer_and_its_end_of_turn(tiny_session):
    _, proc = tiny_session
    b = proc([_conv(["ACGT" * 8])])
    labels, ids = b["labels"][0].tolist(), b["input_ids"][0].tolist()
    first = next(i for i, t in enumerate(labels) if t != IGNORE_INDEX)
    answer = proc.tokenizer.decode([t for t in labels if t != IGNORE_INDEX])
    assert answer.startswith("<think>reason</think>\nAnswer: benign<|im_end|>")
    assert proc.dna_pad_id not in labels
    assert proc.tokenizer.decode(ids[:first]).endswith("<|im_start|>assistant\n")
    assert proc.tokenizer.eos_token_id in labels  # the model learns to stop


def test_truncation_cuts_answer_tail_only(tiny_session):
    _, proc = tiny_session
    full = proc([_conv(["ACGT" * 8], a="word " * 40)])
    n = full["input_ids"].shape[1]
    cut = proc([_conv(["ACGT" * 8], a="word " * 40)], max_length=n - 10)
    assert cut["input_ids"].shape[1] == n - 10
    assert cut["input_ids"][0].tolist() == full["input_ids"][0, : n - 10].tolist()


def test_truncation_never_cuts_a_dna_block(tiny_session):
    _, proc = tiny_session
    conv = _conv(["A" * 1024])
    with pytest.raises(TruncationError, match="cut a DNA block"):
        proc([conv], max_length=40)
    out, kept = proc([conv, _conv(["ACGT"])], max_length=40, truncation="drop", return_kept=True)
    assert kept == [1] and out["input_ids"].shape[0] == 1
    assert int((out["input_ids"] == proc.dna_pad_id).sum()) == out["dna_input_ids"].shape[0] == 1


def test_truncation_that_removes_whole_answer_is_an_error(tiny_session):
    _, proc = tiny_session
    conv = _conv(["ACGT"], q="long question " * 30)
    n_prompt = len(proc.encode_one(conv)["labels"]) - 20
    with pytest.raises(TruncationError, match="whole answer"):
        proc([conv], max_length=n_prompt - 5)


def test_bad_sequences(tiny_session):
    _, proc = tiny_session
    with pytest.raises(InvalidSequenceError, match="DNA sequence 2 has the character 'Z' at position 4"):
        proc([[user_message("q", ["ACGT", "ACGZ"])]])
    with pytest.raises(InvalidSequenceError, match="DNA sequence 1 is empty"):
        proc([[user_message("q", [""])]])
    with pytest.raises(SequenceTooLongError, match="1,025 nt .* at most 1,024"):
        proc([[user_message("q", ["A" * 1025])]])
    lower = proc([[user_message("q", ["acgtr"])]])
    assert lower["dna_input_ids"][0].tolist() == proc.dna_tokenizer.encode("ACGTN")


def test_batch_pads_text_and_dna(tiny_session):
    _, proc = tiny_session
    prompts = proc([[user_message("q", ["ACGT"])], [user_message("a longer question", ["A" * 40, "C" * 20])]])
    assert prompts["input_ids"].shape[0] == 2 and "labels" not in prompts
    assert prompts["attention_mask"][0, 0] == 0  # prompts are left-padded for generation
    assert prompts["dna_input_ids"].shape == (3, 40)
    assert prompts["dna_attention_mask"].sum(1).tolist() == [4, 40, 20]
    train = proc([_conv(["ACGT"]), _conv(["A" * 40], a="a much longer answer here")])
    assert train["attention_mask"][0, -1] == 0  # training batches are right-padded


def test_processor_round_trip(tiny_session, tmp_path):
    from bioreason.processing import DNALLMProcessor

    _, proc = tiny_session
    proc.save_pretrained(tmp_path)
    again = DNALLMProcessor.from_pretrained(tmp_path)
    conv = _conv(["ACGT" * 30])
    assert proc([conv])["input_ids"].tolist() == again([conv])["input_ids"].tolist()
