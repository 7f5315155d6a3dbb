"""The Gradio demo through gradio_client and in a real headless browser (Debian's chromium via Playwright)."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest

pytest.importorskip("gradio")
ARTIFACTS = Path(__file__).parents[1] / "artifacts"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def demo_url(tmp_path_factory):
    from bioreason.app.demo import launch
    from conftest import save_tiny, save_tiny_kegg

    folder = save_tiny(tmp_path_factory.mktemp("demo-model"), seed=2)
    port = _free_port()
    kegg = save_tiny_kegg(tmp_path_factory.mktemp("kegg-model"))
    demo = launch(str(folder), "127.0.0.1", port, block=False, kegg_model=str(kegg))
    yield f"http://127.0.0.1:{port}/"
    demo.close()


def test_parse_variant_forms():
    from bioreason.app.demo import DemoInputError, parse_variant

    assert parse_variant("chr17:43,045,711 g>t") == ("chr17", 43045711, "G", "T")
    assert parse_variant("17 43045711 G T") == ("17", 43045711, "G", "T")
    with pytest.raises(DemoInputError, match="chrom:pos ref>alt"):
        parse_variant("BRCA1 c.5559C>G")


def test_pasted_sequences_may_be_wrapped_fasta_one_record_per_box():
    """Copying from a genome browser gives a header and 60-nt lines; the boxes took them as letters ('U+000A')."""
    from bioreason.app.demo_limits import DemoInputError, pasted_box
    from bioreason.dna_encoders import pasted_sequence

    assert pasted_sequence(">chr17:100-219 hg38\nACGT ACGT\r\nacgt\n;comment\n") == ("ACGTACGTacgt", 1)
    assert pasted_sequence("ACGT\nAC GT") == ("ACGTACGT", 0)
    assert pasted_sequence(">a\nAC\n>b\nGT\n") == ("AC", 2)
    assert pasted_box(">x\nAC\nGT\n", "first") == "ACGT" and pasted_box(None, "first") == ""
    with pytest.raises(DemoInputError, match="the variant sequence box holds 2 FASTA records; paste one"):
        pasted_box(">a\nAC\n>b\nGT\n", "variant")
    from bioreason.errors import InvalidSequenceError

    # a bad letter is named by box and by its place in what was pasted (the processor would say 'DNA sequence 1'
    # for the second box when the first is empty)
    with pytest.raises(InvalidSequenceError, match="the second sequence box has the character 'Z' at position 5 "):
        pasted_box(">h\nACG\nTZ", "second")
    assert pasted_box("acgtr", "second") == "acgtr"  # case and IUPAC codes are the processor's to handle


def test_locate_difference_on_either_strand_and_indels():
    from bioreason.app.demo import DemoBackend, annotation_text, locate_difference
    from bioreason.kegg_data.consequence import revcomp

    backend = DemoBackend()
    annotator = backend.annotator(None)
    (ref, alt, _), = backend.sequence_examples(flank=40)
    assert locate_difference(ref, alt, annotator) == ("chr17", 43045711, "G", "T")
    assert locate_difference(revcomp(ref), revcomp(alt), annotator) == ("chr17", 43045711, "G", "T")  # as on the gene
    assert ref[38:41] == "AGG"  # deleting either G of GG is one deletion: left-aligned, with its padding base
    assert locate_difference(ref, ref[:40] + ref[41:], annotator) == ("chr17", 43045709, "AG", "A")
    assert locate_difference("ACGT" * 10, "ACGT" * 9 + "ACGA", annotator) is None  # not (uniquely) in the reference
    assert locate_difference(ref, ref, annotator) is None and backend.annotator("my.fa") is None
    assert locate_difference(ref, alt, annotator, max_bases=1000) is None  # too many genes to search
    assert DemoBackend(gtf="none").annotator(None) is None
    from bioreason.kegg_data.bundled import bundled_fasta
    from bioreason.kegg_data.transcripts import bundled_gtf

    own = DemoBackend(gtf=str(bundled_gtf())).annotator(str(bundled_fasta()))  # --gtf FILE: uploads annotated too
    assert own.best("chr17", 43045711, "G", "T")["hgvsp"] == "p.Y1853*"
    a = annotator.best("chr17", 43045711, "G", "T")
    assert annotation_text(a) == "Nonsense (stop_gained), c.5559C>A, p.Y1853*, exon 23/23 of BRCA1 NM_007294.3"


def test_client_variant_vcf_and_errors(demo_url):
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    client = Client(demo_url, verbose=False)
    trace, label, window = client.predict("chr17:43045711 G>T", None, api_name="/predict_variant")
    assert isinstance(trace, str) and label["label"] in ("pathogenic", "benign")
    assert "<mark" in window and "43045711" in window
    assert "computed from the transcript model): Nonsense (stop_gained), c.5559C&gt;A, p.Y1853*" in window
    assert f"<b>Label: {label['label']}</b> (the more likely label)" in window
    table = client.predict("chr17 43045711 . G T\nchr17 43045711 . A C\n1 100 . A <DEL>", None, None,
                           api_name="/predict_vcf")
    rows = table["value"]["data"]
    assert len(rows) == 3 and rows[0][4] in ("pathogenic", "benign")
    assert rows[1][4] == "skipped" and "does not match" in rows[1][-1]
    assert rows[0][-2].startswith("Nonsense (stop_gained), c.5559C>A")  # the consequence column
    from bioreason.app.demo import DemoBackend

    (ref, alt, question), = DemoBackend().sequence_examples()
    answer, located = client.predict(ref, alt, question, api_name="/ask")
    assert isinstance(answer, str) and located.startswith("Found in the bundled reference as chr17:43045711 G>T")
    assert "p.Y1853*" in located
    _, located = client.predict("ACGT" * 15, "ACGT" * 14 + "ACGA", question, api_name="/ask")  # not in BRCA1
    assert located.startswith("Not located")
    with pytest.raises(AppError, match="does not match the reference, which has G"):
        client.predict("chr17:43045711 A>T", None, api_name="/predict_variant")
    with pytest.raises(AppError, match="chrom:pos ref>alt"):
        client.predict("not a variant", None, api_name="/predict_variant")
    with pytest.raises(AppError, match="character 'X'"):
        client.predict("ACGTX", "", "q", api_name="/ask")


def test_pathway_tab_streams_a_trace_with_the_facts_and_checks(demo_url):
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    from bioreason.app.demo_pathway import pathway_examples

    client = Client(demo_url, verbose=False)
    ex = pathway_examples()[0]  # a real KEGG train record: PINK1 T>C, Parkinson's disease
    facts, trace, answer = client.predict(ex["question"], ex["reference_sequence"], ex["variant_sequence"],
                                          api_name="/pathway")
    assert "variant `T>C`" in facts and "gene asked about: `PINK1`" in facts
    assert isinstance(trace, str) and "trace checks: gene" in answer
    # always one of the model's names: the trace's own, or the most likely after it (the tiny model's traces name none)
    assert answer.split(" (")[0] in ("parkinson s disease", "parkinson's disease", "colorectal cancer", "melanoma")
    wrap = (lambda name, seq: f">{name} pasted from a browser\n" + "\n".join(seq[i:i + 60]
                                                                          for i in range(0, len(seq), 60)))
    facts, _, _ = client.predict(ex["question"], wrap("ref", ex["reference_sequence"]),
                                 wrap("alt", ex["variant_sequence"]), api_name="/pathway")
    assert "variant `T>C`" in facts  # FASTA with wrapped lines reads as the bare sequences do
    with pytest.raises(AppError, match="paste both sequences"):
        client.predict(ex["question"], ex["reference_sequence"], "", api_name="/pathway")
    with pytest.raises(AppError, match="character 'X'"):
        client.predict(ex["question"], "ACGTX" * 10, "ACGTA" * 10, api_name="/pathway")
    with pytest.raises(AppError, match="write the pathway question"):
        client.predict(" ", "ACGT", "ACGA", api_name="/pathway")


def test_browser_submits_an_example_and_sees_label_and_trace(demo_url):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium); .ci/run installs it")
    playwright = pytest.importorskip("playwright.sync_api")
    ARTIFACTS.mkdir(exist_ok=True)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--disable-quic"])
        page = browser.new_page(viewport={"width": 1280, "height": 1400})
        page.goto(demo_url, wait_until="networkidle")
        assert "Research use only, not for clinical decisions" in page.inner_text("#notice")
        page.get_by_text("chr17:43045709 A>G").first.click()  # a prefilled real example
        page.click("#go-variant")
        page.wait_for_function(
            "() => { const l = document.querySelector('#label'); return l && /pathogenic|benign/.test(l.innerText) }",
            timeout=60_000)
        label_text = page.inner_text("#label")
        trace = page.locator("#trace textarea").input_value()
        page.screenshot(path=str(ARTIFACTS / "demo.png"), full_page=True)
        from bioreason.app.demo_pathway import pathway_examples

        ex = pathway_examples()[1]  # KRAS C>G, colorectal cancer
        page.get_by_role("tab", name="Pathway reasoning (KEGG)").click()
        page.locator("#kegg-question textarea").fill(ex["question"])
        page.locator("#kegg-ref textarea").fill(ex["reference_sequence"])
        page.locator("#kegg-alt textarea").fill(ex["variant_sequence"])
        page.click("#go-kegg")
        page.wait_for_function("() => { const a = document.querySelector('#kegg-answer textarea'); "
                               "return a && /trace checks/.test(a.value) }", timeout=60_000)
        facts = page.inner_text("#kegg-facts")
        page.screenshot(path=str(ARTIFACTS / "demo_pathway.png"), full_page=True)
        browser.close()
    assert "variant C>G" in facts.replace("`", "") and "KRAS" in facts
    assert "pathogenic" in label_text or "benign" in label_text
    assert len(trace) > 0
    assert (ARTIFACTS / "demo.png").stat().st_size > 10_000


def test_every_model_event_shares_one_queue_slot():
    """One model call at a time across all tabs: each event's concurrency is one shared group of size 1."""
    from bioreason.app.demo import DemoBackend, build_demo
    from conftest import save_tiny

    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        demo = build_demo(DemoBackend(str(save_tiny(Path(tmp), seed=2))))
        events = [f for f in demo.fns.values() if f.api_name in ("predict_variant", "predict_vcf", "ask", "pathway")]
        assert len(events) == 4 and {(f.concurrency_id, f.concurrency_limit) for f in events} == {("model", 1)}


def test_limits_in_the_units_that_cost(tmp_path):
    import gzip

    from bioreason.app.demo_limits import DemoInputError, check_fasta_upload, vcf_bytes

    many_alts = "chr17\t43045711\t.\tG\t" + ",".join(["T"] * 5003) + "\t.\t.\t.\n"  # 30 KB, 5,003 alleles
    with pytest.raises(DemoInputError, match="5,003 ALT alleles; the demo takes at most 50"):
        vcf_bytes(many_alts, None)
    bomb = tmp_path / "bomb.vcf.gz"  # a few KB compressed, 64 MiB of INFO inside
    bomb.write_bytes(gzip.compress(b"##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
                                   b"chr17\t1\t.\tA\tC\t.\t.\tX=" + b"A" * (64 * 2**20) + b"\n"))
    assert bomb.stat().st_size < 200_000
    with pytest.raises(DemoInputError, match="more than 1,000,000 bytes once decompressed"):
        vcf_bytes(None, str(bomb))
    one_line = tmp_path / "one_line.fa.gz"  # a compressed FASTA whose only sequence line is 1 MiB long
    one_line.write_bytes(gzip.compress(b">chr1\n" + b"A" * 2**20 + b"\n"))
    with pytest.raises(DemoInputError, match="a line longer than 65,536 characters"):
        check_fasta_upload(str(one_line))
    whole = gzip.compress(b">chr1\n" + b"ACGTTGCA" * 50_000 + b"\n")  # wrapped at 60 below, then cut in half
    wrapped = gzip.compress(b">chr1\n" + b"\n".join([b"ACGTTGCAAC" * 6] * 10_000) + b"\n")
    cut = tmp_path / "cut.fa.gz"
    cut.write_bytes(wrapped[: len(wrapped) // 2])
    with pytest.raises(DemoInputError, match="FASTA upload cannot be read: the compressed stream ends early: the "
                                             "file is cut off"):
        check_fasta_upload(str(cut))
    with pytest.raises(DemoInputError, match="VCF looks gzip-compressed but cannot be read: the compressed stream "
                                             "ends early"):
        vcf_bytes(None, str(cut))
    garbled = tmp_path / "garbled.vcf.gz"
    garbled.write_bytes(whole[:10] + bytes(b ^ 0x5A for b in whole[10:200]) + whole[200:])
    with pytest.raises(DemoInputError, match="the compressed stream is corrupt"):
        vcf_bytes(None, str(garbled))
    assert vcf_bytes("chr17 43045711 . G T", None).startswith(b"##fileformat")  # a normal paste passes


def test_fifty_concurrent_requests_and_hostile_inputs_leave_the_server_answering(demo_url):
    import gzip
    import os
    import tempfile

    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError
    from gradio_client.utils import QueueError

    client = Client(demo_url, verbose=False)
    jobs = [client.submit(f"chr17:430457{11 if i % 2 else 12} {'G>T' if i % 2 else 'T>C'}", None,
                          api_name="/predict_variant") for i in range(50)]
    served, turned_away = 0, 0
    for job in jobs:  # a bounded waiting list: what does not fit is told so at once, the rest is answered
        try:
            served += job.result(timeout=600)[1]["label"] in ("pathogenic", "benign")
        except QueueError:
            turned_away += 1
    assert served >= 16 and served + turned_away == 50
    with tempfile.TemporaryDirectory() as tmp:
        bomb = Path(tmp) / "bomb.vcf.gz"
        bomb.write_bytes(gzip.compress(b"##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
                                       b"chr17\t1\t.\tA\tC\t.\t.\tX=" + b"A" * (8 * 2**20) + b"\n"))
        with pytest.raises(AppError, match="once decompressed"):
            client.predict("", handle_file(str(bomb)), None, api_name="/predict_vcf")
        broken = "##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\nchr17 43045711 . G T . . .\n"
        with pytest.raises(AppError, match="separated by spaces: a VCF data line needs tabs between its columns "
                                           r"\(paste it with tabs, or upload the file\)") as err:
            client.predict(broken, None, None, api_name="/predict_vcf")  # was a segfault that killed the server
        assert "gradio" not in str(err.value) and "/tmp" not in str(err.value)  # no server paths
        with pytest.raises(AppError, match="the demo takes at most 2,000"):
            client.predict("ACGT", "ACGA", "q" * 1_000_000, api_name="/ask")
        vcf = Path(tmp) / "upload.vcf"
        vcf.write_text("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
                       "chr17\t43045711\t.\tG\tT\t.\t.\t.\n")
        table = client.predict("", handle_file(str(vcf)), None, api_name="/predict_vcf")
        assert table["value"]["data"][0][4] in ("pathogenic", "benign")
    temp = os.environ["GRADIO_TEMP_DIR"]
    assert not [p for p in Path(temp).rglob("*") if p.is_file() and p.suffix in (".vcf", ".gz")]  # uploads gone
    trace, label, _ = client.predict("chr17:43045711 G>T", None, api_name="/predict_variant")  # still answering
    assert label["label"] in ("pathogenic", "benign")


def test_a_port_in_use_is_refused_before_the_model_loads(capsys):
    """gradio said 'Cannot find empty port ... server_port parameter to launch()' after the model had loaded."""
    import socket

    from bioreason.app.cli import main

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["demo", "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"cannot serve on 127.0.0.1:{port}" in err and f"--port {port + 1}" in err and "Traceback" not in err


def test_a_host_that_is_not_an_address_is_refused_before_the_model_loads(capsys):
    from bioreason.app.cli import main

    assert main(["demo", "--host", "no.such.host.invalid"]) == 2
    err = capsys.readouterr().err
    assert "--host no.such.host.invalid: not an address of this machine" in err and "Traceback" not in err

