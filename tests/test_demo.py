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
    from conftest import save_tiny

    folder = save_tiny(tmp_path_factory.mktemp("demo-model"), seed=2)
    port = _free_port()
    demo = launch(str(folder), "127.0.0.1", port, block=False)
    yield f"http://127.0.0.1:{port}/"
    demo.close()


def test_parse_variant_forms():
    from bioreason.app.demo import DemoInputError, parse_variant

    assert parse_variant("chr17:43,045,711 g>t") == ("chr17", 43045711, "G", "T")
    assert parse_variant("17 43045711 G T") == ("17", 43045711, "G", "T")
    with pytest.raises(DemoInputError, match="chrom:pos ref>alt"):
        parse_variant("BRCA1 c.5559C>G")


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
        browser.close()
    assert "pathogenic" in label_text or "benign" in label_text
    assert len(trace) > 0
    assert (ARTIFACTS / "demo.png").stat().st_size > 10_000
