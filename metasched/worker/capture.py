"""What a Python task prints, kept (its last characters) while it still goes where it went before.

``captured()`` swaps ``sys.stdout`` and ``sys.stderr`` for writers that pass every write through (a batch
job's output file, the Ray worker's log the driver shows) and keep the end of it for the task's error,
should it fail. Only Python-level writes are seen: output a C extension or a child process writes to the
file descriptors directly is not (a command task's output is captured whole instead).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TextIO

from metasched.records import STDERR_TAIL


@dataclass(slots=True)
class Tail:
    """A text stream that writes through to `out` and keeps its last `limit` characters."""

    out: TextIO
    limit: int = STDERR_TAIL
    _chunks: list[str] = field(default_factory=list)
    _size: int = 0

    def write(self, text: str) -> int:
        """Write through, and keep."""
        written = self.out.write(text)
        self._chunks.append(text)
        self._size += len(text)
        if self._size > 2 * self.limit:  # trim now and then, not on every write
            kept = self.text()
            self._chunks, self._size = [kept], len(kept)
        return written

    def flush(self) -> None:
        """Flush the stream written through to."""
        self.out.flush()

    def text(self) -> str:
        """The last `limit` characters written."""
        return "".join(self._chunks)[-self.limit:]

    def __getattr__(self, name: str) -> object:  # fileno, isatty, encoding...: the real stream's
        return getattr(self.out, name)


@dataclass(slots=True)
class Printed:
    """The ends of a task's stdout and stderr, filled while ``captured()`` runs."""

    stdout: str = ""
    stderr: str = ""


@contextlib.contextmanager
def captured(printed: Printed) -> Iterator[Printed]:
    """Keep in `printed` the ends of what the code inside prints (see the module docstring)."""
    out, err = Tail(sys.stdout), Tail(sys.stderr)
    previous = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    try:
        yield printed
    finally:
        sys.stdout, sys.stderr = previous
        printed.stdout, printed.stderr = out.text(), err.text()
