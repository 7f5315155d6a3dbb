"""The Gradio demo: one variant, a pasted/uploaded VCF, or raw sequences; the reasoning streams as it is made.

Front end only: windows come from ``bioreason.kegg_data`` (same policies as the CLI), prompts and labels from
``bioreason.predict``, streaming from ``bioreason.inference``. One model call at a time (queue concurrency 1,
bounded waiting list), uploads capped in size and records, a private ``GRADIO_TEMP_DIR``, and every input
problem shown as a message in the page (``gr.Error``), never a traceback. Research use only.
"""

from __future__ import annotations

import html
import os
import re
import tempfile
from pathlib import Path

NOTICE = ("**Research use only, not for clinical decisions.** Predictions come from a small language model "
          "reading DNA; they can be wrong and have not been validated for patient care.")
EXAMPLES = [  # real BRCA1 saturation-genome-editing variants (Findlay et al. 2018), GRCh38
    ["chr17:43045711 G>T", "p.Y1853* nonsense (LOF in the assay)"],
    ["chr17:43045709 A>G", "p.L1854P missense (LOF in the assay)"],
    ["chr17:43045705 T>A", "synonymous (FUNC in the assay)"],
]
VARIANT_RE = re.compile(r"^\s*(?:chr)?([0-9A-Za-z_.]+)\s*[:\s]\s*([0-9,]+)\s+([ACGTNacgtn]+)\s*(?:>|/|\s)\s*([ACGTNacgtn]+)\s*$")
MAX_VCF_BYTES = 1_000_000
MAX_VCF_RECORDS = 50


class DemoInputError(Exception):
    pass


def parse_variant(text: str) -> tuple[str, int, str, str]:
    """'chr17:43045711 G>T' -> ('chr17', 43045711, 'G', 'T'); a clear error otherwise."""
    m = VARIANT_RE.match(text or "")
    if not m:
        raise DemoInputError(f"cannot read {text!r} as a variant; write it as chrom:pos ref>alt, e.g. chr17:43045711 G>T")
    chrom = text.strip().split(":")[0].split()[0]
    return chrom, int(m.group(2).replace(",", "")), m.group(3).upper(), m.group(4).upper()


def window_html(variant, flank: int = 60) -> str:
    """The reference and alternate windows around the allele, the allele highlighted."""
    o = variant.offset
    ref = variant.ref_window[o - flank:o], variant.ref_window[o:o + len(variant.ref)], variant.ref_window[
        o + len(variant.ref):o + len(variant.ref) + flank]
    alt = variant.alt_window[o - flank:o], variant.alt_window[o:o + len(variant.alt)], variant.alt_window[
        o + len(variant.alt):o + len(variant.alt) + flank]

    def row(name, parts, colour):
        a, b, c = (html.escape(x) for x in parts)
        return (f"<div><b>{name}</b> <code style='font-size:12px'>{a}<mark style='background:{colour}'>{b}</mark>"
                f"{c}</code></div>")

    return (f"<div class='br-window'><p>{html.escape(variant.chrom)}:{variant.pos} {variant.ref}&gt;{variant.alt}, "
            f"window of {len(variant.ref_window)} nt (allele at offset {o + 1}; ±{flank} nt shown)</p>"
            + row("ref", ref, "#9fd3ff") + row("alt", alt, "#ffb3b3") + "</div>")


class DemoBackend:
    """Model, predictor and reference shared by the handlers (loaded once, lazily)."""

    def __init__(self, model_path=None, max_new_tokens: int = 192):
        self.model_path, self.max_new_tokens = model_path, max_new_tokens
        self._loaded = None
        self._refs: dict = {}

    def predictor(self):
        if self._loaded is None:
            from bioreason.hub import load_model
            from bioreason.predict import PredictConfig, VariantPredictor

            model, proc = load_model(self.model_path)
            self._loaded = VariantPredictor(model, proc, PredictConfig.for_model(self.model_path))
        return self._loaded

    def reference(self, fasta_file):
        from bioreason.kegg_data.bundled import bundled_fasta
        from bioreason.kegg_data.reference import Reference

        path = str(fasta_file or bundled_fasta())
        if path not in self._refs:
            self._refs[path] = Reference(path)
        return self._refs[path]

    def windows_for(self, text, fasta_file):
        from bioreason.kegg_data.variants import Skip, WindowBuilder

        from bioreason.errors import ReferenceMismatchError

        chrom, pos, ref, alt = parse_variant(text)
        reference = self.reference(fasta_file)
        builder = WindowBuilder(reference, window=self.predictor().proc.max_nucleotides, ref_check="error")
        try:
            (item,) = builder.build(chrom, pos, ref, [alt], where=lambda _i: "the variant box")
        except ReferenceMismatchError:
            contig = reference.resolve(chrom)
            actual = reference.fetch(contig, pos - 1, pos - 1 + len(ref))
            raise DemoInputError(f"REF {ref} at {chrom}:{pos} does not match the reference, which has {actual} "
                                 "there; check the alleles and that the position is GRCh38") from None
        if isinstance(item, Skip):
            raise DemoInputError(f"{chrom}:{pos} {ref}>{alt} cannot be analysed: {item.reason}")
        return item

    def stream_variant(self, text, fasta_file):
        """Yields (trace, label probabilities, window html) while the model reasons about one variant."""
        from bioreason.inference import stream_answer

        variant = self.windows_for(text, fasta_file)
        pred = self.predictor()
        shown = window_html(variant)
        trace = ""
        yield trace, None, shown
        for piece in stream_answer(pred.model, pred.proc, pred.messages(variant), prefix=pred.cfg.trace_prefix,
                                   max_new_tokens=self.max_new_tokens):
            trace += piece
            yield trace, None, shown
        (res,) = pred.predict([variant])
        yield trace, res["probs"], shown

    def predict_vcf(self, text, vcf_file, fasta_file):
        from bioreason.errors import BioreasonError
        from bioreason.kegg_data.annotated_variants import annotation_layouts
        from bioreason.kegg_data.variants import Skip, VariantReader
        from bioreason.predict import VariantPredictor

        data = Path(vcf_file).read_bytes() if vcf_file else (text or "").encode()
        if not data.strip():
            raise DemoInputError("paste VCF text or upload a .vcf file first")
        if len(data) > MAX_VCF_BYTES:
            raise DemoInputError(f"the VCF is {len(data):,} bytes; the demo takes at most {MAX_VCF_BYTES:,} "
                                 "(use `bioreason predict` for whole files)")
        suffix = ".vcf.gz" if data[:2] == b"\x1f\x8b" else ".vcf"
        if suffix == ".vcf" and b"#CHROM" not in data:  # pasted records without a header: add the minimal one
            lines = [line.split() for line in data.strip().splitlines() if line.strip()]
            lines = [f + [b"."] * (8 - len(f)) if 5 <= len(f) < 8 else f for f in lines]  # QUAL FILTER INFO
            data = (b"##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n"
                    + b"\n".join(b"\t".join(f) for f in lines) + b"\n")
        with tempfile.NamedTemporaryFile(suffix=suffix, dir=os.environ.get("GRADIO_TEMP_DIR"), delete=False) as fh:
            fh.write(data)
        try:
            pred = self.predictor()
            reader = VariantReader(fh.name, self.reference(fasta_file), window=pred.proc.max_nucleotides,
                                   ref_check="skip", info_fields=pred.cfg.info_fields())
            pred = VariantPredictor(pred.model, pred.proc, pred.cfg, layouts=annotation_layouts(reader))
            items = []
            for item in reader:
                items.append(item)
                if reader.stats.records > MAX_VCF_RECORDS:
                    raise DemoInputError(f"the demo takes at most {MAX_VCF_RECORDS} records; use `bioreason predict`")
        except BioreasonError as exc:  # name the input as the person knows it, not our temporary file
            raise DemoInputError(str(exc).replace(fh.name, "the VCF")) from None
        finally:
            os.unlink(fh.name)
        variants = [i for i in items if not isinstance(i, Skip)]
        results = iter(pred.predict(variants) if variants else [])
        labels = list(pred.cfg.labels)
        rows = []
        for it in items:
            if isinstance(it, Skip):
                rows.append([it.chrom, it.pos, it.ref, it.alt, "skipped"] + [None] * len(labels) + [it.reason])
            else:
                r = next(results)
                rows.append([it.chrom, it.pos, it.ref, it.alt, r["label"]] + [r["probs"][lab] for lab in labels] +
                            [",".join(it.flags)])
        return ["chrom", "pos", "ref", "alt", "label"] + [f"P({lab})" for lab in labels] + ["notes"], rows

    def stream_sequences(self, ref, alt, question):
        from bioreason.inference import build_messages, stream_answer

        seqs = [s for s in (ref, alt) if s and s.strip()]
        if not seqs:
            raise DemoInputError("paste at least one DNA sequence")
        pred = self.predictor()
        msgs = build_messages(question or "What is the effect of the difference between these sequences?", seqs)
        pred.proc([msgs])  # validate before streaming
        trace = ""
        for piece in stream_answer(pred.model, pred.proc, msgs, max_new_tokens=self.max_new_tokens):
            trace += piece
            yield trace


def _guard(fn):
    """Turn library and input errors into messages shown in the page."""
    import functools
    import inspect

    import gradio as gr

    from bioreason.errors import BioreasonError

    def message(exc):
        return gr.Error(str(exc), print_exception=False)

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen(*a, **k):
            try:
                yield from fn(*a, **k)
            except (BioreasonError, DemoInputError, ValueError) as exc:
                raise message(exc) from None
        return gen

    @functools.wraps(fn)
    def plain(*a, **k):
        try:
            return fn(*a, **k)
        except (BioreasonError, DemoInputError, ValueError) as exc:
            raise message(exc) from None
    return plain


def build_demo(backend: DemoBackend):
    import gradio as gr

    with gr.Blocks(title="bioreason demo") as demo:
        gr.Markdown("# bioreason: a DNA-language model that reasons about variants")
        gr.Markdown(NOTICE, elem_id="notice")
        with gr.Tab("One variant"):
            with gr.Row():
                variant = gr.Textbox(label="Variant (chrom:pos ref>alt, GRCh38)", value=EXAMPLES[0][0],
                                     elem_id="variant-box")
                fasta = gr.File(label="Reference FASTA (optional; default: bundled GRCh38 chr17 with BRCA1)",
                                file_types=[".fa", ".fasta", ".gz", ".fai", ".gzi"], type="filepath")
            note = gr.Textbox(visible=False, label="What it is")
            go = gr.Button("Interpret variant", variant="primary", elem_id="go-variant")
            gr.Examples(EXAMPLES, inputs=[variant, note], label="Real BRCA1 variants")
            trace = gr.Textbox(label="Reasoning (streamed)", lines=8, elem_id="trace")
            label = gr.Label(label="Prediction (probability of each label from answer likelihoods)",
                             elem_id="label")
            window = gr.HTML(label="Window")
            go.click(_guard(backend.stream_variant), [variant, fasta], [trace, label, window],
                     api_name="predict_variant")
        with gr.Tab("VCF"):
            vcf_text = gr.Textbox(label=f"Paste VCF (at most {MAX_VCF_RECORDS} records)", lines=6)
            vcf_file = gr.File(label="or upload a .vcf / .vcf.gz", file_types=[".vcf", ".gz"], type="filepath")
            vcf_fasta = gr.File(label="Reference FASTA (optional)", type="filepath")
            go_vcf = gr.Button("Predict all", variant="primary")
            table = gr.Dataframe(label="Predictions (score only)", wrap=True)

            def run_vcf(text, file, fa):
                header, rows = backend.predict_vcf(text, file, fa)
                return gr.Dataframe(value=rows, headers=header)

            go_vcf.click(_guard(run_vcf), [vcf_text, vcf_file, vcf_fasta], table, api_name="predict_vcf")
        with gr.Tab("Sequences"):
            ref = gr.Textbox(label="Reference sequence (<= 1,024 nt)", lines=3)
            alt = gr.Textbox(label="Alternate sequence (optional)", lines=3)
            question = gr.Textbox(label="Question", value="What is the effect of the variant in the second sequence?")
            go_seq = gr.Button("Ask", variant="primary")
            answer = gr.Textbox(label="Answer (streamed)", lines=8)
            go_seq.click(_guard(backend.stream_sequences), [ref, alt, question], answer, api_name="ask")
    demo.queue(default_concurrency_limit=1, max_size=16)
    return demo


def launch(model_path=None, host: str = "127.0.0.1", port: int = 7860, block: bool = True):
    os.environ.setdefault("GRADIO_TEMP_DIR", tempfile.mkdtemp(prefix="bioreason-gradio-"))
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    backend = DemoBackend(model_path)
    backend.predictor()  # load before serving: the first visitor does not wait, and a bad --model fails here
    demo = build_demo(backend)
    demo.launch(server_name=host, server_port=port, max_file_size="20mb", show_error=True,
                prevent_thread_lock=not block, quiet=True)
    return demo
