"""``bioreason predict``: annotate every ALT allele of a VCF with a label, probabilities and (optionally) a trace."""

from __future__ import annotations

from bioreason.app.options import (
    add_answer_tokens_option,
    add_model_option,
    add_prompt_options,
    add_variant_options,
    label_list,
    non_negative_float,
    positive_int,
)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "predict", help="predict the effect of every variant in a VCF (annotated VCF + JSONL + TSV + skip log)",
        description="Reads a VCF/VCF.gz/BCF and a reference FASTA, cuts ref/alt windows for every ALT allele and "
                    "asks the model. Writes PREFIX.vcf (INFO BR_LABEL, BR_P_<label>, BR_MODEL), PREFIX.jsonl (one "
                    "object per ALT: variant, window facts, label, probabilities, trace, or skip reason), "
                    "PREFIX.tsv and PREFIX.skipped.tsv. --score-only (default) scores each candidate label by "
                    "log-likelihood in one forward pass; --traces also generates a reasoning trace (batched). "
                    "Interrupted runs continue with --resume; several processes share the work under "
                    "`torchrun --nproc_per_node N -m bioreason.app.cli predict ...`. Research use only, not for "
                    "clinical decisions.")
    p.add_argument("vcf", help="input VCF, VCF.gz or BCF (never modified); - reads standard input, e.g. "
                               "`bcftools view -r chr17 in.bcf | bioreason predict - ...`")
    p.add_argument("-o", "--output", required=True, metavar="PREFIX", help="output prefix")
    add_model_option(p)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--score-only", dest="traces", action="store_false", help="labels by likelihood only (default)")
    mode.add_argument("--traces", dest="traces", action="store_true", help="also generate reasoning traces")
    p.set_defaults(traces=False)
    p.add_argument("--labels", type=label_list, default=None,
                   help="comma-separated candidate labels (default: the model's own, else pathogenic,benign)")
    p.add_argument("--batch-size", type=positive_int, default=8, help="variants per forward pass (default 8)")
    p.add_argument("--max-new-tokens", type=positive_int, default=256,
                   help="trace length cap with --traces (default 256)")
    add_answer_tokens_option(p)
    p.add_argument("--trace-slots", type=positive_int, default=8, metavar="N",
                   help="with --traces: traces decoded at once (default 8); the other variants of a batch wait and "
                        "take the row of each finished trace, so a --batch-size above N keeps all N rows busy "
                        "(e.g. --batch-size 64 --trace-slots 8)")
    p.add_argument("--bgzip", action="store_true", help="write the annotated VCF BGZF-compressed (PREFIX.vcf.gz)")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run: same options and the same inputs (checked by content)")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="CPU threads for the model (default: PyTorch's, all cores; OMP_NUM_THREADS also sets it)")
    p.add_argument("--progress-interval", type=non_negative_float, default=30.0, metavar="S",
                   help="when stderr is not a terminal (a log file), print progress every S seconds (default 30)")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs / discard old progress")
    add_variant_options(p, window_default=None)
    add_prompt_options(p)
    p.set_defaults(handler=run)


def run(args) -> int:
    from bioreason.app.predict_job import run as job

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    return job(args)
