"""The dialect seam: what one batch scheduler says and what it means, as pure builders and parsers.

A dialect (Slurm, OpenPBS, Torque, Grid Engine) turns a ``JobRequest`` into script header lines and a
submit argv, names the one status command per poll and reads its answer into ``JobStatus`` records in
the shared vocabulary below (``JobState``, ``JobEnd``), and says how to list nodes, delete, look up
accounting and signal jobs where the scheduler can. It does no I/O: the batch agent runs every argv
(``prepare`` alone may run probe commands, through the callable it is given). Native states map to the
shared ones at the top of each dialect's module; output it does not understand becomes UNKNOWN, never
an exception.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from metasched.attempt_dir import AttemptDir
from metasched.records import Resources, TaskSpec, clock_seconds
from site_agents.batch.forecast import QueuedJob
from site_agents.runner import CommandOutput

#: A scheduler's own time limit is the task's walltime plus this (unless the task is checkpointable):
#: metasched's worker stops the task at its exact walltime first and reports it precisely; the
#: scheduler's limit only catches a worker that could not.
WALLTIME_MARGIN_S = 60


class JobState(enum.Enum):
    """Where a job is, in the words every dialect maps its native states to."""

    QUEUED = "queued"
    RUNNING = "running"
    HELD = "held"  # will never start as submitted (bad request, error state, held by the system)
    STALLED = "stalled"  # cannot start for now: the nodes it needs are down, drained or held
    FINISHED = "finished"
    UNKNOWN = "unknown"  # a state the dialect does not know: wait and see


class JobEnd(enum.Enum):
    """How a finished job ended, as the scheduler reports it (read only when the attempt left no record)."""

    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"  # deleted (by metasched, a user or an admin)
    TIMEOUT = "timeout"  # the scheduler's walltime limit
    NODE_FAIL = "node failure"
    OUT_OF_MEMORY = "out of memory"
    KILLED = "killed"  # ended by a signal or a start failure, without an exit status of its own
    UNKNOWN = "unknown"  # no exit status at all


@dataclass(frozen=True, slots=True, kw_only=True)
class JobStatus:
    """One job as the scheduler lists it."""

    job_id: str
    state: JobState
    native_state: str
    name: str = ""  # the job name ("" where the listing has none): a job under another name is not ours
    reason: str = ""  # the scheduler's why (pending reason, comment, exit code) in its own words
    end: JobEnd | None = None  # set once the job is FINISHED
    run_count: int | None = None  # how many times the scheduler started the job, where it says


@dataclass(frozen=True, slots=True, kw_only=True)
class Capacity:
    """What the site's usable nodes offer."""

    total_cores: int
    max_cores_per_node: int
    nodes: int
    usable_nodes: int
    max_memory_mb: int | None = None  # None: not known here (memory= requests are not checked at placement)
    detail: str = ""  # e.g. which nodes are down or drained
    memory_untracked: bool = False  # the nodes report no memory at all (Slurm without RealMemory)


@dataclass(frozen=True, slots=True, kw_only=True)
class JobRequest:
    """One attempt's job as the agent asks the dialect to write and submit it.

    ``limit_s`` is the time limit to ask the scheduler for (None: none); ``warning_lead_s`` how long before
    it the scheduler should send USR1, where it can. ``nodes_report_memory`` is false where the nodes
    report no memory (``Capacity.memory_untracked``: Slurm nodes without ``RealMemory``): Slurm then
    refuses any ``--mem`` as impossible, so its dialect leaves the request out (the site does not enforce
    memory anyway).
    """

    spec: TaskSpec
    name: str
    attempt: AttemptDir
    limit_s: float | None
    warning_lead_s: int | None
    nodes_report_memory: bool = True


class Dialect(Protocol):
    """Pure builders and parsers of one batch scheduler (see the module docstring)."""

    @property
    def name(self) -> str:
        """The scheduler's name, for messages ("Slurm", "Grid Engine"...)."""
        ...

    @property
    def give_up_on(self) -> tuple[str, ...]:
        """Client error lines after which waiting is pointless (the client would only retry, then fail)."""
        ...

    def prepare(self, run: Callable[[list[str]], CommandOutput]) -> None:
        """Learn what the dialect must know of the site once, at start (e.g. whether sacct answers)."""
        ...

    def header(self, job: JobRequest) -> list[str]:
        """Directive lines for the job script (``#PBS ...``); [] where options go on the command line."""
        ...

    def submit_argv(self, job: JobRequest, header: Sequence[str]) -> list[str]:
        """The argv that submits ``job.attempt.script``."""
        ...

    def parse_submitted(self, out: CommandOutput) -> str | None:
        """The job id a successful submission printed, or None."""
        ...

    def unreachable(self, out: CommandOutput) -> bool:
        """True when a command failed because the server did not answer (not because of the job)."""
        ...

    def status_argv(self, user: str, job_ids: Sequence[str]) -> list[str]:
        """The one command per poll that lists these jobs (of `user`, where it filters by user)."""
        ...

    def parse_status(self, out: CommandOutput) -> Mapping[str, JobStatus] | None:
        """The listed jobs by `status_key`; None when the command did not answer."""
        ...

    def status_key(self, job_id: str) -> str:
        """The key a job is listed under (qsub and qstat may print a PBS job's id differently)."""
        ...

    def delete_argv(self, job_ids: Sequence[str]) -> list[str]:
        """Delete several jobs in one call."""
        ...

    def delete_by_name_argvs(self, names: Sequence[str]) -> list[list[str]] | None:
        """Delete jobs by their (unique) names.

        None where the delete command takes ids only: the jobs are then found by name in the status
        listing (``Deletions.run``).
        """
        ...

    def nodes_argv(self) -> list[str]:
        """List the nodes (also the probe of a site with no jobs)."""
        ...

    def parse_nodes(self, out: CommandOutput) -> Capacity | None:
        """What the usable nodes offer; None when the command did not answer."""
        ...

    def queue_argv(self) -> list[str] | None:
        """A command listing every user's queued and running jobs (None where the dialect cannot read one)."""
        ...

    def parse_queue(self, out: CommandOutput) -> list[QueuedJob] | None:
        """The whole queue in `queue_argv`'s answer; None when the command did not answer."""
        ...

    def start_argv(self, shape: Resources, *, limit_s: float | None, memory: bool) -> list[str] | None:
        """A command asking when a new job of this shape would start, queueing nothing.

        None where the scheduler cannot say. `memory`: the nodes report memory (a request is included).
        """
        ...

    def parse_start(self, out: CommandOutput) -> float | None:
        """Seconds from now until the job `start_argv` asked about would start; None if it did not say."""
        ...

    def accounting_argvs(self, job_ids: Sequence[str]) -> list[list[str]]:
        """Commands that explain jobs the status no longer lists ([] where the site keeps no accounting)."""
        ...

    def parse_accounting(self, text: str) -> Mapping[str, JobStatus]:
        """Finished jobs as accounting reports them."""
        ...

    def hold_reason_argv(self, job_id: str) -> list[str] | None:
        """A command that says why a HELD job will not start, where the status does not say it."""
        ...

    def parse_hold_reason(self, text: str) -> str:
        """The reason in `hold_reason_argv`'s answer."""
        ...

    def signal_argv(self, job_ids: Sequence[str], signal: str) -> list[str] | None:
        """Send `signal` to the jobs' batch shells; None where the scheduler cannot."""
        ...

    def parallel_prefix(self, nodes: int) -> tuple[str, ...]:
        """What starts a command once per node of a multi-node allocation (``srun``...)."""
        ...


def can_signal(dialect: Dialect) -> bool:
    """Whether the scheduler can signal a job's batch shell (cooperative checkpoints, CRIU migration)."""
    return dialect.signal_argv(["0"], "USR2") is not None


def with_header(script: str, lines: Sequence[str]) -> str:
    """Put the directive lines right after the script's ``#!`` line (where submit commands read them)."""
    shebang, _, rest = script.partition("\n")
    return "\n".join([shebang, *lines, rest])


def check_header(spec: TaskSpec, lines: Sequence[str], scheduler: str) -> None:
    """Refuse a directive that would span lines (a value with a newline would inject more directives)."""
    for line in lines:
        if any(c in line for c in "\n\r"):
            raise ValueError(f"task {spec.name!r}: a {scheduler} directive would span lines: {line!r}")


def seconds_of(text: str) -> float | None:
    """A duration as schedulers print one: ``[D-][HH:]MM:SS`` (hours may exceed 24) or seconds; else None.

    >>> seconds_of("1-02:03:04"), seconds_of("2:00"), seconds_of("120"), seconds_of("UNLIMITED")
    (93784.0, 120.0, 120.0, None)
    """
    return float(text.strip()) if text.strip().isdigit() else clock_seconds(text)


def hhmmss(seconds: float) -> str:
    """A time limit as PBS writes it, rounded up to the second (``01:02:03``)."""
    total = math.ceil(seconds)
    return f"{total // 3600:02d}:{total % 3600 // 60:02d}:{total % 60:02d}"
