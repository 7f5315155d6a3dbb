"""The ``bioreason`` command: subcommands that each work end to end.

``main(argv)`` parses, runs, and turns every :class:`BioreasonError` into one
line on stderr and exit code 2 (never a traceback); Ctrl-C gives 130. Each
subcommand lives in its own small module and registers itself through
``add_parser(subparsers)``; heavy imports happen inside the handlers so that
``bioreason --help`` is instant.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys

from bioreason.errors import BioreasonError

MODEL_COMMANDS = ("ask", "predict", "eval", "train", "demo")  # run a model: fp32 CPU matmuls per BIOREASON_CPU_MATMUL
SUBCOMMANDS = ("bioreason.app.cmd_models", "bioreason.app.cmd_ask", "bioreason.app.cmd_windows",
               "bioreason.app.cmd_train", "bioreason.app.cmd_eval",
               "bioreason.app.cmd_predict", "bioreason.app.cmd_demo", "bioreason.app.cmd_compare")


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(
        prog="bioreason",
        description="A DNA-language model that reasons about genomics (DNA encoder -> projector -> LLM). "
                    "Research use only, not for clinical decisions.")
    from bioreason import __version__

    parser.add_argument("--version", action="version", version=f"bioreason {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more log output (-vv for debug; also shows other libraries' deprecation warnings)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in SUBCOMMANDS:
        importlib.import_module(name).add_parser(sub)
    return parser


def _quiet_libraries() -> None:
    import os

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from bioreason.quantize import quiet_torchao_logs

    quiet_torchao_logs()  # transformers imports torchao, when installed, on every model load; its CUDA notes
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:
        pass


def reproducible_math() -> None:
    """Bit-reproducible MKL results whatever the memory alignment (MKL's conditional numerical reproducibility).

    Without it, a process that resumes an interrupted ``predict`` can round a probability's 6th decimal
    differently from the uninterrupted run. Must be set before torch (and MKL) load; an explicit setting wins.
    """
    import os

    os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")


def main(argv: list[str] | None = None) -> int:
    reproducible_math()
    parser = build_parser()
    # argparse fills a trailing nargs="*" positional before later options are seen, so KEY=VALUE overrides
    # placed after --recipe come back as extras; hand those (and only those) to commands that take overrides.
    args, extra = parser.parse_known_args(argv)
    if extra:
        if hasattr(args, "overrides") and all("=" in x and not x.startswith("-") for x in extra):
            args.overrides = list(args.overrides) + extra
        elif hasattr(args, "overrides") and not any(x.startswith("-") for x in extra):  # 'train.lr' without '='
            parser.error(f"{' '.join(x for x in extra if '=' not in x)}: a recipe override is KEY=VALUE, e.g. "
                         "train.lr=1e-4")
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if not args.verbose:  # other libraries' deprecation notices are for their users' developers, not ours
        import warnings

        warnings.filterwarnings("ignore", category=FutureWarning, module=r"^(?!bioreason)")
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"^(?!bioreason)")
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s: %(message)s", stream=sys.stderr, force=True)
    _quiet_libraries()
    previous = _terminate_as_interrupt()
    try:
        if args.command in MODEL_COMMANDS:
            from bioreason.cpu_math import configure_from_env

            configure_from_env()
        return int(args.handler(args) or 0)
    except BioreasonError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a file we were told to read or write: say which, without a traceback
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        print(f"error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        hint = RESUME_HINTS.get(args.command, "")
        print(f"interrupted{hint}", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


# what an interrupted command kept, and how to go on (train prints its own checkpoint line)
RESUME_HINTS = {"predict": "; finished batches are kept: run the same command with --resume to continue",
                "eval": "; finished steps are kept: run the same command with --resume to continue"}


def _terminate_as_interrupt():
    """SIGTERM (``kill``, ``timeout``, a batch scheduler) raises KeyboardInterrupt as Ctrl-C does, so a job stops
    the same way: outputs closed, progress kept, the resume hint printed; returns the handler it replaced."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, interrupt)


if __name__ == "__main__":
    sys.exit(main())
