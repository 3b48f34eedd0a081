"""What the PBS agent needs from either dialect: typed job and capacity records, and the dialect seam."""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from metasched.records import TaskSpec
from site_agents.batch_agent import Capacity

__all__ = ["Capacity", "Dialect", "JobState", "JobStatus"]



class JobState(enum.Enum):
    """What metasched needs to know of a job the server still lists."""

    QUEUED = "queued"
    RUNNING = "running"
    HELD_BY_SYSTEM = "held by the system"  # never starts until an admin releases it
    FINISHED = "finished"


@dataclass(frozen=True, slots=True)
class JobStatus:
    """One job of ``qstat -f``, in either dialect."""

    job_id: str
    name: str
    state: JobState
    native_state: str
    exit_status: int | None = None
    comment: str = ""


def sequence_number(job_id: str) -> str:
    """The part of a job id that is unique within one server ("123" of "123.server.domain").

    qsub and qstat may print a job's server name differently (short or fully qualified); jobs are
    matched on this part.
    """
    return job_id.strip().split(".", 1)[0]


def hhmmss(seconds: float) -> str:
    """A walltime as PBS writes it, rounded up to the second (``01:02:03``)."""
    total = math.ceil(seconds)
    return f"{total // 3600:02d}:{total % 3600 // 60:02d}:{total % 60:02d}"


def describe_signal_exit(status: int | None) -> str:
    """An exit status in words; PBS reports a job killed by signal N as 256 + N (271: SIGTERM)."""
    if status is None:
        return "no exit status"
    if status >= 256:
        return f"exit status {status} (killed by signal {status - 256})"
    return f"exit status {status}"


_UNREACHABLE = ("cannot connect to", "unable to contact", "connection refused", "communication failure",
                "could not connect", "timed out")


def server_unreachable(output: str) -> bool:
    """True when a client program failed because the server did not answer (not because of the job)."""
    text = output.lower()
    return any(marker in text for marker in _UNREACHABLE)


class Dialect(Protocol):
    """Pure builders and parsers of one PBS dialect; the agent does the I/O."""

    name: str

    def directives(self, *, spec: TaskSpec, name: str, attempt_dir: str, queue: str | None,
                   account: str | None) -> list[str]:
        """The ``#PBS`` lines of one attempt's job script."""
        ...

    def qsub_argv(self, script: str, directives: Sequence[str]) -> list[str]:
        """Submit a script (whose directives are in it)."""
        ...

    def parse_qsub(self, stdout: str) -> str | None:
        """The job id qsub printed, or None."""
        ...

    def qstat_argv(self, job_ids: Sequence[str]) -> list[str]:
        """Full status of these jobs, finished ones included where the dialect can."""
        ...

    def parse_qstat(self, text: str) -> dict[str, JobStatus]:
        """Jobs by sequence number."""
        ...

    def nodes_argv(self) -> list[str]:
        """Every node and its cores."""
        ...

    def parse_nodes(self, text: str) -> Capacity:
        """Cores of the usable nodes."""
        ...

    def describe_exit(self, status: int | None) -> str:
        """A job's exit status in words."""
        ...

    def walltime_killed(self, job: JobStatus) -> bool:
        """True when the scheduler ended the job for exceeding its walltime."""
        ...
