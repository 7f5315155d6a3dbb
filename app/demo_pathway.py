"""The demo's pathway-reasoning tab: BioReason's KEGG task, a pathway question and two sequences, trace streamed.

Front end only. The model is a KEGG checkpoint: the one named with ``--model`` when it is one (its
``bioreason_task.json`` says ``prompt: kegg``), else the shipped ``kegg-v1``, loaded on the tab's first use. Prompts
come from ``bioreason.inference.kegg_prompt`` (as ``bioreason ask``'s): both sequences cropped around the variant,
the question rewritten as the model was trained. The page shows the facts computed from the inputs with the same
prompt options (the variant as the prompt states it, the gene asked about, the network's starred genes), the
streamed trace, the disease parsed from its final answer, and whether the trace passed the three fact checks of
``bioreason eval --task kegg --traces``. The examples are real records of the KEGG train split that lie in kegg-v1's
validation part (never trained on).
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from bioreason.answers import ANSWER_TOKENS
from bioreason.app.demo_limits import MAX_QUESTION_CHARS, DemoInputError, pasted_box

MAX_SEQUENCE_CHARS = 20_000  # KEGG records are 4,001 nt (up to ~4,300 for indels); pasted text beyond is refused


def is_kegg_model(folder) -> bool:
    from bioreason.predict import PredictConfig

    return folder is not None and PredictConfig.for_model(folder).prompt == "kegg"


def pathway_examples() -> list[dict]:
    """The packaged example records (question, answer, both sequences, source row)."""
    text = (resources.files("bioreason.kegg_data") / "data" / "kegg_examples.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def facts_markdown(facts: dict) -> str:
    change = facts.get("change") or "none (the two sequences are equal)"
    places = facts.get("places") or []
    several = (f" (**the sequences differ in {len(places)} separate places**, at "
               f"{', '.join(f'{p:,}' for p in places[:5])}{' ...' if len(places) > 5 else ''}: the model was trained "
               "on pairs with one variant and is told about the whole segment)") if len(places) > 1 else ""
    return (f"**Computed from the inputs**: variant `{change}`{several}; gene asked about: "
            f"`{facts.get('gene') or '?'}`; starred network genes: `{facts.get('starred') or '-'}`")


class PathwayBackend:
    """The KEGG model, loaded once on first use, and the tab's one handler."""

    def __init__(self, model_path=None, max_new_tokens: int = 256, quantize: str = "none"):
        from bioreason.hub import shipped_model_dir

        self.model_path = model_path if is_kegg_model(model_path) else shipped_model_dir("kegg-v1")
        self.max_new_tokens, self.quantize = max_new_tokens, quantize
        self._loaded = None

    def model(self):
        if self.model_path is None:
            raise DemoInputError("no KEGG model is installed (kegg-v1 ships with the package; start the demo with "
                                 "--model FOLDER of a model trained with data.task=kegg)")
        if self._loaded is None:
            from bioreason.checkpoints import load_model
            from bioreason.predict import PredictConfig
            from bioreason.quantize import resolve_for_model

            cfg = PredictConfig.for_model(self.model_path)
            mode = resolve_for_model(self.quantize, self.model_path, generates=True, prompt_mode=cfg.mode)
            model, proc = load_model(str(self.model_path), quantize=mode)
            self._loaded = model, proc, cfg
        return self._loaded

    def examples(self) -> list[list[str]]:
        return [[r["question"], r["reference_sequence"], r["variant_sequence"]] for r in pathway_examples()]

    def stream(self, question, ref, alt):
        """Yields (facts, trace so far, final answer)."""
        from bioreason.inference import kegg_prompt, stream_answer
        from bioreason.kegg_data.tasks import check_kegg_trace
        from bioreason.kegg_evaluation import final_answer

        question, ref, alt = (question or "").strip(), pasted_box(ref, "reference"), pasted_box(alt, "variant")
        if not question:
            raise DemoInputError("write the pathway question (or pick an example below)")
        if len(question) > MAX_QUESTION_CHARS:
            raise DemoInputError(f"the question has {len(question):,} characters; the demo takes at most "
                                 f"{MAX_QUESTION_CHARS:,}")
        if not ref or not alt:
            raise DemoInputError("paste both sequences: the reference and the one carrying the variant")
        for name, seq in (("reference", ref), ("variant", alt)):
            if len(seq) > MAX_SEQUENCE_CHARS:
                raise DemoInputError(f"the {name} sequence has {len(seq):,} characters; the tab takes at most "
                                     f"{MAX_SEQUENCE_CHARS:,} (KEGG records are about 4,001 nt)")
        model, proc, cfg = self.model()
        msgs, facts = kegg_prompt(question, [ref, alt], cfg, None, proc.max_nucleotides)  # facts as the prompt states
        proc([msgs])  # invalid letters or lengths: an error before streaming
        shown = facts_markdown(facts)
        trace = ""
        yield shown, trace, ""
        for piece in stream_answer(model, proc, msgs, max_new_tokens=self.max_new_tokens,
                                   answer_tokens=ANSWER_TOKENS):
            trace += piece
            yield shown, trace, ""
        checks = check_kegg_trace(trace, facts, cfg.labels)
        marks = ", ".join(f"{k.replace('_', ' ')} {'yes' if v else 'no'}" for k, v in checks.items() if v is not None)
        name, note = final_answer(model, proc, msgs, trace, cfg.labels, cfg.label_texts)  # one of the model's names
        final = (name if note is None else f"{(cfg.label_texts or {}).get(name, name)} ({note})") + \
            f" (trace checks: {marks})"
        yield shown, trace, final


def build_tab(backend: PathwayBackend, guard, call_kw: dict) -> None:
    """The tab's components and event, inside an open ``gr.Blocks``; ``guard`` turns errors into page messages."""
    import gradio as gr

    with gr.Tab("Pathway reasoning (KEGG)"):
        gr.Markdown("BioReason's KEGG task: a pathway (network definition and genes) and a variant given as two "
                    "sequences; the model reasons to the disease the variant contributes to. Model: "
                    f"`{Path(str(backend.model_path)).name if backend.model_path else 'none installed'}` "
                    "(see MODEL_CARD.md for its validation figures and limits).")
        question = gr.Textbox(label="Pathway question", lines=6, elem_id="kegg-question")
        with gr.Row():
            ref = gr.Textbox(label="Reference sequence", lines=3, elem_id="kegg-ref")
            alt = gr.Textbox(label="Variant sequence", lines=3, elem_id="kegg-alt")
        go = gr.Button("Reason", variant="primary", elem_id="go-kegg")
        gr.Examples(backend.examples(), inputs=[question, ref, alt],
                    label="Real KEGG records held out of kegg-v1's training (PINK1, KRAS, CDKN2A)")
        facts = gr.Markdown(elem_id="kegg-facts")
        trace = gr.Textbox(label="Reasoning (streamed)", lines=10, elem_id="kegg-trace")
        answer = gr.Textbox(label="Disease (parsed from the final answer)", elem_id="kegg-answer")
        go.click(guard(backend.stream), [question, ref, alt], [facts, trace, answer], api_name="pathway", **call_kw)
