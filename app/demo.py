"""The Gradio demo: one variant, a pasted/uploaded VCF, or raw sequences; the reasoning streams as it is made.

Front end only: windows come from ``bioreason.kegg_data`` (same policies as the CLI), prompts and labels from
``bioreason.predict``, streaming from ``bioreason.inference``. With the bundled reference, each variant's
consequence, HGVS names and codon change are computed from the bundled BRCA1 transcript (``consequence.py``) and go
into the prompt and the page; pasted sequences that lie in a known gene are located there and treated as that
variant (the parsing, locating and HTML are ``demo_variant``'s). A fourth tab (``demo_pathway``) runs BioReason's
KEGG pathway task with a KEGG model (``--model kegg-v1`` or the shipped one). One model call at a time (queue
concurrency 1, bounded waiting list), uploads capped in size and records, a private ``GRADIO_TEMP_DIR``, and every
input problem shown as a message in the page (``gr.Error``), never a traceback. Research use only.
"""

from __future__ import annotations

import os
import re
import tempfile

from bioreason.answers import ANSWER_TOKENS
from bioreason.app.demo_limits import (BATCH, MAX_QUESTION_CHARS, MAX_VCF_RECORDS, DemoInputError,  # noqa: F401
                                       check_fasta_upload, discard_upload, pasted_box, vcf_bytes)
from bioreason.app.demo_variant import (EXAMPLES, VARIANT_RE, annotation_text, decision_html,  # noqa: F401
                                        locate_difference, parse_variant, window_html)

NOTICE = ("**Research use only, not for clinical decisions.** Predictions come from a small language model "
          "reading DNA; they can be wrong and have not been validated for patient care.")


class DemoBackend:
    """Model, predictor and reference shared by the handlers (loaded once, lazily)."""

    def __init__(self, model_path=None, max_new_tokens: int = 192, gtf: str = "auto", quantize: str = "none"):
        from bioreason.app.demo_pathway import is_kegg_model

        self.kegg_model = None
        if is_kegg_model(model_path):  # a KEGG model serves the pathway tab; the variant tabs get the default
            from bioreason.hub import shipped_model_dir

            self.kegg_model, model_path = model_path, shipped_model_dir()
            model_path = str(model_path) if model_path else None
        self.model_path, self.max_new_tokens, self.quantize = model_path, max_new_tokens, quantize
        self._loaded = None
        self._refs: dict = {}
        self._annotators: dict = {}
        from bioreason.kegg_data.transcripts import resolve_gtf

        # auto: the bundled transcript, for the bundled reference only; a file of the user's: every reference
        self.transcripts = resolve_gtf("bundled" if gtf == "auto" else gtf, None)
        self.any_reference = gtf not in ("auto", "bundled", "none", None)

    def predictor(self):
        if self._loaded is None:
            from bioreason.checkpoints import load_model
            from bioreason.predict import PredictConfig, VariantPredictor
            from bioreason.quantize import resolve_for_model

            cfg = PredictConfig.for_model(self.model_path)
            mode = resolve_for_model(self.quantize, self.model_path, generates=True, prompt_mode=cfg.mode)
            model, proc = load_model(self.model_path, quantize=mode)
            self._loaded = VariantPredictor(model, proc, cfg)
        return self._loaded

    def window(self) -> int:
        """The window the model was trained on (its bioreason_task.json), else predict's default for it."""
        from bioreason.predict import model_window

        pred = self.predictor()
        return model_window(pred.cfg, pred.proc.max_nucleotides)

    def reference(self, fasta_file):
        """The bundled reference (kept open), or an upload (checked first; closed and deleted by ``release``)."""
        from bioreason.kegg_data.bundled import bundled_fasta
        from bioreason.kegg_data.reference import Reference

        path = str(fasta_file or bundled_fasta())
        if path not in self._refs:
            if fasta_file:
                check_fasta_upload(path)
            self._refs[path] = Reference(path)
        return self._refs[path]

    def release(self, *uploads) -> None:
        """End of a request: close and forget uploaded references, delete every upload and its index files."""
        for path in uploads:
            if not path:
                continue
            ref = self._refs.pop(str(path), None)
            if ref is not None:
                ref.close()
            self._annotators.pop(str(path), None)
            discard_upload(path)

    def annotator(self, fasta_file):
        """The transcript model over a reference: the bundled BRCA1 transcript for the bundled reference; for an
        uploaded FASTA only a model the operator named with ``--gtf`` (the upload's genome build is unknown)."""
        if self.transcripts is None or (fasta_file and not self.any_reference):
            return None
        key = str(fasta_file or "bundled")
        if key not in self._annotators:
            from bioreason.kegg_data.consequence import Annotator

            self._annotators[key] = Annotator(self.transcripts, self.reference(fasta_file))
        return self._annotators[key]

    def predictor_for(self, fasta_file, layouts=None):
        from bioreason.predict import VariantPredictor

        pred = self.predictor()
        return VariantPredictor(pred.model, pred.proc, pred.cfg, layouts=layouts, annotator=self.annotator(fasta_file))

    def example_notes(self) -> list[list[str]]:
        """The examples with their computed annotation and the loaded model's label, as the page lists them."""
        rows = []
        for text, assay in EXAMPLES:
            variant = self.windows_for(text, None)
            pred = self.predictor_for(None)
            (res,) = pred.predict([variant])
            top = (res.get("csq") or [None])[0]
            label = f"model: {res['label']} ({', '.join(f'P({k}) {v:.2f}' for k, v in res['probs'].items())})"
            rows.append([text, f"{annotation_text(top)}; {assay}; {label}"])
        return rows

    def sequence_examples(self, flank: int = 60) -> list[list[str]]:
        """The first example variant as two pasted sequences (reference slice and the same with the ALT)."""
        chrom, pos, ref, alt = parse_variant(EXAMPLES[0][0])
        reference = self.reference(None)
        contig = reference.resolve(chrom)
        left = reference.fetch(contig, pos - 1 - flank, pos - 1)
        right = reference.fetch(contig, pos - 1 + len(ref), pos - 1 + len(ref) + flank)
        return [[left + ref + right, left + alt + right, "What is the effect of the variant in the second sequence?"]]

    def windows_for(self, text, fasta_file):
        from bioreason.kegg_data.variants import Skip, WindowBuilder

        from bioreason.errors import ReferenceMismatchError

        chrom, pos, ref, alt = parse_variant(text)
        reference = self.reference(fasta_file)
        builder = WindowBuilder(reference, window=self.window(), ref_check="error",
                                options_as="pasted")
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
        try:
            for trace, probs, shown, _ in self._stream(self.windows_for(text, fasta_file), fasta_file):
                yield trace, probs, shown
        finally:
            self.release(fasta_file)

    def _stream(self, variant, fasta_file):
        """Yields (trace, probabilities or None, window html, annotation dict or None)."""
        from bioreason.inference import stream_answer

        pred = self.predictor_for(fasta_file)
        prompt = pred.prompt(variant)
        annotation = (prompt.annotation if prompt else None) or (pred.facts(variant).get("csq") or [None])[0]
        shown = window_html(variant, annotation=annotation)
        trace = ""
        yield trace, None, shown, annotation
        for piece in stream_answer(pred.model, pred.proc, pred.messages(variant, prompt), prefix=pred.cfg.trace_prefix,
                                   max_new_tokens=self.max_new_tokens, answer_tokens=ANSWER_TOKENS):
            trace += piece
            yield trace, None, shown, annotation
        (res,) = pred.predict([variant])
        yield trace, res["probs"], decision_html(res, pred.cfg.decision) + shown, annotation

    def predict_vcf(self, text, vcf_file, fasta_file):
        try:
            return self._predict_vcf(text, vcf_file, fasta_file)
        finally:
            self.release(vcf_file, fasta_file)

    def _predict_vcf(self, text, vcf_file, fasta_file):
        from bioreason.errors import BioreasonError
        from bioreason.kegg_data.annotated_variants import annotation_layouts
        from bioreason.kegg_data.variants import Skip
        from bioreason.kegg_data.vcf_reader import VariantReader

        data = vcf_bytes(text, vcf_file)  # decompressed, records and alleles counted
        with tempfile.NamedTemporaryFile(suffix=".vcf", dir=os.environ.get("GRADIO_TEMP_DIR"), delete=False) as fh:
            fh.write(data)
        try:
            pred = self.predictor()
            reader = VariantReader(fh.name, self.reference(fasta_file), window=self.window(),
                                   ref_check="skip", info_fields=pred.cfg.info_fields(), options_as="pasted")
            pred = self.predictor_for(fasta_file, layouts=annotation_layouts(reader))
            items = list(reader)
        except BioreasonError as exc:  # name the input as the person knows it, not our temporary file
            raise DemoInputError(str(exc).replace(fh.name, "the VCF")) from None
        finally:
            os.unlink(fh.name)
        variants = [i for i in items if not isinstance(i, Skip)]
        results = iter([r for k in range(0, len(variants), BATCH) for r in pred.predict(variants[k:k + BATCH])])
        labels = list(pred.cfg.labels)
        rows = []
        for it in items:
            if isinstance(it, Skip):
                rows.append([it.chrom, it.pos, it.ref, it.alt, "skipped"] + [None] * (len(labels) + 1) + [it.reason])
            else:
                r = next(results)
                top = (r.get("csq") or [None])[0]
                rows.append([it.chrom, it.pos, it.ref, it.alt, r["label"]] + [r["probs"][lab] for lab in labels] +
                            [annotation_text(top) or r.get("annotation") or "", ",".join(it.flags)])
        return (["chrom", "pos", "ref", "alt", "label"] + [f"P({lab})" for lab in labels] + ["consequence", "notes"],
                rows)

    def stream_sequences(self, ref, alt, question):
        """Yields (answer, where the difference was found). Sequences that lie once in a gene of the bundled
        transcript model become that variant (annotated prompt, as in the one-variant tab); others get the
        question with the sequences alone."""
        from bioreason.inference import build_messages, stream_answer
        from bioreason.kegg_data.variants import Skip, WindowBuilder

        ref, alt = pasted_box(ref, "first"), pasted_box(alt, "second")
        seqs = [s for s in (ref, alt) if s]
        if not seqs:
            raise DemoInputError("paste at least one DNA sequence")
        if len(question or "") > MAX_QUESTION_CHARS:
            raise DemoInputError(f"the question has {len(question):,} characters; the demo takes at most "
                                 f"{MAX_QUESTION_CHARS:,}")
        pred = self.predictor()
        msgs = build_messages(question or "What is the effect of the difference between these sequences?", seqs)
        pred.proc([msgs])  # validate before streaming
        found = locate_difference(ref or "", alt or "", self.annotator(None)) if len(seqs) == 2 else None
        if found is not None:
            chrom, pos, r, a = found
            builder = WindowBuilder(self.reference(None), window=self.window(), ref_check="error")
            (item,) = builder.build(chrom, pos, r, [a], where=lambda _i: "the sequences")
            if not isinstance(item, Skip):
                note = f"Found in the bundled reference as {chrom}:{pos} {r}>{a}"
                if pred.cfg.prompt == "annotated_variant":
                    note += " (the model is asked about this variant, as in the one-variant tab)"
                for trace, _, _, annotation in self._stream(item, None):
                    yield trace, f"{note}: {annotation_text(annotation) or 'no annotation'}"
                return
        note = "Not located in a gene of the bundled reference: the model answers from the sequences alone."
        trace = ""
        yield trace, note
        for piece in stream_answer(pred.model, pred.proc, msgs, max_new_tokens=self.max_new_tokens,
                                   answer_tokens=ANSWER_TOKENS):
            trace += piece
            yield trace, note


def _guard(fn):
    """Every error becomes a message in the page: input and library errors as they are (upload paths replaced by
    'your upload'), anything else as 'internal error' with the details in the server log only."""
    import functools
    import inspect
    import logging

    import gradio as gr

    from bioreason.errors import BioreasonError

    def message(exc):
        if isinstance(exc, (BioreasonError, DemoInputError, ValueError)):
            text = str(exc)
            temp = os.environ.get("GRADIO_TEMP_DIR")
            if temp:
                text = re.sub(re.escape(temp) + r"[^\s'\",;:)]*", "your upload", text)
            return gr.Error(text, print_exception=False)
        logging.getLogger(__name__).exception("demo request failed")
        return gr.Error("internal error while handling this request (details are in the server log); "
                        "check the input, or try the command line", print_exception=False)

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen(*a, **k):
            try:
                yield from fn(*a, **k)
            except gr.Error:
                raise
            except Exception as exc:
                raise message(exc) from None
        return gen

    @functools.wraps(fn)
    def plain(*a, **k):
        try:
            return fn(*a, **k)
        except gr.Error:
            raise
        except Exception as exc:
            raise message(exc) from None
    return plain


# every event that touches the model (or the shared reference cache) queues in one group, one at a time
ONE_MODEL_CALL = {"concurrency_id": "model", "concurrency_limit": 1}


def build_demo(backend: DemoBackend, pathway=None):
    import gradio as gr

    from bioreason.app.demo_pathway import PathwayBackend, build_tab

    pathway = pathway or PathwayBackend(backend.kegg_model)
    with gr.Blocks(title="bioreason demo", delete_cache=(600, 900)) as demo:  # backstop: stale files go
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
            gr.Examples(backend.example_notes(), inputs=[variant, note], label="Real BRCA1 variants "
                        "(computed annotation; assay class; the loaded model's label)")
            trace = gr.Textbox(label="Reasoning (streamed)", lines=8, elem_id="trace")
            label = gr.Label(label="Probability of each label (from answer likelihoods; the label is stated below)",
                             elem_id="label")
            window = gr.HTML(label="Window")
            go.click(_guard(backend.stream_variant), [variant, fasta], [trace, label, window],
                     api_name="predict_variant", **ONE_MODEL_CALL)
        with gr.Tab("VCF"):
            vcf_text = gr.Textbox(label=f"Paste VCF (at most {MAX_VCF_RECORDS} records)", lines=6)
            vcf_file = gr.File(label="or upload a .vcf / .vcf.gz", file_types=[".vcf", ".gz"], type="filepath")
            vcf_fasta = gr.File(label="Reference FASTA (optional)", type="filepath")
            go_vcf = gr.Button("Predict all", variant="primary")
            table = gr.Dataframe(label="Predictions (score only)", wrap=True)

            def run_vcf(text, file, fa):
                header, rows = backend.predict_vcf(text, file, fa)
                return gr.Dataframe(value=rows, headers=header)

            go_vcf.click(_guard(run_vcf), [vcf_text, vcf_file, vcf_fasta], table, api_name="predict_vcf",
                         **ONE_MODEL_CALL)
        with gr.Tab("Sequences"):
            ref = gr.Textbox(label="Reference sequence (<= 1,024 nt)", lines=3)
            alt = gr.Textbox(label="Alternate sequence (optional)", lines=3)
            question = gr.Textbox(label="Question", value="What is the effect of the variant in the second sequence?")
            go_seq = gr.Button("Ask", variant="primary")
            gr.Examples(backend.sequence_examples(), inputs=[ref, alt, question],
                        label="chr17:43045711 G>T as two sequences (located in BRCA1 and annotated)")
            answer = gr.Textbox(label="Answer (streamed)", lines=8, elem_id="seq-answer")
            located = gr.Textbox(label="Where the difference lies", lines=2, elem_id="seq-located")
            go_seq.click(_guard(backend.stream_sequences), [ref, alt, question], [answer, located], api_name="ask",
                         **ONE_MODEL_CALL)
        build_tab(pathway, _guard, ONE_MODEL_CALL)
    demo.queue(default_concurrency_limit=1, max_size=16)
    return demo


def launch(model_path=None, host: str = "127.0.0.1", port: int = 7860, block: bool = True, gtf: str = "auto",
           kegg_model=None, quantize: str = "none"):
    """Serve the demo. ``kegg_model``: the pathway tab's model (default: ``model_path`` when it is a KEGG model,
    else the shipped kegg-v1, loaded on the tab's first use). ``quantize``: both models' CPU inference path
    (``auto`` is resolved for each model: ``quantize.resolve_mode``)."""
    from bioreason.app.demo_pathway import PathwayBackend

    os.environ.setdefault("GRADIO_TEMP_DIR", tempfile.mkdtemp(prefix="bioreason-gradio-"))
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    backend = DemoBackend(model_path, gtf=gtf, quantize=quantize)  # a bad --gtf fails here, before serving
    backend.predictor()  # load before serving: the first visitor does not wait, and a bad --model fails here
    demo = build_demo(backend, PathwayBackend(kegg_model or backend.kegg_model, quantize=quantize))
    demo.launch(server_name=host, server_port=port, max_file_size="20mb", show_error=True,
                prevent_thread_lock=not block, quiet=True)
    return demo
