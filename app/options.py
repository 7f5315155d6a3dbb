"""Command-line options shared by the subcommands that read VCF + FASTA (windows, predict, eval).

One definition of each input policy flag, its default and its help text, so the
commands cannot drift apart; ``reader_options(args)`` turns them into the
keyword arguments of :class:`bioreason.kegg_data.vcf_reader.VariantReader`.
"""

from __future__ import annotations

from bioreason.kegg_data.variants import REF_CHECK_POLICIES
from bioreason.quantize import MODES as QUANTIZE_MODES


def add_variant_options(p, window_default: int | None = 1024) -> None:
    """``window_default`` None: the loaded model's own window (``predict_job`` reads its bioreason_task.json)."""
    g = p.add_argument_group("variant input policies")
    g.add_argument("--fasta", required=True,
                   help="reference FASTA (plain, or BGZF with .fai/.gzi); 'bundled' = the packaged GRCh38 chr17 "
                        "(real sequence over BRCA1 only)")
    said = (f"{window_default}, the default encoder's maximum" if window_default else
            "the window the model was trained on, from its bioreason_task.json, else 1024 or its DNA encoder's "
            "maximum if that is smaller")
    g.add_argument("--window", type=positive_int, default=window_default,
                   help=f"window length in nt for both the reference and the alternate sequence (default: {said})")
    g.add_argument("--ref-check", choices=REF_CHECK_POLICIES, default="error",
                   help="when REF disagrees with the FASTA: error (default; stop and name the record), warn "
                        "(keep, flagged), skip (record it in the skip log), fix (use the FASTA's allele); "
                        "like bcftools norm -c e|w|x|s")
    g.add_argument("--max-allele-len", type=positive_int, default=64,
                   help="skip alleles longer than this many nt (default 64)")
    g.add_argument("--left-normalise", action="store_true",
                   help="left-align and trim indels against the FASTA before building windows (off by default)")
    g.add_argument("--gtf", default="auto", metavar="FILE|auto|bundled|none",
                   help="transcript model (GTF or GFF3, plain or gzip: GENCODE, Ensembl, RefSeq) used to compute each "
                        "variant's consequence, HGVS c./p. names and codon change, VEP-style, one transcript per gene "
                        "(MANE Select, else canonical, else longest CDS). auto (default): BRCA1 NM_007294 with the "
                        "bundled reference, none otherwise; bundled: that transcript; none: no computed annotation")


def fasta_path(args):
    from bioreason.kegg_data.bundled import resolve_fasta

    return resolve_fasta(args.fasta)


def transcript_model(args):
    """The ``TranscriptModel`` that ``--gtf`` names (None for none, or auto with a reference of your own)."""
    from bioreason.kegg_data.transcripts import resolve_gtf

    return resolve_gtf(getattr(args, "gtf", "none"), args.fasta)


def reader_options(args) -> dict:
    return dict(window=args.window, ref_check=args.ref_check, max_allele_len=args.max_allele_len,
                left_normalise=args.left_normalise)


def add_prompt_options(p) -> None:
    """How variant prompts are built for models trained on ``annotated_variant`` prompts (the shipped default)."""
    g = p.add_argument_group("variant prompts (models trained on annotated variant prompts, e.g. the default)")
    g.add_argument("--prompt-mode", choices=("annotated", "sequence"), default=None,
                   help="annotated (default): put the VCF's own consequence annotation (Ensembl VEP CSQ, SnpEff "
                        "ANN, or CONSEQ/HGVSC/HGVSP INFO fields) and the codon / BLOSUM62 facts computed from it "
                        "in the prompt when a record has one, else fall back to sequence; sequence: only the "
                        "variant, gene and the two DNA windows")
    g.add_argument("--gene", default=None,
                   help="gene symbol named in the prompt when the annotation has none (default: the model's, "
                        "BRCA1 for the shipped default; 'none' to leave it out)")
    g.add_argument("--strand", type=int, choices=(1, -1), default=None,
                   help="the gene's strand, for codon facts when the annotation has no STRAND column "
                        "(default: the model's)")


def prompt_overrides(args) -> dict:
    out = {"mode": getattr(args, "prompt_mode", None), "strand": getattr(args, "strand", None)}
    gene = getattr(args, "gene", None)
    if gene is not None:
        out["gene"] = "" if gene.lower() == "none" else gene  # "" (not None) overrides the model's gene
    return out


def model_arg(value: str) -> str | None:
    """``--model`` values: a folder, ``default`` (the shipped BRCA1 checkpoint when installed, else the base
    model), the name of another shipped checkpoint (``kegg-v1``; a folder of that name wins) or ``base`` (the
    untrained embedded SmolLM2 + HyenaDNA model); None means the base model."""
    from bioreason.hub import named_model, shipped_model_dir

    if value == "base":
        return None
    if value == "default":
        shipped = shipped_model_dir()
        return str(shipped) if shipped else None
    return named_model(value)


def _whole_number(value: str, least: int) -> int:
    """``value`` as a whole number >= ``least``, or argparse's error naming the bound and the value."""
    import argparse

    try:
        n = int(value)
    except ValueError:
        n = least - 1
    if n < least:
        raise argparse.ArgumentTypeError(f"must be a whole number >= {least}, not {value!r}")
    return n


def positive_int(value: str) -> int:
    """An argparse type: a whole number >= 1 (batch sizes, token caps, slots)."""
    return _whole_number(value, 1)


def non_negative_int(value: str) -> int:
    """An argparse type: a whole number >= 0 (``--answer-tokens``)."""
    return _whole_number(value, 0)


def label_list(value: str) -> tuple[str, ...]:
    """An argparse type for ``--labels``: two or more distinct, non-empty comma-separated labels whose
    ``BR_P_<label>`` INFO ids differ (``a b`` and ``a_b`` would share one)."""
    import argparse

    from bioreason.app.predict_outputs import info_id

    labels = tuple(x.strip() for x in value.split(","))
    if any(not x for x in labels):
        raise argparse.ArgumentTypeError(f"{value!r} has an empty label; give comma-separated labels, e.g. LOF,FUNC")
    if len(labels) < 2:
        raise argparse.ArgumentTypeError(f"{value!r}: give at least two labels; the model picks the likelier one")
    ids = [info_id(x) for x in labels]
    same = next((x for i, x in enumerate(labels) if ids[i] in ids[:i]), None)
    if same is not None:
        raise argparse.ArgumentTypeError(f"{value!r}: {same!r} is given twice (or differs from another label only "
                                         "in characters a VCF INFO id cannot hold)")
    return labels


def non_negative_float(value: str) -> float:
    """An argparse type: a number >= 0 (``--temperature``)."""
    import argparse
    import math

    try:
        x = float(value)
    except ValueError:
        x = -1.0
    if not x >= 0 or math.isinf(x):
        raise argparse.ArgumentTypeError(f"must be a number >= 0, not {value!r}")
    return x


def port_number(value: str) -> int:
    """An argparse type: a TCP port, 1-65535."""
    import argparse

    n = _whole_number(value, 1)
    if n > 65535:
        raise argparse.ArgumentTypeError(f"must be a port number from 1 to 65535, not {value!r}")
    return n


def add_answer_tokens_option(p) -> None:
    """``--answer-tokens``: budget forcing for traces cut at ``--max-new-tokens`` (predict, eval, ask)."""
    from bioreason.answers import ANSWER_TOKENS

    p.add_argument("--answer-tokens", type=non_negative_int, default=ANSWER_TOKENS, metavar="N",
                   help="budget forcing: a trace still reasoning at --max-new-tokens (a loop, say) is closed there "
                        "('</think>', then 'Answer:') and the model gets up to N more tokens to write its answer "
                        f"(default {ANSWER_TOKENS}; 0: a trace cut at the cap stays unanswered)")


def quantize_mode(args, generates: bool, prompt_mode: str | None = None) -> str:
    """The ``--quantize`` mode a command runs with: ``auto`` resolved for this machine, ``args.model`` and its
    prompts' mode (``quantize.resolve_mode``; ``generates``: the command writes traces), any other mode as given.
    Resolved before the model loads, so ``predict``'s resume fingerprint and ``eval``'s report name the mode that
    ran."""
    if args.quantize != "auto":
        return args.quantize
    from bioreason.hub import resolve_model_dir
    from bioreason.quantize import resolve_for_model

    folder = resolve_model_dir(args.model) if generates and args.model is not None else None  # None: base model
    return resolve_for_model("auto", folder, generates, prompt_mode)


def add_model_option(p, what: str = "model") -> None:
    p.add_argument("--model", type=model_arg, default="default",
                   help=f"{what} folder written by `bioreason train`; 'default' (the default) = the shipped BRCA1 "
                        "LOF checkpoint, 'kegg-v1' = the shipped KEGG disease-reasoning checkpoint (both in "
                        "MODEL_CARD.md), 'base' = the untrained embedded SmolLM2 + HyenaDNA")
    p.add_argument("--quantize", choices=QUANTIZE_MODES, default="auto",
                   help="CPU inference paths: bf16-matmul = the LLM's linear products in bfloat16, the rest fp32 "
                        "(about 1.4x faster scoring on CPUs with native bf16; validation AUROC of the shipped model "
                        "+0.0009, labels of the example unchanged), int8 = int8 activations and weights (torchao), "
                        "int8-weight = int8 weights only (torchao), bf16 = the whole LLM in bfloat16, int8-decode = "
                        "int8 weight copies for generated tokens only (about 2x faster generation at batch 1; "
                        "scores exactly fp32's, traces can differ; about 134 MB more memory), none = fp32 "
                        "throughout. Default auto: bf16-matmul on a CPU where bf16 products measure at least 1.3x "
                        "faster when the command only scores (predict or eval without --traces) or the model's task "
                        "file allows it for generated text from the prompts in use (the shipped BRCA1 model: on its "
                        "annotated prompts; kegg-v1: no, its traces stay fp32), else none. What each changes on "
                        "the shipped models is in the README")
