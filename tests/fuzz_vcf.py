"""Fuzz ``bioreason predict`` and the demo's VCF box with malformed VCFs made from real records (run by
tests/test_fuzz.py in a child process, so a crash of a C library shows as that process dying, not as a lost test
run).

A hypothesis strategy starts from real BRCA1 SGE and ClinVar-style records and breaks them the ways files break:
fields split or merged, tabs turned into spaces, lines cut short, huge INFO values, thousands of ALT alleles,
odd characters in REF/ALT/POS, random bytes, a BOM, CRLF line ends, a missing header, and gzip output cut short.
For each file: ``predict`` (tiny model, bundled reference) must exit 0 or 2 with a one-line error and no
traceback, and on success write one JSONL line per ALT allele; the demo's ``predict_vcf`` must return rows or
raise its input error. ``python tests/fuzz_vcf.py MODEL_DIR N`` runs N examples and prints a summary line.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import sys
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]
HEADER = [line for line in (ROOT / "examples" / "brca1_sge_24.vcf").read_text().splitlines() if line.startswith("#")]
RECORDS = [line for line in (ROOT / "examples" / "brca1_sge_24.vcf").read_text().splitlines()
           if not line.startswith("#")]
JUNK = st.binary(min_size=1, max_size=200)


@st.composite
def broken_vcf(draw) -> tuple[bytes, str]:
    lines = list(HEADER) if draw(st.integers(0, 9)) else HEADER[-1:]  # sometimes only the #CHROM line
    body = draw(st.lists(st.sampled_from(RECORDS), min_size=1, max_size=6))
    out, kinds = [], []
    for line in body:
        kind = draw(st.sampled_from(["keep"] * 16 + ["split", "merge", "spaces", "cut", "huge_info", "many_alts",
                                                     "odd_alleles", "odd_pos", "junk", "empty_alt"]))
        cols = line.split("\t")
        if kind == "split":
            i = draw(st.integers(0, len(cols) - 1))
            j = draw(st.integers(0, len(cols[i])))
            cols[i] = cols[i][:j] + "\t" + cols[i][j:]
        elif kind == "merge":
            i = draw(st.integers(0, len(cols) - 2))
            cols[i:i + 2] = [cols[i] + cols[i + 1]]
        elif kind == "spaces":
            cols = [" ".join(cols)]
        elif kind == "cut":
            text = "\t".join(cols)
            cols = [text[:draw(st.integers(0, len(text)))]]
        elif kind == "huge_info":
            cols[7] = "X=" + "A" * draw(st.integers(1_000, 300_000))
        elif kind == "many_alts":
            cols[4] = ",".join(draw(st.sampled_from(["A", "C", "G", "T", "AC"])) for _ in range(
                draw(st.integers(2, 3_000))))
        elif kind == "odd_alleles":
            cols[3 + draw(st.integers(0, 1))] = draw(st.sampled_from(["", ".", "*", "<DEL>", "N", "acgt", "X", "A]",
                                                                      "[chr1:5[A", "AAAA" * 40]))
        elif kind == "odd_pos":
            cols[1] = draw(st.sampled_from(["0", "-5", "abc", "9999999999999", "1e5", "", "83257441"]))
        elif kind == "empty_alt":
            cols[4] = ","
        text = "\t".join(cols) if kind != "junk" else draw(JUNK).decode("latin-1")
        out.append(text)
        kinds.append(kind)
    lines += out
    eol = "\r\n" if draw(st.integers(0, 9)) == 0 else "\n"
    data = (eol.join(lines) + eol).encode("utf-8", errors="replace")
    if draw(st.integers(0, 9)) == 0:
        data = b"\xef\xbb\xbf" + data
    if draw(st.integers(0, 4)) == 0:
        data = gzip.compress(data)
        if draw(st.booleans()):
            data = data[:draw(st.integers(10, max(11, len(data) - 1)))]
    return data, "+".join(sorted(set(kinds)))


def text_alleles(data: bytes) -> int:
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    n = 0
    for line in data.splitlines():
        if line and not line.startswith(b"#"):
            cols = line.split(b"\t")
            n += cols[4].count(b",") + 1 if len(cols) > 4 else 1
    return n


def run(model_dir: str, n: int) -> dict:
    from bioreason.app.cli import main
    from bioreason.app.demo import DemoBackend, DemoInputError

    backend = DemoBackend(model_dir)
    stats = {"examples": 0, "predicted_ok": 0, "predict_errors": 0, "demo_ok": 0, "demo_errors": 0}
    tmp = Path(tempfile.mkdtemp(prefix="fuzz-"))

    @settings(max_examples=n, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(broken_vcf())
    def one(case):
        data, kinds = case
        k = stats["examples"]
        stats["examples"] += 1
        suffix = ".vcf.gz" if data[:2] == b"\x1f\x8b" else ".vcf"
        path = tmp / f"case{k}{suffix}"
        path.write_bytes(data)
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            rc = main(["predict", str(path), "--fasta", "bundled", "--model", model_dir, "-o", str(tmp / f"o{k}"),
                       "--ref-check", "skip", "--batch-size", "16"])
        said = err.getvalue()
        assert rc in (0, 2), (kinds, rc, said[-500:])
        assert "Traceback" not in said, (kinds, said[-1500:])
        if rc == 0:
            rows = [json.loads(x) for x in (tmp / f"o{k}.jsonl").read_text().splitlines()]
            assert len(rows) == text_alleles(data), (kinds, len(rows), text_alleles(data))  # each allele accounted
            assert all(r["status"] in ("predicted", "skipped") for r in rows)
            stats["predicted_ok"] += 1
        else:
            assert said.count("\nerror: ") + said.startswith("error: ") >= 1, (kinds, said[-500:])
            stats["predict_errors"] += 1
        upload = tmp / f"upload{k}" / path.name  # the demo deletes an upload (and its folder) when done
        upload.parent.mkdir()
        upload.write_bytes(data)
        try:
            backend.predict_vcf(None, str(upload), None)
            stats["demo_ok"] += 1
        except DemoInputError:
            stats["demo_errors"] += 1
        for f in tmp.glob(f"o{k}*"):
            f.unlink()
        path.unlink(missing_ok=True)

    one()
    return stats


if __name__ == "__main__":
    print(json.dumps(run(sys.argv[1], int(sys.argv[2]))))
