"""A CRIU task's working directory on the node: its output files, and which attempt writes in it.

The task runs in ``<checkpoint_dir>/<task id>`` with its stdout and stderr there, so a checkpoint's
archive carries them and a restored task goes on writing the same files. They are copied as they grow
into the attempt directory, where a plain command job writes its output (``metasched logs --follow``
reads them there), and whole when the attempt ends. A file beside the directory names the attempt
directory of the run writing in it: a start from scratch gets the directory empty, and the earlier run's
output goes to that run's own attempt directory.

Standard library only (plus metasched's attempt directory): it runs on the node's own Python.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from pathlib import Path

from metasched.attempt_dir import AttemptDir

STDOUT_NAME = "stdout"
STDERR_NAME = "stderr"
COPY_EVERY_S = 0.5  # how often a running task's new output is copied to its attempt directory


def _outputs(attempt: AttemptDir) -> tuple[tuple[str, Path], ...]:
    return (STDOUT_NAME, attempt.command_stdout), (STDERR_NAME, attempt.command_stderr)


def _copy_new(source: Path, target: Path, done: int) -> int:
    """What `source` holds past `done` bytes, written at `done` in `target`; returns the bytes now copied.

    The whole file again where either is shorter than `done` (the task cut its file short; the copy was
    removed); a copy a failed write left longer is cut back to `done` first.
    """
    with open(source, "rb") as src, open(target, "ab") as dst:
        if os.fstat(src.fileno()).st_size < done or os.fstat(dst.fileno()).st_size < done:
            done = 0
        dst.truncate(done)
        src.seek(done)
        shutil.copyfileobj(src, dst)
        return src.tell()


class WorkDir:
    """The working directory of one attempt's task, at its absolute path on the node."""

    def __init__(self, path: Path, attempt: AttemptDir) -> None:
        self.path = path
        self.attempt = attempt
        self.copied: dict[str, int] = {}  # bytes of each output file copied to the attempt directory
        self.last_copy = 0.0

    @property
    def owner(self) -> Path:
        """Beside the directory: the attempt directory of the run that writes in it."""
        return self.path.with_name(self.path.name + ".attempt")

    def claim(self) -> None:
        """This attempt writes here now (a start, or a restore that unpacked the directory)."""
        tmp = self.owner.with_name(self.owner.name + ".tmp")
        tmp.write_text(str(self.attempt.path))
        os.replace(tmp, self.owner)

    def start_empty(self) -> None:
        """Empty and claimed, for a start from scratch, as a plain command's retry gets a fresh directory.

        What an earlier attempt left here (one lost with its job, or whose restore failed) would be seen by
        this run and its output appended to (a result holding both runs). That attempt's stdout and
        stderr are copied whole to its own directory (its copies there may lag by a moment); the rest is
        removed.
        """
        if self.path.exists():
            with contextlib.suppress(OSError):
                earlier = AttemptDir(self.owner.read_text().strip())
                if earlier.path != self.attempt.path and earlier.path.is_dir():
                    for name, target in _outputs(earlier):
                        if (self.path / name).exists():
                            shutil.copyfile(self.path / name, target)
            shutil.rmtree(self.path, ignore_errors=True)
        self.path.mkdir(parents=True, exist_ok=True)
        self.claim()

    def open_output(self) -> tuple[int, int]:
        """The task's stdout and stderr (appended to: a restored task's go on)."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
        return os.open(self.path / STDOUT_NAME, flags, 0o644), os.open(self.path / STDERR_NAME, flags, 0o644)

    def copy_output(self, *, due_only: bool = False) -> None:
        """What the task wrote since the last copy, appended to the attempt's output files.

        A restored task's files hold the earlier attempts' output too: its attempt's copy starts with it.
        `due_only`: only if the last copy is `COPY_EVERY_S` old.
        """
        if due_only and time.time() - self.last_copy < COPY_EVERY_S:
            return
        self.last_copy = time.time()
        for name, target in _outputs(self.attempt):
            with contextlib.suppress(OSError):  # (a full disk: the task runs on; copied again next time)
                self.copied[name] = _copy_new(self.path / name, target, self.copied.get(name, 0))

    def copy_all_output(self) -> None:
        """The output files copied whole, when the task has ended."""
        for name, target in _outputs(self.attempt):
            if (self.path / name).exists():
                shutil.copyfile(self.path / name, target)
