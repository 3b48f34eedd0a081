"""What an attempt's directory holds, as records: the worker's inputs, a command's exit status, a checkpoint.

Kept apart from ``metasched.attempt_dir`` (which reads and writes them) and, like it, imports only the
standard library and metasched's records at module level: the CRIU wrapper runs on a compute node's Python.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from metasched.records import TaskId, TaskSpec

if TYPE_CHECKING:
    from metasched.data.objects import DataContext, DataRef

_TIMES = re.compile(r"(\d+)m(\d+)[.,](\d+)s")  # bash's `times`: minutes, seconds (locale's point)


@dataclass(frozen=True, slots=True, kw_only=True)
class AttemptInputs:
    """What the worker needs to run an attempt: the task, its function, its dependencies' results."""

    spec: TaskSpec
    function: bytes | None = None
    dependency_results: dict[TaskId, bytes] = field(default_factory=dict)
    data: DataContext | None = None
    restore: DataRef | None = None  # a cooperative task's saved state to continue from


@dataclass(frozen=True, slots=True, kw_only=True)
class ExitStatus:
    """What a command's job script (or the CRIU wrapper) recorded: exit status and wall-clock span."""

    returncode: int
    elapsed_s: float
    cpu_s: float | None = None  # user + system of the command's processes (bash's `times`), if recorded


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckpointRecord:
    """A checkpoint archive the CRIU wrapper wrote, adopted into the site's store."""

    ref: DataRef
    reason: str
    dump_s: float


def parse_exit_status(text: str) -> ExitStatus | None:
    """Parse ``<rc> <start> <end> [<user> <system>]``; None if incomplete.

    User and system time are the command's, as bash's `times` prints them (``1m2.500s``).
    """
    parts = text.split()
    try:
        status = ExitStatus(returncode=int(parts[0]), elapsed_s=max(0.0, float(parts[2]) - float(parts[1])))
    except (IndexError, ValueError):
        return None
    times = [_TIMES.fullmatch(part) for part in parts[3:5]]
    if len(times) == 2 and all(times):
        cpu = sum(int(m[1]) * 60 + float(f"{m[2]}.{m[3]}") for m in times if m is not None)
        status = dataclasses.replace(status, cpu_s=round(cpu, 3))
    return status
