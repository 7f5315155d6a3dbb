"""What makes ``eval`` resumable: each finished step (one system's predictions, one model's traces) kept on disk.

A KEGG evaluation with traces and the LLM-only model runs for 15-30 minutes on a laptop CPU, in steps that each
produce one system: the DNA-LLM's likelihoods, its traces, the LLM-only model's, the baselines. :class:`EvalSteps`
keeps every finished step's result in ``DIR/.eval-steps/STEP.json`` (written atomically), next to a fingerprint of
what the results depend on: the command's settings (every option but the output and the resume flags), the package
version, and the *contents* (sha256 of every file) of the model folders and of a local ``--source``,
``--train-source``, ``--fasta``, ``--labels-tsv`` or ``--gtf`` file or folder. ``eval --resume`` reuses the steps
whose results are there when the fingerprint matches (an error names what changed otherwise), so an interrupted
run redoes only the step it was in (a trace step, from its last finished chunk of prompts: ``chunks``); a finished
report removes the folder. Results are JSON (predictions, probabilities, trace checks), which floats survive
exactly, so a resumed report is the uninterrupted one.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from bioreason.app.job_state import ResumeMismatchError, describe_change, file_facts, sha256
from bioreason.atomic import AtomicFile
from bioreason.errors import OutputExistsError

IGNORED = ("output", "force", "resume", "handler", "command", "verbose")


def _content(value) -> object:
    """What a path option *is*: a file's name, size and sha256 (as predict's fingerprint), a folder's files' sha256
    (hidden files aside); anything else as given (a hub name, 'bundled', 'auto')."""
    if not isinstance(value, str) or not value:
        return value
    p = Path(value)
    if p.is_file():
        return file_facts(p)
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.is_file() and not any(
            x.startswith(".") for x in f.relative_to(p).parts))
        return {"folder": p.name, "files": {str(f.relative_to(p)): sha256(f) for f in files}}
    return value


def fingerprint(args) -> dict:
    from bioreason import __version__

    settings = {k: v for k, v in sorted(vars(args).items()) if k not in IGNORED}
    for key in ("model", "text_model", "source", "train_source", "fasta", "labels_tsv", "gtf"):
        if key in settings:
            settings[key] = _content(settings[key])  # a moved or renamed copy of the same files resumes
    return {"version": __version__, **json.loads(json.dumps(settings, default=str))}


class EvalSteps:
    """``steps.run(name, fn)``: ``fn()``'s result, from ``DIR/.eval-steps/name.json`` when a resumed run has it."""

    def __init__(self, out_dir, args):
        self.dir = Path(out_dir) / ".eval-steps"
        fp = fingerprint(args)
        saved = self.dir / "fingerprint.json"
        finished = [f for f in self.dir.glob("*.json") if f.name not in ("fingerprint.json", "quantize.json")] + [
            d for d in self.dir.glob("*.chunks") if any(d.iterdir())]  # a trace step's finished chunks count too
        if not finished:  # stopped before any step finished (a bad option, an early Ctrl-C): nothing to keep
            shutil.rmtree(self.dir, ignore_errors=True)
        elif not args.resume and not args.force:
            raise OutputExistsError(f"{self.dir} holds the finished steps of an interrupted eval into {out_dir}; "
                                    "pass --resume to go on from them, or --force to start over")
        if args.resume and finished:
            old = json.loads(saved.read_text()) if saved.is_file() else {}
            if old != fp:
                raise ResumeMismatchError(f"--resume: the interrupted eval into {out_dir} ran with other settings or "
                                          f"inputs ({describe_change(old, fp)} changed); pass --force to start over")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir.mkdir(parents=True)
            with AtomicFile(saved) as fh:
                fh.write(json.dumps(fp, indent=1))

    def run(self, name: str, fn):
        path = self.dir / f"{name}.json"
        if path.is_file():
            print(f"eval: {name} reused from the interrupted run ({path})", file=sys.stderr)
            return json.loads(path.read_text())
        result = fn()
        with AtomicFile(path) as fh:
            fh.write(json.dumps(result))
        shutil.rmtree(self.dir / f"{name}.chunks", ignore_errors=True)  # the whole step is kept now
        return result

    def chunks(self, name: str) -> "ChunkStore":
        """Where step ``name`` keeps its finished chunks (a trace step's batches of prompts) while it runs, so an
        interrupted step resumes from its last finished chunk instead of its first trace."""
        return ChunkStore(self.dir / f"{name}.chunks")

    def finish(self) -> None:
        """The report is written: the steps are no longer needed."""
        shutil.rmtree(self.dir, ignore_errors=True)


class ChunkStore:
    """``get(key, expect)`` / ``put(key, value)``: one JSON file per finished chunk (atomic writes). ``expect``
    (e.g. the chunk's item indices) must equal what was stored with it, else the chunk is computed again."""

    def __init__(self, folder: Path):
        self.folder, self.reused = Path(folder), 0

    def get(self, key: str, expect=None):
        path = self.folder / f"{key}.json"
        if not path.is_file():
            return None
        saved = json.loads(path.read_text())
        if saved.get("expect") != expect:
            return None
        if not self.reused:
            print(f"eval: reusing the finished traces of the interrupted run ({self.folder})", file=sys.stderr)
        self.reused += 1
        return saved["value"]

    def put(self, key: str, value, expect=None) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        with AtomicFile(self.folder / f"{key}.json") as fh:
            fh.write(json.dumps({"expect": expect, "value": value}))
