"""Variant interpretation with a loaded DNA-LLM: the per-batch logic shared by ``predict`` and the demo.

``VariantPredictor.predict(variants)`` returns one result dict per variant: the label, the probability of each
candidate label (softmax over the candidates' log-likelihoods after an empty think block, one forward pass per
variant and label, DNA encoded once per variant), and with ``traces=True`` a greedy reasoning trace generated
for the whole batch at once, whose final ``Answer:`` line (parsed by ``bioreason.answers``) gives the label when
it names exactly one candidate. Probabilities are rounded to 6 decimals so outputs are stable byte for byte.
A trained folder's ``bioreason_task.json`` picks the prompt: the generic question, or ``annotated_variant`` (the
prompts the shipped BRCA1 model was trained on, with the VCF's own CSQ/ANN annotation when a record has one, else
the one computed from a transcript model when ``--gtf`` gives one; the bundled reference has BRCA1's).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from bioreason.answers import ANSWER_TOKENS, extract_answer, match_label, split_think
from bioreason.kegg_data.examples import Example
from bioreason.kegg_data.tasks import SYSTEM_PROMPT
from bioreason.kegg_data.user_data import DEFAULT_QUESTION, variant_question

TASK_FILE = "bioreason_task.json"  # a trained folder may name its labels, question and system prompt
DEFAULT_LABELS = ("pathogenic", "benign")
DEFAULT_WINDOW = 1024  # training's data.window default (bioreason.recipes): what a folder without a task file used


@dataclass
class PredictConfig:
    labels: tuple[str, ...] = DEFAULT_LABELS
    question: str = DEFAULT_QUESTION
    system: str | None = SYSTEM_PROMPT
    traces: bool = False
    max_new_tokens: int = 256
    trace_slots: int = 8  # traces decoded at once; the rest of a batch queues for the rows of finished ones
    answer_tokens: int = ANSWER_TOKENS  # budget forcing: a trace cut at max_new_tokens is closed and answers in these
    annotation_fields: tuple[str, ...] = ()
    prompt: str = "question"  # or "annotated_variant": the prompts of kegg_data.annotated_variants
    # annotated_variant prompts: use the VCF's CSQ/ANN when a record has it, or "sequence"; kegg prompts: what the
    # model was trained to read, "dna" (the sequences as DNA) or "none" (an LLM-only model: the question alone)
    mode: str = "annotated"
    gene: str | None = None
    strand: int | None = None
    # added to each label's log-likelihood before the softmax: log(natural rate / training rate) for a model
    # trained on label-balanced data (Bayes prior correction; rankings and AUROC are unchanged)
    label_log_prior: dict | None = None
    trace_prefix: str = ""  # how --traces starts the answer (a model that also learned empty thinks then reasons)
    # the score-only decision rule: {"positive": "LOF", "threshold": 0.2, ...}: the positive label when its
    # probability reaches the threshold, else the most likely other label (None: the most likely label)
    decision: dict | None = None
    # what the model was trained on: {"genes": [...], "build": "GRCh38", "regions": [[chrom, start, end], ...]}
    domain: dict | None = None
    # a KEGG model's prompt options (kegg_data.tasks.KEGGTask: compact_genes, state_variant, trace_steps)
    kegg: dict | None = None
    label_texts: dict | None = None  # KEGG: each label as the data writes it ("alzheimer's disease"), for scoring
    window: int | None = None
    # the --quantize mode auto may use for this model's generated text, by prompt mode, where it was measured
    # against fp32 ({"bf16-matmul": ["annotated"]}; bioreason.quantize.generation_mode)
    auto_quantize_generation: dict | None = None
    extra: dict = field(default_factory=dict)

    def info_fields(self) -> tuple[str, ...]:
        """The INFO fields the reader must keep for these prompts."""
        if self.prompt != "annotated_variant":
            return ()
        from bioreason.kegg_data.annotated_variants import annotation_info_fields

        return annotation_info_fields()

    @classmethod
    def for_model(cls, folder: str | Path | None, **overrides) -> "PredictConfig":
        """Defaults from the model folder's ``bioreason_task.json`` when present, then ``overrides``."""
        cfg = {}
        if folder is not None and (Path(folder) / TASK_FILE).is_file():
            cfg = json.loads((Path(folder) / TASK_FILE).read_text())
            cfg["labels"] = tuple(cfg.get("labels", DEFAULT_LABELS))
        cfg.update({k: v for k, v in overrides.items() if v is not None})
        known = {k: cfg[k] for k in cls.__dataclass_fields__ if k in cfg}
        return cls(**known)


def model_window(cfg: PredictConfig, encoder_max: int | None) -> int:
    """The window to cut for a model: the one it was trained on (``bioreason_task.json``), else training's default
    ``data.window`` capped at the longest sequence its DNA encoder takes. The one rule of ``predict``, ``ask`` and
    the demo, so a model reads a variant the same way from each."""
    return int(cfg.window or min(DEFAULT_WINDOW, encoder_max or DEFAULT_WINDOW))


def encoder_max_nucleotides(folder: str | Path | None) -> int | None:
    """Before the model loads: the longest sequence its DNA encoder takes, as its ``processor_config.json`` records
    it (None for a folder or an encoder that does not say)."""
    from bioreason.processing import PROCESSOR_FILE

    path = Path(folder) / PROCESSOR_FILE if folder is not None else None
    if path is None or not path.is_file():
        return None
    limit = (json.loads(path.read_text()).get("dna_config") or {}).get("max_nucleotides")
    return int(limit) if limit else None


def batch_bytes(model, batch_size: int, tokens: int = 350) -> int:
    """Rough memory one ``predict`` batch needs beyond the weights: each row's KV cache over every layer plus one
    layer's activations, for ``tokens`` positions per row (a BRCA1 prompt is ~300). Calibrated on the shipped
    model on CPU: peak RSS 1.29 GiB at batch 8, 2.94 GiB at batch 64 (~31 MB per variant; this gives ~31)."""
    from bioreason.modeling import unwrap_dna_llm

    cfg = unwrap_dna_llm(model).language_model.config
    cfg = getattr(cfg, "text_config", None) or cfg
    heads = cfg.num_attention_heads
    kv_heads = getattr(cfg, "num_key_value_heads", None) or heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    param = next(model.parameters())
    elem = param.element_size()
    act = 4 if param.device.type == "cpu" else elem  # CPU activations stay fp32 in every --quantize mode but bf16
    per_token = cfg.num_hidden_layers * 2 * kv_heads * head_dim * elem + (
        4 * getattr(cfg, "intermediate_size", 4 * cfg.hidden_size) + 8 * cfg.hidden_size) * act
    return int(batch_size) * int(tokens) * per_token


def free_memory_bytes(device) -> int | None:
    """Memory the batch can still use: a GPU's free memory, or the machine's available RAM (None if unknown)."""
    import torch

    if getattr(device, "type", str(device)) == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        return None


def check_batch_fits(model, batch_size: int, rows: int) -> None:
    """An error before the first batch (``rows`` variants, at most ``--batch-size``) when it would need more memory
    than is free: a batch of 2,000 variants needs ~60 GB, and the kernel kills the job without a word."""
    from bioreason.errors import InputFormatError

    need, free = batch_bytes(model, rows), free_memory_bytes(next(model.parameters()).device)
    if free is not None and need > 0.8 * free:
        fits = max(1, int(0.5 * free / batch_bytes(model, 1)))
        raise InputFormatError(f"--batch-size {batch_size}: a batch of {rows} variants needs about "
                               f"{need / 2**30:.1f} GiB for the prompts' caches "
                               f"and activations, and {free / 2**30:.1f} GiB is free; use --batch-size {fits} or "
                               "less (the default is 8)")


def in_domain(chrom: str, pos: int, domain: dict | None, csq=None) -> bool | None:
    """Whether a variant lies where the model was trained (its ``domain``: regions, else genes); None if the
    model states no domain. Contig names match with chr added/stripped (as the reader does)."""
    if not domain:
        return None
    regions = domain.get("regions") or []
    if regions:
        from bioreason.kegg_data.reference import contig_synonyms

        names = set(contig_synonyms(chrom))
        return any(c in names and int(lo) <= pos <= int(hi) for c, lo, hi in regions)
    genes = set(domain.get("genes") or [])
    return bool(genes & {a.get("gene") for a in csq or []}) if genes else None


def decide(probs: dict, decision: dict | None) -> tuple[str, str]:
    """(label, how it was chosen) from candidate probabilities: the model's threshold rule, or the most likely."""
    if decision and decision.get("positive") in probs:
        pos = decision["positive"]
        if probs[pos] >= float(decision["threshold"]):
            return pos, "threshold"
        others = {k: v for k, v in probs.items() if k != pos}
        return max(others, key=others.get), "threshold"
    return max(probs, key=probs.get), "score"


def with_log_prior(scores, labels, log_prior: dict | None):
    """(B, K) candidate log-likelihoods plus each label's log-prior offset (none: unchanged)."""
    if not log_prior:
        return scores
    import torch

    return scores + torch.tensor([float(log_prior.get(lab, 0.0)) for lab in labels], dtype=scores.dtype)


class VariantPredictor:
    """``layouts``: the CSQ/ANN field layouts of the VCF header (``annotation_layouts(reader)``), for
    ``annotated_variant`` prompts. ``annotator``: a ``kegg_data.consequence.Annotator``; with one, every result
    carries the consequences computed from the transcript model (``csq``), and a record the VCF leaves
    unannotated gets the computed annotation in its prompt."""

    def __init__(self, model, processor, config: PredictConfig | None = None, layouts: dict | None = None,
                 annotator=None):
        self.model, self.proc, self.cfg = model, processor, config or PredictConfig()
        self.layouts, self.annotator = layouts or {}, annotator
        from bioreason.rl import PrefixCache

        # the system turn + template's KV cache, computed once for the loaded (fixed) weights (prefix caching)
        self.prefix_cache = getattr(model, "_bioreason_prefix_cache", None) or PrefixCache()
        try:
            model._bioreason_prefix_cache = self.prefix_cache  # shared by every predictor on this model
        except AttributeError:
            pass
        from bioreason.drafting import NgramDrafter

        self.drafter = NgramDrafter()  # greedy traces of later batches draft from earlier ones' (decoding.py)

    def prompt(self, variant):
        """The ``VariantPrompt`` of an ``annotated_variant`` model, else None."""
        if self.cfg.prompt != "annotated_variant":
            return None
        from bioreason.kegg_data.annotated_variants import variant_prompt

        return variant_prompt(variant, self.layouts, self.cfg.mode, self.cfg.gene, self.cfg.strand, self.annotator)

    def facts(self, variant, prompt=None) -> dict:
        """Output columns on the annotation: prompt mode, consequence class, its source, computed consequences."""
        out = {}
        if self.annotator is not None:
            out["csq"] = self.annotator.annotate(variant.chrom, variant.pos, variant.ref, variant.alt)
        if self.cfg.domain:
            out["in_domain"] = in_domain(variant.chrom, variant.pos, self.cfg.domain, out.get("csq"))
        if prompt is not None:
            out.update(prompt_mode=prompt.mode, annotation=prompt.consequence if prompt.mode == "annotated" else None,
                       annotation_source=prompt.annotation.get("source"))
        elif out.get("csq"):
            out.update(annotation=out["csq"][0]["consequence"], annotation_source="computed")
        return out

    def example(self, variant, prompt=None) -> Example:
        prompt = prompt or self.prompt(variant)
        question = prompt.question if prompt is not None else variant_question(variant, self.cfg.question)
        return Example(question, [variant.ref_window, variant.alt_window])

    def messages(self, variant, prompt=None):
        return self.example(variant, prompt).to_messages(self.cfg.system, with_answer=False)

    def predict(self, variants, on_trace=None) -> list[dict]:
        """Results for a batch of ``Variant`` objects, in order."""
        import torch

        from bioreason.rl import score_candidates

        labels = list(self.cfg.labels)
        built = [self.prompt(v) for v in variants]
        facts = [self.facts(v, p) for v, p in zip(variants, built)]
        prompts = [self.messages(v, p) for v, p in zip(variants, built)]
        with torch.inference_mode():
            kept = score_candidates(self.model, self.proc, prompts, labels, prefix_cache=self.prefix_cache,
                                    keep_prompts=self.cfg.traces)
        kept = list(kept) if self.cfg.traces else [kept, None]  # traces decode from the scoring's prefill
        scores = kept[0]
        probs = torch.softmax(with_log_prior(scores.double(), labels, self.cfg.label_log_prior), dim=1).tolist()
        out = []
        for row, fact in zip(probs, facts):
            rounded = {lab: round(p, 6) for lab, p in zip(labels, row)}
            label, how = decide(rounded, self.cfg.decision)
            out.append({"label": label, "probs": rounded, "label_source": how, **fact})
        if self.cfg.traces:
            from bioreason.sampling import sample_groups

            with torch.inference_mode():
                samples = sample_groups(self.model, self.proc, prompts, 1, self.cfg.max_new_tokens, do_sample=False,
                                        prefix=self.cfg.trace_prefix, prefix_cache=self.prefix_cache,
                                        slots=self.cfg.trace_slots, prompt_state=kept.pop(),  # not held here
                                        answer_tokens=self.cfg.answer_tokens, drafter=self.drafter)
            for res, text, forced in zip(out, samples.texts, samples.forced):
                think, _ = split_think(text)
                res["trace"], res["trace_forced"] = text, forced  # closed at the cap by budget forcing
                res["reasoning"] = think
                answer = extract_answer(text)
                res["answer"] = answer
                named = match_label(answer, labels)
                if named is not None:
                    res["label"], res["label_source"] = named, "trace"
        return out
