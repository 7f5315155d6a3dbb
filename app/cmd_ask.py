"""``bioreason ask``: ask the model a question about one or more DNA sequences; the answer streams."""

from __future__ import annotations

import sys
from pathlib import Path

from bioreason.app.options import (add_answer_tokens_option, add_model_option, non_negative_float, positive_int,
                                   quantize_mode)


def add_parser(sub) -> None:
    p = sub.add_parser("ask", help="ask a question about DNA sequences (answer streamed to stdout)",
                       description="Ask the DNA-LLM a question. Each --dna is a sequence (A/C/G/T/N, case-free; "
                                   "IUPAC codes become N) or the path of a FASTA file (first record). Sequences "
                                   "longer than the encoder's maximum (1,024 nt for the default) are an error, "
                                   "not tiled. The default model (brca1-lof-v1, see MODEL_CARD.md) was trained "
                                   "on BRCA1 variant questions only; other questions get the base LLM's general "
                                   "(and often wrong) answers. --model kegg-v1 answers BioReason's KEGG pathway "
                                   "questions: give the reference and the variant sequence (any length: both are "
                                   "cropped around the variant) and the question with its network definition and "
                                   "gene list, e.g. examples/kegg/ask_question.txt.",
                       epilog="example: bioreason ask --model kegg-v1 --dna examples/kegg/ref.fa --dna "
                              "examples/kegg/alt.fa \"$(cat examples/kegg/ask_question.txt)\"")
    p.add_argument("question", help="the question, in quotes")
    p.add_argument("--dna", action="append", default=[], metavar="SEQ|FASTA",
                   help="a DNA sequence or FASTA path; repeat for several (e.g. reference then alternate)")
    add_model_option(p)
    p.add_argument("--max-new-tokens", type=positive_int, default=256, help="cap on generated tokens (default 256)")
    add_answer_tokens_option(p)
    p.add_argument("--temperature", type=non_negative_float, default=0.0, help="0 = greedy (default); >0 samples")
    p.add_argument("--system", default=None, help="replace the system prompt")
    p.set_defaults(handler=run)


FASTA_SUFFIXES = (".fa", ".fasta", ".fna", ".fas", ".fa.gz", ".fasta.gz", ".txt")


def read_dna_argument(value: str) -> str:
    """A literal sequence, or the first record of a FASTA file when ``value`` is an existing path (a warning when
    the file holds more: pass each sequence with its own --dna)."""
    from bioreason.dna_encoders.base import IUPAC_AMBIGUOUS, NUCLEOTIDES, clean_sequence, pasted_sequence

    path = Path(value)
    try:
        is_file = path.is_file()
    except OSError:  # e.g. a long sequence is not a valid file name
        is_file = False
    if not is_file:
        looks_like_a_path = "/" in value or value.lower().endswith(FASTA_SUFFIXES)
        if looks_like_a_path and not set(value.upper()) <= NUCLEOTIDES | IUPAC_AMBIGUOUS:
            from bioreason.errors import InputFormatError

            raise InputFormatError(f"--dna {value}: no such file; give a FASTA file that exists, or the sequence "
                                   "itself")
        return value
    from bioreason.kegg_data.text_files import open_text

    with open_text(path) as fh:  # plain, gzip or BGZF
        seq, records = pasted_sequence(fh.read())
    if records > 1:
        print(f"warning: {value} holds {records} FASTA records; using the first (give each sequence its own "
              "--dna)", file=sys.stderr)
    # checked here, so a file that is not a FASTA (a VCF, a binary) is named, not called 'DNA sequence 1'; the
    # cleaned sequence is returned, so its IUPAC codes are replaced (and warned about) once, not again per check
    return clean_sequence(seq, name=f"--dna {value} (read as a FASTA file: a '>name' line, then lines of A/C/G/T/N)")


def run(args) -> int:
    from bioreason.checkpoints import load_model
    from bioreason.inference import model_messages, stream_answer
    from bioreason.predict import PredictConfig, encoder_max_nucleotides, model_window

    config = PredictConfig.for_model(args.model)
    dna = [read_dna_argument(d) for d in args.dna]
    # built before the model loads, so a bad question or sequence count fails at once
    window = model_window(config, encoder_max_nucleotides(args.model))  # None: the untrained base, 1,024
    messages = model_messages(args.question, dna, config, args.system, window)
    if config.prompt == "kegg" and len(dna) == 2 and dna[0].strip().upper() == dna[1].strip().upper():
        print("warning: the reference and variant sequences are the same, so there is no variant to reason about; "
              "the answer will not be about one (pass the variant's sequence as the second --dna)", file=sys.stderr)
    if config.prompt == "annotated_variant" and len(dna) != 2:
        print(f"warning: this model was trained on pairs of sequences, the reference window and then the one with the "
              f"variant; with {len(dna)} its answer is an extrapolation (pass --dna REF --dna ALT, or run "
              "`bioreason predict` on a VCF, which builds the windows and the prompt it was trained on)",
              file=sys.stderr)
    model, processor = load_model(args.model, quantize=quantize_mode(args, generates=True))
    processor([messages])  # validate the sequences before any output
    pieces = []
    for piece in stream_answer(model, processor, messages, max_new_tokens=args.max_new_tokens,
                               answer_tokens=args.answer_tokens,
                               temperature=args.temperature):
        pieces.append(piece)
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    if config.prompt == "kegg" and config.labels:  # a closed set of diseases: always end on one of them
        from bioreason.kegg_evaluation import final_answer

        name, note = final_answer(model, processor, messages, "".join(pieces), config.labels, config.label_texts)
        if note:
            sys.stdout.write(f"Answer ({note}): {(config.label_texts or {}).get(name, name)}\n")
    return 0
