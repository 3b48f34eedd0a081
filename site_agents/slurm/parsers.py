"""Pure parsers of Slurm command output (tested on recorded output of real Slurm in tests/data).

Native job states map to the batch agent's ``JobState`` and ``JobEnd`` at the top of this module; a
state Slurm adds later maps to UNKNOWN with a warning, never to an exception. A pending job whose reason
says it can never start is HELD; one waiting on unusable nodes is STALLED.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime

from site_agents.batch.dialect import Capacity, JobEnd, JobState, JobStatus, seconds_of
from site_agents.batch.forecast import QueuedJob

log = logging.getLogger(__name__)

_QUEUED = (JobState.QUEUED, None)
_RUNNING = (JobState.RUNNING, None)
NATIVE_STATES: dict[str, tuple[JobState, JobEnd | None]] = {
    "PENDING": _QUEUED,
    "CONFIGURING": _QUEUED,
    "REQUEUED": _QUEUED,
    "REQUEUE_FED": _QUEUED,
    "REQUEUE_HOLD": _QUEUED,
    "RESV_DEL_HOLD": _QUEUED,
    "SUSPENDED": _RUNNING,
    "RUNNING": _RUNNING,
    "COMPLETING": _RUNNING,
    "STAGE_OUT": _RUNNING,
    "SIGNALING": _RUNNING,
    "RESIZING": _RUNNING,
    "STOPPED": _RUNNING,
    "COMPLETED": (JobState.FINISHED, JobEnd.COMPLETED),
    "FAILED": (JobState.FINISHED, JobEnd.FAILED),
    "BOOT_FAIL": (JobState.FINISHED, JobEnd.FAILED),
    "DEADLINE": (JobState.FINISHED, JobEnd.FAILED),
    "SPECIAL_EXIT": (JobState.FINISHED, JobEnd.FAILED),
    "REVOKED": (JobState.FINISHED, JobEnd.CANCELLED),
    "CANCELLED": (JobState.FINISHED, JobEnd.CANCELLED),
    "PREEMPTED": (JobState.FINISHED, JobEnd.CANCELLED),
    "TIMEOUT": (JobState.FINISHED, JobEnd.TIMEOUT),
    "NODE_FAIL": (JobState.FINISHED, JobEnd.NODE_FAIL),
    "OUT_OF_MEMORY": (JobState.FINISHED, JobEnd.OUT_OF_MEMORY),
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


def job_status(job_id: str, native: str, reason: str, name: str = "") -> JobStatus:
    """A job as squeue or sacct lists it, in the batch agent's words (unknown states become UNKNOWN)."""
    word = native.split()[0].rstrip("+") if native.strip() else ""
    mapped = NATIVE_STATES.get(word)
    if mapped is None:
        log.warning("unknown Slurm job state %r; treating it as UNKNOWN", native)
        mapped = (JobState.UNKNOWN, None)
    state, end = mapped
    if state is JobState.QUEUED and reason in NEVER_STARTS:
        state, reason = JobState.HELD, f"{reason}; lower the request or pick another partition"
    elif state is JobState.QUEUED and reason.startswith(STALLED_PREFIXES):
        state = JobState.STALLED
    return JobStatus(job_id=job_id, state=state, end=end, native_state=native, reason=reason, name=name)


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
        jobs[job_id] = job_status(job_id, native, f"exit code {exit_code}", name)
    return jobs


def has_slurmdbd_accounting(scontrol_show_config: str) -> bool:
    """Whether ``scontrol show config`` says accounting goes to slurmdbd (so sacct can answer)."""
    return any(line.split("=", 1)[0].strip() == "AccountingStorageType" and "slurmdbd" in line
               for line in scontrol_show_config.splitlines())


def parse_sbatch_parsable(stdout: str) -> str | None:
    """The job id from ``sbatch --parsable`` output (``123`` or ``123;cluster``); None if it printed none."""
    lines = [line for line in stdout.strip().splitlines() if line.strip()]
    match = _JOB_ID.match(lines[-1].strip()) if lines else None
    return match.group(1) if match else None


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
        jobs[job_id] = job_status(job_id, native, reason, "|".join(name))
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


def capacity(nodes: list[NodeInfo]) -> Capacity:
    """What the usable nodes offer.

    Nodes without ``RealMemory`` report 1 MB: where none reports more, the site does not track memory
    (``memory_untracked``: requests are neither checked nor passed on); where some do, requests are not
    checked at placement (None) but go to sbatch, which picks nodes with enough.
    """
    usable = [n for n in nodes if n.usable]
    tracked = [n.memory_mb for n in nodes if n.memory_mb > 1]
    down = [f"{n.name} {n.state}" for n in nodes if not n.usable]
    cores = [n.cpus for n in nodes]
    return Capacity(total_cores=sum(n.cpus for n in usable), max_cores_per_node=max(cores, default=0),
                    nodes=len(nodes),
                    usable_nodes=len(usable),
                    max_memory_mb=max(tracked) if tracked and len(tracked) == len(nodes) else None,
                    detail=f"({', '.join(down)})" if down else "",
                    memory_untracked=bool(nodes) and not tracked)


def parse_queue(stdout: str, now: datetime) -> list[QueuedJob]:
    """Parse ``squeue --noheader --all --states=PENDING,RUNNING --format='%i|%T|%C|%L|%l|%S|%u|%P'``.

    Running jobs keep what is left of their limit (``%L``), pending ones their limit (``%l``) and the
    backfill scheduler's expected start (``%S``, in the site's local time like `now`; ``N/A`` until it
    has looked). Suspended and other states are skipped; so are lines that do not parse.
    """
    jobs = []
    for line in stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) != 8 or parts[1] not in ("RUNNING", "PENDING") or not parts[2].isdigit():
            continue
        job_id, state, cores, left, limit, start, user, _ = parts
        running = state == "RUNNING"
        expected = None
        if not running:
            try:
                expected = max(0.0, (datetime.fromisoformat(start) - now).total_seconds())
            except ValueError:
                expected = None
        jobs.append(QueuedJob(job_id=job_id, user=user, running=running, cores=int(cores),
                              remaining_s=seconds_of(left if running else limit),
                              expected_start_s=expected))
    return jobs


_TEST_ONLY = re.compile(r"Job \d+ to start at (\S+) using \d+ processors")


def parse_test_only(stderr: str, now: datetime) -> float | None:
    """Seconds from `now` until ``sbatch --test-only`` says the job would start; None if it did not say.

    sbatch prints ``sbatch: Job 63 to start at 2026-12-02T05:10:31 using 4 processors on nodes c1 in
    partition debug`` on stderr (the site's local time, like `now`; a start already due is now).
    """
    match = _TEST_ONLY.search(stderr)
    if match is None:
        return None
    try:
        return max(0.0, (datetime.fromisoformat(match.group(1)) - now).total_seconds())
    except ValueError:
        return None
