"""``bioreason demo``: serve the Gradio web demo (one variant, a VCF, raw sequences, or a KEGG pathway question)."""

from __future__ import annotations

from bioreason.app.options import add_model_option, port_number, quantize_mode


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="start the web demo in your browser (Gradio)",
                       description="Serves the demo on http://HOST:PORT: one variant, a VCF, raw sequences (the "
                                   "--model, default the shipped BRCA1 checkpoint), and a pathway-reasoning tab "
                                   "(BioReason's KEGG task) run by the shipped kegg-v1, or by --model when that is "
                                   "a KEGG model (the variant tabs then use the default). One model call at a "
                                   "time, a bounded waiting list, uploads capped. Research use only, not for "
                                   "clinical decisions.")
    add_model_option(p)
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=port_number, default=7860, help="port (default 7860)")
    p.add_argument("--gtf", default="auto", metavar="FILE|auto|none",
                   help="transcript model (GTF/GFF3) for the consequence shown and put in the prompt; auto "
                        "(default): BRCA1 NM_007294 for the bundled reference only; a file: used for the bundled "
                        "reference and for uploaded FASTAs (same genome build assumed); none: no annotation")
    p.set_defaults(handler=run)


def run(args) -> int:
    try:
        import gradio  # noqa: F401
    except ImportError:
        from bioreason.errors import MissingDependencyError

        raise MissingDependencyError("the demo needs gradio: `pip install bioreason[app]`") from None
    from bioreason.app.demo import launch

    print(f"bioreason demo on http://{args.host}:{args.port} (Ctrl-C to stop)")
    launch(args.model, args.host, args.port, block=True, gtf=args.gtf, quantize=quantize_mode(args, generates=True))
    return 0
