"""The ``predict`` outputs, written in one streaming pass: annotated VCF, JSONL, TSV and skip log.

Nothing is held per variant: the VCF is read again record by record, the reader gives each record's alleles
(window or skip, in input order), and the results come merged in input order from the progress files
(``job_state.iter_results``), each checked against its variant's key. Memory stays flat whatever the input size.
Every file goes to a temporary sibling, fsynced, and is renamed into place at the end (then the folder is synced).
The VCF gains ``BR_LABEL``/``BR_P_<label>``/``BR_MODEL`` per ALT, ``BR_CSQ`` (computed consequences, declared
when a transcript model is in use), ``BR_OOD`` (declared when the model states a domain), ``##bioreasonVersion``,
``##bioreasonCommand``, ``##bioreasonQuantize`` (the ``--quantize`` mode that ran, ``auto`` resolved) and the
FASTA's ``##contig`` lines the input lacks.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from bioreason.app.job_state import ResumeMismatchError
from bioreason.app.writers import SKIP_HEADER, AtomicWriter, dumps, fsync_dir, skip_line
from bioreason.errors import BioreasonError
from bioreason.kegg_data.htslib_messages import htslib_log_level, quiet_records
from bioreason.kegg_data.variants import Skip

CSQ_FIELDS = ("Allele", "Consequence", "SYMBOL", "Feature", "BIOTYPE", "STRAND", "EXON", "INTRON", "HGVSc", "HGVSp",
              "Protein_position", "Amino_acids", "Codons", "DISTANCE")
_CSQ_KEYS = (None, "so_terms", "gene", "transcript", "biotype", "strand", "exon", "intron", "hgvsc", "hgvsp",
             "protein_position", "amino_acids", "codons", "intron_distance")


def _quoted(label: str) -> str:
    return label.replace('"', "'").replace("\\", "/")  # a header Description is a quoted string


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


def csq_entry(alt: str, a: dict) -> str:
    """One VEP-style '|'-joined BR_CSQ entry; VCF-reserved characters percent-encoded (VCF 4.3)."""
    vals = []
    for key in _CSQ_KEYS:
        v = alt if key is None else a.get(key)
        if key == "so_terms":
            v = "&".join(v)
        elif key == "hgvsc" and v:
            v = f"{a.get('transcript')}:{v}"
        vals.append("" if v is None else str(v))
    return vcf_text("|".join(vals))


def vcf_text(value: str) -> str:
    """A String INFO value with VCF's reserved characters percent-encoded (VCF 4.3: ; = , and space)."""
    return value.translate({ord(";"): "%3B", ord("="): "%3D", ord(","): "%2C", ord(" "): "%20"})


def tsv_columns(item, res: dict | None, labels) -> list[str]:
    if res is None:
        return [item.chrom, str(item.pos), ".", item.ref, item.alt, "skipped", "."] + ["."] * (len(labels) + 5) + [
            item.reason]
    top = (res.get("csq") or [{}])[0]  # the prompt's annotation class, else the computed one; computed HGVS
    return [item.chrom, str(item.pos), item.id or ".", item.ref, item.alt, "predicted", res["label"]] + [
        f"{res['probs'][lab]:.6f}" for lab in labels] + [
        res.get("annotation") or top.get("consequence") or ".", top.get("hgvsc") or ".", top.get("hgvsp") or ".",
        res.get("annotation_source") or ".", {True: "yes", False: "no"}.get(res.get("in_domain"), "."),
        ",".join(item.flags) or "."]


def add_headers(vcf, labels, chroms, reference, with_csq: bool, with_domain: bool, undeclared=(),
                quantize: str = "none") -> None:
    import shlex

    from bioreason import __version__

    with htslib_log_level(0):  # no ##contig lines: cyvcf2 then looks for an index, and htslib says it found none
        declared = set(vcf.seqnames or [])
    vcf.add_to_header(f"##bioreasonVersion={__version__}")
    vcf.add_to_header("##bioreasonCommand=bioreason " + " ".join(shlex.quote(a) for a in sys.argv[1:]))
    vcf.add_to_header(f"##bioreasonQuantize={quantize}")  # what --quantize (auto included) ran as
    added = set()
    for chrom in [c for c in chroms if c not in declared]:  # contigs the input header lacks: the FASTA's
        contig = reference.resolve(chrom)
        if contig is not None:
            vcf.add_to_header(f"##contig=<ID={chrom},length={reference.lengths[contig]}>")
            added.add(chrom)
    for line in undeclared:  # ids the input's records use without declaring them (see VariantReader.undeclared)
        m = re.match(r"##contig=<ID=([^,>]+)", line)
        if m and m.group(1) in added:
            continue
        vcf.add_to_header(line.replace('Description="Dummy"', 'Description="used in the input without a header '
                                                                 'line; declared by bioreason as htslib read it"'))
    vcf.add_info_to_header({"ID": "BR_LABEL", "Number": "A", "Type": "String",
                            "Description": f"bioreason predicted label per ALT ({', '.join(map(_quoted, labels))}; "
                                           "'.' = skipped; reserved characters percent-encoded)"})
    for lab in labels:
        vcf.add_info_to_header({"ID": info_id(lab), "Number": "A", "Type": "Float",
                                "Description": f"bioreason probability of '{_quoted(lab)}' per ALT"})
    vcf.add_info_to_header({"ID": "BR_MODEL", "Number": "1", "Type": "String",
                            "Description": "bioreason model that made the predictions"})
    if with_domain:
        vcf.add_info_to_header({"ID": "BR_OOD", "Number": "0", "Type": "Flag", "Description":
                                "an ALT of this record lies outside the genes/regions the bioreason model was "
                                "trained on (its bioreason_task.json domain): the label is an extrapolation"})
    if with_csq:
        vcf.add_info_to_header({"ID": "BR_CSQ", "Number": ".", "Type": "String", "Description":
                                "Consequence computed by bioreason from the transcript model (--gtf), one "
                                "entry per ALT and transcript. Format: " + "|".join(CSQ_FIELDS)})


def write_outputs(vcf_path, reader, results, labels, model_id: str, paths: dict, chroms, with_csq: bool,
                  with_domain: bool, undeclared=(), quantize: str = "none") -> dict:
    """One pass over the VCF (cyvcf2), its reader (windows/skips) and the merged results; returns counts."""
    from cyvcf2 import VCF, Writer

    writers = {k: AtomicWriter(p) for k, p in paths.items() if k != "vcf"}
    vcf_tmp = paths["vcf"].with_name(f".{paths['vcf'].name}.tmp-{os.getpid()}")
    items, pending = iter(reader), iter(results)
    nxt = next(pending, None)
    counts = {"predicted": 0, "outside": 0}
    try:
        writers["skips"].write(SKIP_HEADER)
        writers["tsv"].write("\t".join(["chrom", "pos", "id", "ref", "alt", "status", "label"] + [
            f"p_{lab}" for lab in labels] + ["consequence", "hgvsc", "hgvsp", "annotation_source", "in_domain",
                                             "flags_or_reason"]) + "\n")
        vcf = VCF(str(vcf_path), lazy=True)
        add_headers(vcf, labels, chroms, reader.reference, with_csq, with_domain, undeclared, quantize)
        w = Writer(str(vcf_tmp), vcf, mode="wz" if paths["vcf"].suffix == ".gz" else "w")
        index = 0
        for rec in quiet_records(vcf):
            got = []
            for _ in range(max(1, len(rec.ALT))):
                item = next(items)
                res = None
                if not isinstance(item, Skip):  # a window: its result must be the next one, for this variant
                    if nxt is None or nxt[0] != index:
                        raise BioreasonError(f"no result for {item.key} (item {index}); rerun with --resume")
                    if nxt[2] != item.key:
                        raise ResumeMismatchError(f"the saved result for item {index} is for {nxt[2]}, but the "
                                                  f"input has {item.key} there; pass --force to start over")
                    res, nxt = nxt[1], next(pending, None)
                    counts["predicted"] += 1
                    counts["outside"] += res.get("in_domain") is False
                writers["jsonl"].write(dumps(item_record(item, res, model_id)))
                writers["tsv"].write("\t".join(tsv_columns(item, res, labels)) + "\n")
                if res is None:
                    writers["skips"].write(skip_line(item))
                got.append((item, res))
                index += 1
            if any(res is not None for _, res in got):
                rec.INFO["BR_LABEL"] = ",".join(vcf_text(res["label"]) if res else "." for _, res in got)
                for lab in labels:
                    rec.INFO[info_id(lab)] = ",".join(f"{res['probs'][lab]:.6f}" if res else "." for _, res in got)
                rec.INFO["BR_MODEL"] = model_id
                if any(res and res.get("in_domain") is False for _, res in got):
                    rec.INFO["BR_OOD"] = True
                entries = [csq_entry(item.alt, a) for item, res in got if res for a in res.get("csq") or []]
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
    return counts
