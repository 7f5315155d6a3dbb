"""``bioreason demo``: serve the Gradio web demo (one variant, a VCF, or raw sequences)."""

from __future__ import annotations

from bioreason.app.options import add_model_option


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="start the web demo in your browser (Gradio)",
                       description="Serves the demo on http://HOST:PORT. One model call at a time, a bounded "
                                   "waiting list, uploads capped. Research use only, not for clinical decisions.")
    add_model_option(p)
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.set_defaults(handler=run)


def run(args) -> int:
    try:
        import gradio  # noqa: F401
    except ImportError:
        from bioreason.errors import MissingDependencyError

        raise MissingDependencyError("the demo needs gradio: `pip install bioreason[app]`") from None
    from bioreason.app.demo import launch

    print(f"bioreason demo on http://{args.host}:{args.port} (Ctrl-C to stop)")
    launch(args.model, args.host, args.port, block=True)
    return 0
