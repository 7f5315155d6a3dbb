"""The ``predict`` job: resumable, shardable batch prediction over a VCF, with atomic outputs.

Order of work: read every record (each ALT allele ends as a window or a skip), cut the windows into fixed
batches by input position, predict the batches this process owns (batch k goes to rank k mod world, so
torchrun/accelerate shards are disjoint), and append each finished batch to a progress file
(``PREFIX.progress.rankR.jsonl``, flushed and fsynced). After ``kill -9``, ``--resume`` keeps the complete
lines and redoes only unfinished batches, with the same batch composition, so results are bit-identical.
When all batches are done, rank 0 merges the progress files in input order and writes the annotated VCF,
JSONL, TSV summary and skip log, each to a temporary file fsynced and renamed at the end (then the folder is
fsynced); then the progress files go. What a resume checks (inputs by content, each variant's key) and the lock
that keeps two runs off one prefix: ``job_state.py``. ``-`` reads the VCF from standard input (``inputs.py``).
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from pathlib import Path

from bioreason.app.job_state import ResumeMismatchError, read_progress  # noqa: F401 (ResumeMismatchError: API)
from bioreason.app.job_state import fingerprint as content_fingerprint, output_lock, progress_path
from bioreason.app.writers import (SKIP_HEADER, AtomicWriter, check_outputs, dumps, fsync_dir, skip_line)
from bioreason.errors import BioreasonError, InputFormatError, OutputExistsError

log = logging.getLogger(__name__)


def info_id(label: str) -> str:
    return "BR_P_" + re.sub(r"[^0-9A-Za-z_.]", "_", label)


def output_paths(prefix: str, bgzip: bool) -> dict:
    return {"vcf": Path(f"{prefix}.vcf.gz" if bgzip else f"{prefix}.vcf"), "jsonl": Path(f"{prefix}.jsonl"),
            "tsv": Path(f"{prefix}.tsv"), "skips": Path(f"{prefix}.skipped.tsv")}


def item_record(item, result: dict | None, model_id: str) -> dict:
    base = {"chrom": item.chrom, "pos": item.pos, "ref": item.ref, "alt": item.alt, "record": item.record,
            "allele": item.allele}
    if result is None:
        return {**base, "status": "skipped", "reason": item.reason}
    return {**base, "id": item.id, "status": "predicted", "kind": item.kind, "contig": item.contig,
            "window_start0": item.window_start, "offset0": item.offset, "window_length": len(item.ref_window),
            "flags": list(item.flags), "model": model_id, **result}


CSQ_FIELDS = ("Allele", "Consequence", "SYMBOL", "Feature", "BIOTYPE", "STRAND", "EXON", "INTRON", "HGVSc", "HGVSp",
              "Protein_position", "Amino_acids", "Codons", "DISTANCE")
_CSQ_KEYS = (None, "so_terms", "gene", "transcript", "biotype", "strand", "exon", "intron", "hgvsc", "hgvsp",
             "protein_position", "amino_acids", "codons", "intron_distance")


def csq_entry(alt: str, a: dict) -> str:
    """One VEP-style '|'-joined BR_CSQ entry; VCF-reserved characters percent-encoded (VCF 4.3)."""
    vals = []
    for key in _CSQ_KEYS:
        v = alt if key is None else a.get(key)
        if key == "so_terms":
            v = "&".join(v)
        elif key in ("hgvsc", "hgvsp") and v:
            v = f"{a.get('transcript')}:{v}" if key == "hgvsc" else v
        vals.append("" if v is None else str(v))
    return "|".join(vals).translate({ord(";"): "%3B", ord("="): "%3D", ord(","): "%2C", ord(" "): "%20"})


def tsv_annotation(res: dict) -> list[str]:
    """consequence, hgvsc, hgvsp, annotation_source columns: the prompt's annotation, else the computed one."""
    top = (res.get("csq") or [{}])[0]
    return [res.get("annotation") or top.get("consequence") or ".", top.get("hgvsc") or ".",
            top.get("hgvsp") or ".", res.get("annotation_source") or "."]


def add_provenance(vcf, args, items) -> None:
    """##bioreasonVersion, ##bioreasonCommand and, for contigs the input header does not declare, the FASTA's
    ##contig lines (name as the VCF writes it, length from the FASTA)."""
    import shlex

    from bioreason import __version__
    from bioreason.app.options import fasta_path
    from bioreason.kegg_data.reference import Reference

    vcf.add_to_header(f"##bioreasonVersion={__version__}")
    vcf.add_to_header("##bioreasonCommand=bioreason " + " ".join(shlex.quote(a) for a in sys.argv[1:]))
    declared = set(vcf.seqnames or [])
    wanted = [c for c in dict.fromkeys(it.chrom for it in items) if c not in declared]
    if wanted:
        ref = Reference(fasta_path(args))
        for chrom in wanted:
            contig = ref.resolve(chrom)
            if contig is not None:
                vcf.add_to_header(f"##contig=<ID={chrom},length={ref.lengths[contig]}>")
        ref.close()


def write_outputs(args, vcf_path, items, results: dict[int, dict], labels, model_id: str, paths: dict) -> None:
    from cyvcf2 import VCF, Writer

    writers = {k: AtomicWriter(p) for k, p in paths.items() if k != "vcf"}
    vcf_tmp = paths["vcf"].with_name(f".{paths['vcf'].name}.tmp-{os.getpid()}")
    try:
        writers["skips"].write(SKIP_HEADER)
        writers["tsv"].write("\t".join(["chrom", "pos", "id", "ref", "alt", "status", "label"] +
                                       [f"p_{lab}" for lab in labels] + ["consequence", "hgvsc", "hgvsp",
                                                                         "annotation_source", "in_domain",
                                                                         "flags_or_reason"])
                             + "\n")
        by_allele = {}
        for i, item in enumerate(items):
            res = results.get(i)
            rec = item_record(item, res, model_id)
            by_allele[(item.record, item.allele)] = rec
            writers["jsonl"].write(dumps(rec))
            if res is None:
                writers["skips"].write(skip_line(item))
                cols = [item.chrom, str(item.pos), ".", item.ref, item.alt, "skipped", "."] + ["."] * (
                    len(labels) + 5) + [item.reason]
            else:
                cols = [item.chrom, str(item.pos), item.id or ".", item.ref, item.alt, "predicted", res["label"]] + [
                    f"{res['probs'][lab]:.6f}" for lab in labels] + tsv_annotation(res) + [
                    {True: "yes", False: "no"}.get(res.get("in_domain"), "."), ",".join(item.flags) or "."]
            writers["tsv"].write("\t".join(cols) + "\n")
        vcf = VCF(str(vcf_path), lazy=True)
        add_provenance(vcf, args, items)
        vcf.add_info_to_header({"ID": "BR_LABEL", "Number": "A", "Type": "String",
                                "Description": f"bioreason predicted label per ALT ({', '.join(labels)}; '.' = skipped)"})
        for lab in labels:
            vcf.add_info_to_header({"ID": info_id(lab), "Number": "A", "Type": "Float",
                                    "Description": f"bioreason probability of '{lab}' per ALT"})
        vcf.add_info_to_header({"ID": "BR_MODEL", "Number": "1", "Type": "String",
                                "Description": "bioreason model that made the predictions"})
        if any(r.get("in_domain") is False for r in results.values()):
            vcf.add_info_to_header({"ID": "BR_OOD", "Number": "0", "Type": "Flag", "Description":
                                    "an ALT of this record lies outside the genes/regions the bioreason model was "
                                    "trained on (its bioreason_task.json domain): the label is an extrapolation"})
        with_csq = any(r.get("csq") for r in results.values())
        if with_csq:
            vcf.add_info_to_header({"ID": "BR_CSQ", "Number": ".", "Type": "String", "Description":
                                    "Consequence computed by bioreason from the transcript model (--gtf), one "
                                    "entry per ALT and transcript. Format: " + "|".join(CSQ_FIELDS)})
        w = Writer(str(vcf_tmp), vcf, mode="wz" if paths["vcf"].suffix == ".gz" else "w")
        for r_i, rec in enumerate(vcf):
            n_alt = max(1, len(rec.ALT))
            got = [by_allele.get((r_i, a)) for a in range(1, n_alt + 1)]
            if any(g is not None and g["status"] == "predicted" for g in got):
                rec.INFO["BR_LABEL"] = ",".join(g["label"] if g and g["status"] == "predicted" else "." for g in got)
                for lab in labels:
                    rec.INFO[info_id(lab)] = ",".join(f"{g['probs'][lab]:.6f}" if g and g["status"] == "predicted"
                                                      else "." for g in got)
                rec.INFO["BR_MODEL"] = model_id
                if any(g and g.get("in_domain") is False for g in got):
                    rec.INFO["BR_OOD"] = True
                entries = [csq_entry(g["alt"], a) for g in got if g and g["status"] == "predicted"
                           for a in g.get("csq") or []]
                if entries:
                    rec.INFO["BR_CSQ"] = ",".join(entries)
            w.write_record(rec)
        w.close()
        vcf.close()
        with open(vcf_tmp, "rb+") as fh:  # cyvcf2 closed it; its bytes reach the disk before the rename
            os.fsync(fh.fileno())
        for wr in writers.values():
            wr.commit()
        os.replace(vcf_tmp, paths["vcf"])
        fsync_dir(paths["vcf"].parent)
    except BaseException:
        for wr in writers.values():
            wr.abort()
        vcf_tmp.unlink(missing_ok=True)
        raise


def run(args) -> int:
    import torch
    from accelerate import PartialState

    from bioreason.app.inputs import check_input_file, check_prefix, vcf_input

    state = PartialState(cpu=not torch.cuda.is_available())
    check_prefix(args.output)
    from bioreason.app.options import fasta_path

    check_input_file(fasta_path(args), "FASTA")
    if args.vcf == "-" and state.num_processes > 1:
        raise InputFormatError("standard input (-) can feed one process only; write the VCF to a file for torchrun")
    with vcf_input(args.vcf, args.output) as vcf:
        return _run(args, vcf, state)


def _run(args, vcf, state) -> int:
    import contextlib

    from bioreason.app.inputs import progress
    from bioreason.app.options import fasta_path, prompt_overrides, reader_options, transcript_model
    from bioreason.checkpoints import load_model
    from bioreason.hub import resolve_model_dir
    from bioreason.kegg_data.annotated_variants import annotation_layouts
    from bioreason.kegg_data.consequence import Annotator
    from bioreason.kegg_data.variants import Variant, VariantReader
    from bioreason.predict import PredictConfig, VariantPredictor

    rank, world = state.process_index, state.num_processes
    paths = output_paths(args.output, args.bgzip)
    labels = tuple(x.strip() for x in args.labels.split(",")) if args.labels else None
    cfg = PredictConfig.for_model(args.model, labels=labels, traces=args.traces,
                                  max_new_tokens=args.max_new_tokens, **prompt_overrides(args))
    transcripts = transcript_model(args)
    settings = {"labels": list(cfg.labels), "traces": cfg.traces, "batch_size": args.batch_size,
                "max_new_tokens": cfg.max_new_tokens, "prompt": [cfg.prompt, cfg.mode, cfg.gene, cfg.strand],
                **reader_options(args)}
    fingerprint = content_fingerprint(vcf, fasta_path(args), resolve_model_dir(args.model), args.gtf, settings)
    progress_files = [progress_path(args.output, r) for r in range(world)]
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

        reader = VariantReader(vcf, fasta_path(args), info_fields=cfg.info_fields(), **reader_options(args))
        items = list(reader)
        keys = {i: f"{it.chrom}:{it.pos}:{it.ref}:{it.alt}" for i, it in enumerate(items)}
        windows = [i for i, it in enumerate(items) if isinstance(it, Variant)]
        batches = [windows[k:k + args.batch_size] for k in range(0, len(windows), args.batch_size)]
        mine = [b for k, b in enumerate(batches) if k % world == rank]
        path = progress_files[rank]
        done = read_progress(path, fingerprint, keys) if args.resume else {}
        todo = [b for b in mine if not all(i in done for i in b)]
        folder = resolve_model_dir(args.model)
        cfg_json = folder / "config.json"
        model_id = json.loads(cfg_json.read_text()).get("model_id") if cfg_json.is_file() else folder.name
        if todo:
            model, proc = load_model(args.model)
            model_id = model.config.model_id or Path(str(args.model)).name
            annotator = Annotator(transcripts, reader.reference) if transcripts is not None else None
            predictor = VariantPredictor(model, proc, cfg, layouts=annotation_layouts(reader), annotator=annotator)
            if not path.exists() or path.stat().st_size == 0:
                path.write_text(dumps({"fingerprint": fingerprint}))
            n_mine = sum(len(b) for b in mine)
            desc = "predict" if world == 1 else f"predict [rank {rank}]"
            bar = progress(n_mine, n_mine - sum(len(b) for b in todo), desc, "variants", args.progress_interval)
            with open(path, "a") as fh:
                for batch in todo:
                    results = predictor.predict([items[i] for i in batch])
                    fh.write(dumps({"results": {str(i): r for i, r in zip(batch, results)},
                                    "keys": {str(i): keys[i] for i in batch}}))
                    fh.flush()
                    os.fsync(fh.fileno())
                    bar.update(len(batch))
            bar.close()
        state.wait_for_everyone()
        if rank == 0:
            results: dict[int, dict] = {}
            for p in progress_files:
                results.update(read_progress(p, fingerprint, keys))
            missing = [i for i in windows if i not in results]
            if missing:
                raise BioreasonError(f"{len(missing)} variants have no result after all processes finished; "
                                     "rerun with --resume")
            write_outputs(args, vcf, items, results, list(cfg.labels), model_id or "bioreason", paths)
            for p in progress_files:
                p.unlink(missing_ok=True)
            _summary(reader.stats, len(windows), paths, results, cfg)
        state.wait_for_everyone()
    return 0


def _summary(s, n_predicted: int, paths: dict, results: dict, cfg) -> None:
    print(f"{s.records} records, {s.alleles} alleles: {n_predicted} predicted, {s.skips} skipped; outputs: "
          + ", ".join(str(p) for p in paths.values()))
    for reason, n in sorted(s.reasons.items(), key=lambda kv: -kv[1]):
        print(f"  skipped {n}: {reason}")
    outside = sum(1 for r in results.values() if r.get("in_domain") is False)
    if outside:
        d = cfg.domain or {}
        log.warning("%d of %d predicted variants lie outside the model's domain (%s, %s); their labels are "
                    "extrapolations, flagged BR_OOD in the VCF and in_domain=no in the TSV/JSONL", outside,
                    len(results), ", ".join(d.get("genes") or []) or "its regions", d.get("build", "build ?"))
