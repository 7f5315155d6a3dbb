"""``bioreason demo``: serve the Gradio web demo (one variant, a VCF, raw sequences, or a KEGG pathway question)."""

from __future__ import annotations

from bioreason.app.options import add_model_option, port_number


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

    check_port_free(args.host, args.port)  # before the model loads (seconds), not after
    print(f"bioreason demo on http://{args.host}:{args.port} (Ctrl-C to stop)")
    launch(args.model, args.host, args.port, block=True, gtf=args.gtf, quantize=args.quantize)  # auto: per model
    return 0


def check_port_free(host: str, port: int) -> None:
    """An error naming the port and the fix when something already listens on ``host:port`` (another demo, say);
    gradio would say so only after the model loaded, in terms of its own launch() arguments."""
    import socket

    from bioreason.errors import InputFormatError

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise InputFormatError(f"--host {host}: not an address of this machine ({exc.strerror}); use 127.0.0.1, "
                               "or 0.0.0.0 to serve other machines") from None
    family, kind, proto, _, addr = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds: a closing port is free
        try:
            sock.bind(addr)
        except OSError as exc:
            raise InputFormatError(f"cannot serve on {host}:{port} ({exc.strerror}); another program (another demo?) "
                                   f"uses the port: pass a free one, e.g. --port {port + 1 if port < 65535 else 8080}"
                                   ) from None
