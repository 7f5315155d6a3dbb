"""Writing folders and files so that a reader never sees half of one, and two writers never collide.

- ``locked(target, wait)``: an exclusive ``flock`` on ``.<name>.lock`` beside ``target``, removed when the holder
  is done; the kernel releases it when the holder dies, so no lock outlives a killed process. ``wait=False`` fails
  at once with ``OutputExistsError`` naming the holder (for outputs another run is writing); ``wait=True`` queues
  (two processes preparing the same model: the second waits, then finds it done).
- ``atomic_folder(final, write, done=None)``: under the lock, ``write(tmp)`` fills a temporary sibling; files are
  fsynced, the old ``final`` (if any) is moved aside only once the new one is complete, the new one renamed in,
  the old one deleted, the parent fsynced. ``done(final)`` true -> nothing to do (checked after the wait).
  Temporary siblings left by killed runs are removed only when their owner process is gone.
- ``AtomicFile``: one output file written to ``.<name>.tmp-<pid>``, fsynced and renamed by ``commit()``.
- ``ensure_writable_folder(folder)``: made if missing and probed with a temporary file, so a command can name the
  setting that chose an unusable folder before any long work (``OSError`` otherwise).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from bioreason.errors import OutputExistsError


def fsync_dir(folder) -> None:
    """Make a rename in ``folder`` durable (POSIX: fsync the directory); a no-op where that is not possible."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def ensure_writable_folder(folder) -> None:
    """``folder`` exists (made with its parents if missing) and takes files; raises the ``OSError`` otherwise."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    tempfile.NamedTemporaryFile(dir=folder, prefix=".bioreason-write-test-").close()


@contextlib.contextmanager
def locked(target, wait: bool = True):
    """An exclusive lock for ``target`` (file or folder), held for the ``with`` block; the lock file is removed when
    the block ends. A waiter that wakes on a lock file its holder has removed (or replaced) locks the current one
    instead (compared by inode), so removing it never lets two holders in."""
    import fcntl

    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    path = target.with_name(f".{target.name}.lock")
    while True:
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            try:
                holder = path.read_text(errors="replace").strip()
            except OSError:
                holder = ""
            raise OutputExistsError(f"{target} is being written by {holder or 'another process'} (lock {path}); wait "
                                    "for that run to finish, or choose another output") from None
        try:
            current = os.stat(path)
        except FileNotFoundError:
            current = None
        mine = os.fstat(fd)
        if current is not None and (current.st_ino, current.st_dev) == (mine.st_ino, mine.st_dev):
            break
        os.close(fd)  # the holder we waited for removed this file: lock the one now at the path
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"process {os.getpid()}\n".encode())
        yield path
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)  # while still held: a waiter then retries on a fresh file
        os.close(fd)  # closing releases the flock


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _sync_tree(folder: Path) -> None:
    for p in folder.rglob("*"):
        if p.is_file():
            with open(p, "rb") as fh:
                os.fsync(fh.fileno())
    fsync_dir(folder)


def atomic_folder(final, write, done=None) -> Path:
    """Write a folder atomically under ``final``'s lock (see the module docstring)."""
    final = Path(final)
    with locked(final, wait=True):
        if done is not None and done(final):
            return final
        for stale in final.parent.glob(f".tmp-{final.name}-*"):  # killed runs' leftovers, never a live run's
            pid = stale.name.removeprefix(f".tmp-{final.name}-").split("-")[0]
            if pid.isdigit() and not _alive(int(pid)):
                shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-{os.getpid()}-", dir=final.parent))
        trash = final.with_name(f".old-{final.name}-{os.getpid()}")
        try:
            write(tmp)
            _sync_tree(tmp)
            if final.exists():  # the old folder goes aside only now that the new one is complete
                os.replace(final, trash)
            os.replace(tmp, final)
            fsync_dir(final.parent)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.rmtree(trash, ignore_errors=True)
    return final


class AtomicFile:
    """Text file written to ``.<name>.tmp-<pid>`` and renamed to ``path`` by ``commit()``."""

    def __init__(self, path, mode: str = "w"):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        self.fh = open(self.tmp, mode)

    def write(self, text) -> None:
        self.fh.write(text)

    def commit(self) -> Path:
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.fh.close()
        os.replace(self.tmp, self.path)
        fsync_dir(self.path.parent)
        return self.path

    def abort(self) -> None:
        if not self.fh.closed:
            self.fh.close()
        self.tmp.unlink(missing_ok=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.commit()
        else:
            self.abort()
