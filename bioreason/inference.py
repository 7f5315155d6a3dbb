"""Answering questions with a loaded DNA-LLM: message building and streamed generation.

Shared by the CLI's ``ask`` and the Gradio demo so neither front end holds
generation logic. ``stream_answer`` decodes in a worker thread and yields text
as it is produced (a ``TextIteratorStreamer``): greedy answers through the slot
decoder ``predict --traces`` uses (``decoding.decode_slots``: draft tokens,
budget forcing), sampled ones through ``model.generate``; DNA is encoded once
at prefill and the KV cache does the rest.
"""

from __future__ import annotations

import logging
import threading
from typing import Iterator

from bioreason.errors import EmptyInputError
from bioreason.processing import user_message

log = logging.getLogger(__name__)
MAX_NEW_TOKENS = 256  # generation_kwargs' cap when the caller gives none
DEFAULT_SYSTEM = ("You are BioReason, an assistant that reasons step by step about DNA. "
                  "Think inside <think>...</think>, then give the final answer on a line starting with 'Answer:'.")


def build_messages(question: str, dna: list[str] | tuple[str, ...] = (), system: str | None = DEFAULT_SYSTEM):
    """A chat: optional system turn, then one user turn with the DNA sequences and the question."""
    if not question or not question.strip():
        raise EmptyInputError("the question is empty; pass the question text as the last argument")
    msgs = [{"role": "system", "content": system}] if system else []
    return msgs + [user_message(question.strip(), list(dna))]


def model_messages(question: str, dna: list[str], config, system: str | None = None, max_nucleotides: int = 1024):
    """The chat a trained model expects, from its ``PredictConfig`` (``bioreason_task.json``): a KEGG model
    (``prompt: kegg``) gets its training prompt (:func:`kegg_prompt`); any other model the plain chat."""
    if getattr(config, "prompt", None) != "kegg":
        return build_messages(question, dna, system or DEFAULT_SYSTEM)
    return kegg_prompt(question, dna, config, system, max_nucleotides)[0]


def kegg_prompt(question: str, dna: list[str], config, system: str | None = None, max_nucleotides: int = 1024):
    """(messages, facts) for a KEGG model: its training prompt (two sequences cropped around the variant, the
    question rewritten as it was trained: gene list without descriptions, the variant stated, as its
    ``bioreason_task.json`` options say) and the facts its trace is checked against (``kegg_facts``: starred
    genes, the gene asked about, the variant as the prompt states it)."""
    from bioreason.dna_encoders.base import clean_sequence
    from bioreason.errors import InputFormatError
    from bioreason.kegg_data.tasks import difference_places, kegg_example

    if not question or not question.strip():
        raise EmptyInputError("the question is empty; pass the question text as the last argument")
    if len(dna) != 2:
        raise InputFormatError(f"this KEGG model reads two sequences, the reference then the variant (got "
                               f"{len(dna)}); pass --dna REF --dna ALT (sequences or FASTA files)")
    # checked as given, before the crop, so an error's position is the one in the user's sequence
    dna = [clean_sequence(s, name=f"the {which} sequence") for s, which in zip(dna, ("reference", "variant"))]
    opts = {k: v for k, v in (config.kegg or {}).items() if k != "trace_steps"}
    example = kegg_example(question, dna[0], dna[1], dna_length=max_nucleotides, **opts)
    mode = "none" if config.mode == "none" else "dna"  # an LLM-only KEGG model reads the question alone
    facts = dict(example.meta)
    places = difference_places(dna[0], dna[1])
    if len(places) > 1:  # trained on one variant per pair: say what the model is told instead
        facts["places"] = places
        shown = ", ".join(f"{p:,}" for p in places[:5]) + (f" and {len(places) - 5} more" if len(places) > 5 else "")
        log.warning("the reference and variant sequences differ in %d separate places (positions %s); the model "
                    "was trained on pairs that differ by one variant and is told about the whole segment from the "
                    "first to the last (%s); give sequences that differ by the one variant asked about",
                    len(places), shown, facts.get("change"))
    return example.to_messages(system or config.system, mode, with_answer=False), facts


def generation_kwargs(processor, max_new_tokens: int = MAX_NEW_TOKENS, temperature: float = 0.0,
                      top_p: float = 0.95) -> dict:
    tok = processor.tokenizer
    kw = dict(max_new_tokens=max_new_tokens, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    if temperature and temperature > 0:
        kw.update(do_sample=True, temperature=temperature, top_p=top_p)
    else:
        kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    return kw


def stream_answer(model, processor, messages, prefix: str = "", answer_tokens: int = 0, **gen) -> Iterator[str]:
    """Yield the answer's text piece by piece as the model generates it. ``prefix``: text the answer starts with
    (fed to the model and yielded first), e.g. a trained model's trace opening so it reasons rather than
    answering with an empty think. ``answer_tokens``: budget forcing, as ``decoding.decode_slots`` does it: an
    answer still reasoning at ``max_new_tokens`` is closed (``answers.closing_for``, yielded too) and generation
    goes on for up to this many tokens."""
    import torch

    from bioreason.answers import closing_for
    from bioreason.sampling import append_text

    tok = processor.tokenizer
    if not gen.get("temperature"):  # greedy: the slot decoder, as predict --traces decodes (drafts, forcing)
        if prefix:
            yield prefix
        yield from _streamed_greedy(model, processor, messages, prefix, gen.get("max_new_tokens", MAX_NEW_TOKENS),
                                    answer_tokens)
        return
    inputs = processor([messages]).to(model.device)
    if prefix:
        inputs["input_ids"], inputs["attention_mask"] = append_text(tok, inputs["input_ids"],
                                                                    inputs["attention_mask"], prefix)
        yield prefix
    width = inputs["input_ids"].shape[1]
    out = yield from _streamed(model, processor, inputs, gen)
    new = out[0, width:].tolist()
    cap = gen.get("max_new_tokens", MAX_NEW_TOKENS)
    closing = closing_for(prefix + tok.decode(new, skip_special_tokens=True)) if answer_tokens > 0 and \
        len(new) >= cap and tok.eos_token_id not in new else ""
    if closing:
        yield closing
        ids, mask = append_text(tok, out, torch.ones_like(out), closing)
        inputs.update(input_ids=ids, attention_mask=mask)
        yield from _streamed(model, processor, inputs, {**gen, "max_new_tokens": answer_tokens})


def _in_thread(work, streamer):
    """Run ``work()`` in a worker thread while yielding the streamer's text; returns what ``work`` returned, or
    raises what it raised, in the caller's thread."""
    errors: list[BaseException] = []
    result = []

    def run():
        try:
            result.append(work())
        except BaseException as exc:  # surfaced in the caller's thread below
            errors.append(exc)
        finally:
            streamer.end()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    yield from streamer
    thread.join()
    if errors:
        raise errors[0]
    return result[0]


def _streamed_greedy(model, processor, messages, prefix: str, max_new_tokens: int, answer_tokens: int):
    """Greedy decoding of one prompt by ``sampling.sample_groups``, its text yielded token by token as chosen; its
    drafts come from its own prompt and from the answers this model gave before (``drafting.recent_completions``:
    the demo's later requests copy the sentences its earlier traces share)."""
    import torch
    from transformers import TextIteratorStreamer

    from bioreason.drafting import NgramDrafter, recent_completions
    from bioreason.sampling import sample_groups

    tok = processor.tokenizer
    streamer = TextIteratorStreamer(tok, skip_prompt=False, skip_special_tokens=True)
    drafter = NgramDrafter(finished=recent_completions(model))  # drafts also from this model's earlier answers

    def work():
        with torch.inference_mode():
            return sample_groups(model, processor, [messages], 1, max_new_tokens, do_sample=False, prefix=prefix,
                                 answer_tokens=answer_tokens, drafter=drafter,
                                 on_token=lambda row, t: streamer.put(torch.tensor([t])))

    return (yield from _in_thread(work, streamer))


def _streamed(model, processor, inputs, gen: dict):
    """``model.generate`` in a worker thread, its text yielded as it comes; returns the output ids."""
    import torch
    from transformers import TextIteratorStreamer

    from bioreason.int8_decode import decoding_steps

    streamer = TextIteratorStreamer(processor.tokenizer, skip_prompt=True, skip_special_tokens=True)

    def work():
        with torch.inference_mode(), decoding_steps():  # int8-decode models: decode steps in int8
            return model.generate(**inputs, streamer=streamer, **generation_kwargs(processor, **gen))

    return (yield from _in_thread(work, streamer))
