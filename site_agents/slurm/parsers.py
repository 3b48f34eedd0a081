"""Pure parsers of Slurm command output (tested on recorded output of real Slurm in tests/data).

Native job states map to ``JobState`` at the top of this module; a state Slurm adds later maps to
UNKNOWN with a warning, never to an exception.
"""

from __future__ import annotations

import enum
import logging
import re
from dataclasses import dataclass

from site_agents.batch import ExitStatus as ExitStatus
from site_agents.batch import parse_exit_status as parse_exit_status

log = logging.getLogger(__name__)


class JobState(enum.Enum):
    """What metasched needs to know about a Slurm job."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMEOUT = "timeout"
    NODE_FAIL = "node_fail"
    OUT_OF_MEMORY = "out_of_memory"
    UNKNOWN = "unknown"

    @property
    def finished(self) -> bool:
        """True once the job will not run any more."""
        return self not in (JobState.QUEUED, JobState.RUNNING, JobState.UNKNOWN)


NATIVE_STATES: dict[str, JobState] = {
    "PENDING": JobState.QUEUED,
    "CONFIGURING": JobState.QUEUED,
    "REQUEUED": JobState.QUEUED,
    "REQUEUE_FED": JobState.QUEUED,
    "REQUEUE_HOLD": JobState.QUEUED,
    "RESV_DEL_HOLD": JobState.QUEUED,
    "SUSPENDED": JobState.RUNNING,
    "RUNNING": JobState.RUNNING,
    "COMPLETING": JobState.RUNNING,
    "STAGE_OUT": JobState.RUNNING,
    "SIGNALING": JobState.RUNNING,
    "RESIZING": JobState.RUNNING,
    "STOPPED": JobState.RUNNING,
    "COMPLETED": JobState.COMPLETED,
    "FAILED": JobState.FAILED,
    "BOOT_FAIL": JobState.FAILED,
    "DEADLINE": JobState.FAILED,
    "SPECIAL_EXIT": JobState.FAILED,
    "REVOKED": JobState.CANCELLED,
    "CANCELLED": JobState.CANCELLED,
    "PREEMPTED": JobState.CANCELLED,
    "TIMEOUT": JobState.TIMEOUT,
    "NODE_FAIL": JobState.NODE_FAIL,
    "OUT_OF_MEMORY": JobState.OUT_OF_MEMORY,
}

# Pending reasons that mean the job can never start as submitted.
NEVER_STARTS = frozenset({"PartitionConfig", "BadConstraints", "PartitionNodeLimit", "AccountNotAllowed",
                          "QOSJobLimit", "InvalidAccount", "InvalidQOS", "PartitionTimeLimit"})

# Pending reasons that mean the job cannot start *for now* because the site's nodes are unusable
# (down, drained, held after a failed launch): prefixes, as squeue words some of them with node lists.
STALLED_PREFIXES = ("ReqNodeNotAvail", "Nodes required for job are DOWN", "NodeDown", "PartitionDown",
                    "PartitionInactive", "launch failed requeued held", "JobHeldAdmin")

# Node states (sinfo %T, flag suffixes such as `*` or `~` removed) in which a node takes no new jobs.
# ("unknown" is not among them: every node is unknown for a moment after slurmctld starts.)
UNUSABLE_NODE_STATES = frozenset({"down", "drained", "draining", "drain", "fail", "failing", "maint",
                                  "inval", "future", "reboot_issued", "reboot_requested"})

_JOB_ID = re.compile(r"^(\d+)(?:;(\S+))?$")


@dataclass(frozen=True, slots=True, kw_only=True)
class JobStatus:
    """One job as squeue reports it."""

    job_id: str
    state: JobState
    native_state: str
    reason: str
    name: str = ""  # the job name ("" in output recorded without it)

    @property
    def stalled(self) -> bool:
        """Queued on nodes that are down, drained or held: it will not start until an admin acts."""
        return self.state is JobState.QUEUED and self.reason.startswith(STALLED_PREFIXES)


def map_state(native: str) -> JobState:
    """Map a native Slurm state (e.g. ``CANCELLED by 0``) to a JobState; unknown ones to UNKNOWN."""
    word = native.split()[0].rstrip("+") if native.strip() else ""
    state = NATIVE_STATES.get(word)
    if state is None:
        log.warning("unknown Slurm job state %r; treating it as UNKNOWN", native)
        return JobState.UNKNOWN
    return state


def parse_sacct(stdout: str) -> dict[str, JobStatus]:
    """Parse ``sacct --noheader --parsable2 --format=JobIDRaw,State,ExitCode,JobName``.

    Only the job rows count (not their ``.batch``/step rows); the exit code becomes the reason (``3:0``:
    exit status 3, no signal).
    """
    jobs: dict[str, JobStatus] = {}
    for line in stdout.splitlines():
        parts = line.split("|", 3)
        if len(parts) != 4 or not parts[0].isdigit():
            continue
        job_id, native, exit_code, name = parts
        jobs[job_id] = JobStatus(job_id=job_id, state=map_state(native), native_state=native,
                                 reason=f"exit code {exit_code}", name=name)
    return jobs


def has_slurmdbd_accounting(scontrol_show_config: str) -> bool:
    """Whether ``scontrol show config`` says accounting goes to slurmdbd (so sacct can answer)."""
    return any(line.split("=", 1)[0].strip() == "AccountingStorageType" and "slurmdbd" in line
               for line in scontrol_show_config.splitlines())


def parse_sbatch_parsable(stdout: str) -> str:
    """The job id from ``sbatch --parsable`` output (``123`` or ``123;cluster``)."""
    lines = [line for line in stdout.strip().splitlines() if line.strip()]
    match = _JOB_ID.match(lines[-1].strip()) if lines else None
    if match is None:
        raise ValueError(f"sbatch --parsable printed no job id: {stdout.strip()[:200]!r}")
    return match.group(1)


def parse_squeue(stdout: str) -> dict[str, JobStatus]:
    """Parse ``squeue --noheader --format='%i|%T|%r|%j'`` (or without ``|%j``); bad lines are skipped.

    The job name comes last so a name containing ``|`` still parses.
    """
    jobs: dict[str, JobStatus] = {}
    for line in stdout.splitlines():
        if not line.strip():
            continue
        parts = line.strip().split("|")
        if len(parts) < 3 or not parts[0]:
            log.warning("skipping unparsable squeue line %r", line)
            continue
        job_id, native, reason, *name = parts
        jobs[job_id] = JobStatus(job_id=job_id, state=map_state(native), native_state=native, reason=reason,
                                 name="|".join(name))
    return jobs


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeInfo:
    """One node as sinfo reports it."""

    name: str
    cpus: int
    memory_mb: int
    state: str

    @property
    def usable(self) -> bool:
        """Whether the node takes new jobs (idle, mixed, allocated, completing, powered-down cloud...)."""
        return self.state.rstrip("*~#!%$@^-+").lower() not in UNUSABLE_NODE_STATES


def parse_sinfo_nodes(stdout: str) -> list[NodeInfo]:
    """Parse ``sinfo --noheader --Node --format='%N|%c|%m|%T'`` (one line per node and partition)."""
    nodes: dict[str, NodeInfo] = {}
    for line in stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) != 4:
            continue
        name, cpus, memory, state = parts
        try:
            nodes[name] = NodeInfo(name=name, cpus=int(cpus.rstrip("+")), memory_mb=int(memory.rstrip("+")),
                                   state=state)
        except ValueError:
            log.warning("skipping unparsable sinfo line %r", line)
    return list(nodes.values())
