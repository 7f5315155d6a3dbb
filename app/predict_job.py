"""The ``predict`` job: resumable, shardable batch prediction over a VCF, with atomic outputs.

Order of work, streaming (memory does not grow with the input): read the records (each ALT allele ends as a
window or a skip), cut the windows into fixed batches in input order as they come, predict the batches this
process owns (batch k goes to rank k mod world, so torchrun/accelerate shards are disjoint), and append each
finished batch to a progress file (``PREFIX.progress.rankR.jsonl``, flushed and fsynced). After ``kill -9``,
``--resume`` keeps the complete lines and redoes only unfinished batches, with the same batch composition, so
results are bit-identical. When all batches are done, rank 0 reads the input once more and writes the outputs
with the progress files' results merged in input order (``predict_outputs.py``); then the progress files go.
What a resume checks (inputs by content, each variant's key; a VCF edited since, batch by batch: the finished
batches it reproduces exactly are kept, ``_unchanged_batches``) and the lock that keeps two runs off one prefix:
``job_state.py``. An input error met part-way says that the finished batches are kept for that resume. ``-``
reads the VCF from standard input (``inputs.py``).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from bioreason.app.job_state import ResumeMismatchError  # noqa: F401 (raised here for callers)
from bioreason.app.job_state import batch_digest, finished_batches, iter_results, keep_batches, output_lock
from bioreason.app.job_state import progress_path, recorded_setting
from bioreason.app.job_state import fingerprint as content_fingerprint
from bioreason.app.predict_outputs import output_paths, write_outputs
from bioreason.app.writers import check_outputs, dumps
from bioreason.errors import BioreasonError, InputFormatError, OutputExistsError, ReferenceMismatchError

log = logging.getLogger(__name__)


def run(args) -> int:
    import torch
    from accelerate import PartialState

    from bioreason.app.inputs import check_input_file, check_prefix, vcf_input
    from bioreason.app.options import fasta_path

    state = PartialState(cpu=not torch.cuda.is_available())
    outputs = [*output_paths(args.output, args.bgzip).values(), progress_path(args.output, 0)]
    check_prefix(args.output, outputs, [args.vcf, fasta_path(args), args.gtf])
    check_input_file(fasta_path(args), "FASTA")
    if args.vcf == "-" and state.num_processes > 1:
        raise InputFormatError("standard input (-) can feed one process only; write the VCF to a file for torchrun")
    with vcf_input(args.vcf, args.output) as vcf:
        try:
            return _run(args, vcf, state)
        except BioreasonError as exc:  # standard input is spooled to a file that is gone when the user reads this
            if args.vcf == "-":
                exc.args = (str(exc).replace(str(vcf), "standard input"),)
            raise


def batched_windows(reader, size: int):
    """(batch number, [(item index, Variant)], items read so far) in input order, ``size`` windows per batch;
    skips only advance the item index. Streams: nothing is kept but the batch being filled."""
    from bioreason.kegg_data.variants import Variant

    batch, k, index = [], 0, -1
    for index, item in enumerate(reader):
        if isinstance(item, Variant):
            batch.append((index, item))
            if len(batch) == size:
                yield k, batch, index + 1
                batch, k = [], k + 1
    if batch or index >= 0:
        yield k, batch, index + 1  # the last batch (possibly empty: skips only), and how many items were read


def _run(args, vcf, state) -> int:
    import contextlib

    from bioreason.app.inputs import count_alleles, progress
    from bioreason.app.options import fasta_path, prompt_overrides, quantize_mode, reader_options, transcript_model
    from bioreason.checkpoints import load_model, release_freed_memory
    from bioreason.hub import resolve_model_dir
    from bioreason.kegg_data.annotated_variants import annotation_layouts
    from bioreason.kegg_data.consequence import Annotator
    from bioreason.kegg_data.vcf_reader import VariantReader
    from bioreason.predict import PredictConfig, VariantPredictor, check_batch_fits

    rank, world = state.process_index, state.num_processes
    paths = output_paths(args.output, args.bgzip)
    labels = args.labels or None  # options.label_list: checked, stripped
    cfg = PredictConfig.for_model(args.model, labels=labels, traces=args.traces,
                                  max_new_tokens=args.max_new_tokens, trace_slots=args.trace_slots,
                                  answer_tokens=args.answer_tokens,
                                  **prompt_overrides(args))
    from bioreason.predict import TASK_FILE, encoder_max_nucleotides, model_window

    folder = resolve_model_dir(args.model)
    limit = encoder_max_nucleotides(folder)
    # the model's trained window unless --window says otherwise; longer than its encoder takes is an error here
    args.window = args.window or model_window(cfg, limit)
    _check_window(args.window, limit)
    if args.model and labels is None and rank == 0 and not (Path(args.model) / TASK_FILE).is_file():
        log.warning("%s has no %s (trained on a task without a fixed label set, or by an older bioreason): scoring "
                    "the default labels %s; pass --labels with the answers it was trained to give", args.model,
                    TASK_FILE, ",".join(cfg.labels))
    if cfg.prompt == "kegg":
        from bioreason.errors import BioreasonError

        raise BioreasonError(f"{args.model} is a KEGG pathway model: it answers which disease a variant in a pathway "
                          "contributes to, from a pathway question (bioreason ask / eval --task kegg / the demo's "
                          "pathway tab), not variant effects from a VCF; leave --model out for the BRCA1 model")
    transcripts = transcript_model(args)
    quantize = args.quantize  # auto is resolved here, by rank 0 alone: the fingerprint names what ran
    if quantize == "auto":
        if rank == 0:  # a resumed job keeps what auto chose when it started; else this CPU is probed
            recorded = recorded_setting(progress_path(args.output, 0), "quantize") if args.resume else None
            quantize = recorded or quantize_mode(args, generates=bool(cfg.traces), prompt_mode=cfg.mode)
        if world > 1:  # every process runs rank 0's choice (one mode per output)
            from accelerate.utils import broadcast_object_list

            quantize = broadcast_object_list([quantize])[0]
    settings = {"labels": list(cfg.labels), "traces": cfg.traces, "batch_size": args.batch_size, "processes": world,
                "quantize": quantize, "trace_slots": cfg.trace_slots, "max_new_tokens": cfg.max_new_tokens,
                "answer_tokens": cfg.answer_tokens, "prompt": [cfg.prompt, cfg.mode, cfg.gene, cfg.strand],
                **reader_options(args)}
    fingerprint = content_fingerprint(vcf, fasta_path(args), folder, args.gtf, settings)
    progress_files = [progress_path(args.output, r) for r in range(world)]
    cfg_json = folder / "config.json"
    model_id = json.loads(cfg_json.read_text()).get("model_id") if cfg_json.is_file() else folder.name
    lock = output_lock(args.output) if rank == 0 else contextlib.nullcontext()
    with lock:
        if rank == 0:
            stale = [p for p in Path(args.output).parent.glob(f"{Path(args.output).name}.progress.rank*.jsonl")]
            if not args.resume or not stale:
                check_outputs(paths.values(), args.force)  # --resume with nothing to resume overwrites nothing
            if not args.resume:
                if stale and not args.force:
                    raise OutputExistsError(f"{stale[0]} holds the progress of an interrupted run; pass --resume "
                                            "to continue it or --force to start over")
                for p in stale:
                    p.unlink()
        state.wait_for_everyone()

        path = progress_files[rank]
        done, vcf_changed = finished_batches(path, fingerprint) if args.resume else ({}, False)
        reader = VariantReader(vcf, fasta_path(args), info_fields=cfg.info_fields(), **reader_options(args))
        layouts = annotation_layouts(reader)
        if rank == 0:
            reader.warn_if_gvcf()
        if vcf_changed:  # edited since the interruption: keep what the edited input reproduces exactly
            again = VariantReader(vcf, reader.reference, info_fields=cfg.info_fields(), **reader_options(args))
            done = _unchanged_batches(done, again, args.batch_size, layouts, path, fingerprint)
        chroms: dict[str, None] = {}  # contigs seen, for the output header
        predictor, reported = None, 0
        desc = "predict" if world == 1 else f"predict [rank {rank}]"
        bar = progress(count_alleles(vcf), 0, desc, "alleles", args.progress_interval)
        with open(path, "a") as fh:
            if fh.tell() == 0:
                fh.write(dumps({"fingerprint": fingerprint}))
            for k, batch, read in _reading(batched_windows(reader, args.batch_size), path):
                chroms.update(dict.fromkeys(v.chrom for _, v in batch))
                if not batch or k % world != rank or k in done:
                    bar.update(read - reported)
                    reported = read
                    continue
                if predictor is None:  # the model loads only when there is work
                    model, proc = load_model(args.model, quantize=quantize)
                    check_batch_fits(model, args.batch_size, len(batch))  # later batches are no larger
                    model_id = model.config.model_id or Path(str(args.model)).name
                    annotator = Annotator(transcripts, reader.reference) if transcripts is not None else None
                    predictor = VariantPredictor(model, proc, cfg, layouts=layouts, annotator=annotator)
                results = predictor.predict([v for _, v in batch])
                if cfg.traces:  # a decode's freed caches, returned before the next batch fragments the heap further
                    release_freed_memory()  # (peak RSS over 400 variants 1.58 -> 1.52 GiB, same speed: README)
                fh.write(dumps({"batch": k, "results": {str(i): r for (i, _), r in zip(batch, results)},
                                "keys": {str(i): v.key for i, v in batch}, "digest": batch_digest(batch, layouts)}))
                fh.flush()
                os.fsync(fh.fileno())
                bar.update(read - reported)
                reported = read
        bar.close()
        state.wait_for_everyone()
        if rank == 0:
            # the same Reference: its index is read once and a contig renaming is warned about once
            again = VariantReader(vcf, reader.reference, info_fields=cfg.info_fields(), **reader_options(args))
            counts = write_outputs(vcf, again, iter_results(progress_files), list(cfg.labels),
                                   model_id or "bioreason", paths, list(chroms), transcripts is not None,
                                   bool(cfg.domain), reader.undeclared, quantize)
            for p in progress_files:
                p.unlink(missing_ok=True)
            _summary(again.stats, counts, paths, cfg)
        state.wait_for_everyone()
    return 0


def _unchanged_batches(done: dict, reader, size: int, layouts: dict, path: Path, fingerprint: dict) -> dict:
    """After the VCF was edited: the finished batches whose items (indices, keys, windows, INFO) the edited input
    reproduces exactly (``job_state.batch_digest``); the progress file is rewritten with those alone, under the new
    fingerprint, and the others are predicted again."""
    last, keep = max(done, default=-1), set()
    try:
        for k, batch, _ in batched_windows(reader, size) if done else ():
            if done.get(k) is not None and done[k] == batch_digest(batch, layouts):
                keep.add(k)
            if k >= last:  # read no further than the finished part (an error past it is the main loop's)
                break
    finally:
        reader.close()
    keep_batches(path, fingerprint, keep)
    if done:
        log.warning("the VCF differs from the interrupted run's: %d of its %d finished batches are unchanged and "
                    "kept, %d are predicted again", len(keep), len(done), len(done) - len(keep))
    return {k: done[k] for k in keep}


def _reading(batches, path: Path):
    """``batches`` as they are read; an input error met part-way (a malformed line, a REF that does not match the
    FASTA) also says that the batches already finished are kept for a resume once the input is fixed."""
    try:
        yield from batches
    except (InputFormatError, ReferenceMismatchError) as exc:
        with open(path, "rb") as fh:
            finished = sum(1 for _ in fh) - 1  # the lines after the fingerprint
        if finished < 1:
            raise
        raise type(exc)(f"{exc}. The {finished} batch(es) finished before it are saved in {path}: once the input "
                        "is fixed, rerun the same command with --resume to keep them (a finished batch is predicted "
                        "again only if its records changed)") from None


def _check_window(window: int, limit: int | None) -> None:
    """Before the model loads: a --window longer than the model's DNA encoder takes (its processor_config.json says,
    for the encoders that record it) is named here, not by the first batch's processor after the load."""
    if limit and window > limit:
        raise InputFormatError(f"--window {window}: this model's DNA encoder takes at most {limit:,} nt per "
                               f"sequence; give --window {limit} or less")


def _summary(s, counts: dict, paths: dict, cfg) -> None:
    print(f"{s.records} records, {s.alleles} alleles: {counts['predicted']} predicted, {s.skips} skipped; outputs: "
          + ", ".join(str(p) for p in paths.values()))
    for line in s.skip_lines():
        print(line)
    if not counts["predicted"]:  # exit 0 (the outputs are complete), but the run did not do what was asked
        log.warning("no variant was predicted: %s; the outputs hold the records and skip reasons only",
                    f"all {s.alleles} alleles were skipped (reasons above and in {paths['skips']}); most often the "
                    "--fasta is another genome build or lacks the VCF's contigs (the bundled one is GRCh38 chr17, "
                    "BRCA1 only)" if s.alleles else "the VCF has no records")
    if counts["outside"]:
        d = cfg.domain or {}
        log.warning("%d of %d predicted variants lie outside the model's domain (%s, %s); their labels are "
                    "extrapolations, flagged BR_OOD in the VCF and in_domain=no in the TSV/JSONL", counts["outside"],
                    counts["predicted"], ", ".join(d.get("genes") or []) or "its regions", d.get("build", "build ?"))
