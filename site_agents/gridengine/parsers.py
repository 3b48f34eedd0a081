"""Pure parsers of Grid Engine 8.1.9 output (recorded real output in tests/data/gridengine-8.1.9).

qstat's state letters map to the batch agent's ``JobState`` here: E (``Eqw``: never starts until an admin
clears it) is HELD, d (being deleted) is UNKNOWN until it leaves, s/S/T (suspended) and r/t/R count as
running, anything else is queued. ``qacct -j`` explains a job that left qstat (``JobEnd``).
"""

from __future__ import annotations

import contextlib
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime

from site_agents.batch.dialect import JobEnd, JobState, JobStatus, seconds_of
from site_agents.batch.forecast import QueuedJob


def job_state(letters: str) -> JobState:
    """Map qstat's state letters (qw, hqw, r, t, Rr, dr, Eqw, s, S, T...) to a JobState."""
    if "E" in letters:
        return JobState.HELD
    if "d" in letters:
        return JobState.UNKNOWN
    if any(c in letters for c in "sSTrtR"):
        return JobState.RUNNING
    return JobState.QUEUED


def parse_qstat_xml(text: str) -> dict[str, JobStatus]:
    """Every job in ``qstat -xml`` (running ones sit under queue_info, pending ones under job_info)."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError:
        return {}
    jobs: dict[str, JobStatus] = {}
    for job in root.iter("job_list"):
        job_id = (job.findtext("JB_job_number") or "").strip()
        letters = (job.findtext("state") or "").strip()
        if job_id:
            jobs[job_id] = JobStatus(job_id=job_id, name=(job.findtext("JB_name") or "").strip(),
                                     state=job_state(letters), native_state=letters)
    return jobs


def parse_queue_xml(text: str, now: datetime) -> list[QueuedJob]:
    """Every user's running and waiting jobs in ``qstat -xml -u '*' -r`` (`now`: the cell's clock).

    A job's limit is its hard ``h_rt`` request (none: no limit); a running one keeps what is left of it
    since ``JAT_start_time``. Jobs in error, on hold or being deleted will not start: skipped.
    """
    try:
        root = ET.fromstring(text)
    except ET.ParseError:
        return []
    jobs = []
    for job in root.iter("job_list"):
        job_id, letters = (job.findtext("JB_job_number") or "").strip(), (job.findtext("state") or "").strip()
        state = job_state(letters)
        slots = (job.findtext("slots") or "").strip()
        if not job_id or not slots.isdigit() or "h" in letters or state not in (JobState.RUNNING,
                                                                                  JobState.QUEUED):
            continue
        limit = next((seconds_of(r.text or "") for r in job.iter("hard_request") if r.get("name") == "h_rt"),
                     None)
        started = (job.findtext("JAT_start_time") or "").strip()
        if state is JobState.RUNNING and limit is not None and started:
            with contextlib.suppress(ValueError):  # a start time it does not print as ISO: the whole limit
                limit = max(0.0, limit - (now - datetime.fromisoformat(started)).total_seconds())
        jobs.append(QueuedJob(job_id=job_id, user=(job.findtext("JB_owner") or "").strip(),
                              running=state is JobState.RUNNING, cores=int(slots), remaining_s=limit))
    return jobs


@dataclass(frozen=True, slots=True)
class QueueCapacity:
    """Slots of the cell's queue instances (``qstat -f -xml``), those that take jobs now."""

    total_slots: int
    max_slots_per_host: int
    hosts: int
    closed: tuple[str, ...] = ()  # instances that take no jobs, e.g. "all.q@n1 (d: disabled)"


# Queue instance states in which Grid Engine starts no job there (qstat(1)); alarms (a, A) pass by themselves.
CLOSED_STATES = {"d": "disabled", "D": "disabled by calendar", "E": "error", "u": "unreachable",
                 "s": "suspended", "S": "suspended by subordination", "C": "suspended by calendar",
                 "o": "orphaned"}


def parse_qstat_f_xml(text: str) -> QueueCapacity:
    """Slots of the queue instances that take jobs: in all, the most on one, how many (``qstat -f -xml``).

    An instance in a state that starts nothing (``CLOSED_STATES``: disabled, in error, its execd
    unreachable, suspended) counts for nothing, and is named in ``closed``.
    """
    try:
        root = ET.fromstring(text)
    except ET.ParseError:
        return QueueCapacity(total_slots=0, max_slots_per_host=0, hosts=0)
    slots, closed = [], []
    for queue in root.iter("Queue-List"):
        letters = [CLOSED_STATES[c] for c in queue.findtext("state") or "" if c in CLOSED_STATES]
        if letters:
            closed.append(f"{queue.findtext('name') or '?'} ({', '.join(letters)})")
        else:
            slots.append(int(queue.findtext("slots_total") or 0))
    return QueueCapacity(total_slots=sum(slots), max_slots_per_host=max(slots, default=0), hosts=len(slots),
                         closed=tuple(closed))


def parse_qsub_terse(stdout: str) -> str | None:
    """The job id ``qsub -terse`` printed ("123", or "123.1-4:1" for an array job)."""
    first = stdout.strip().splitlines()[0] if stdout.strip() else ""
    match = re.fullmatch(r"(\d+)(?:\.\S+)?", first.strip())
    return match.group(1) if match else None


@dataclass(frozen=True, slots=True)
class Accounting:
    """A finished job as ``qacct -j`` reports it."""

    failed: int
    failed_reason: str
    exit_status: int
    job_id: str = ""
    name: str = ""

    @property
    def walltime_exceeded(self) -> bool:
        """Failed 37: the qmaster enforced h_rt (or h_cpu/h_vmem)."""
        return self.failed == 37

    @property
    def deleted(self) -> bool:
        """Failed 100 "assumedly after job" with a kill: qdel (or a signal from outside the job)."""
        return self.failed == 100


def parse_qacct(text: str) -> Accounting | None:
    """The last record of ``qacct -j ID``; None when the job is not (yet) in the accounting file."""
    if "not found" in text or "=====" not in text:
        return None
    record = text.rsplit("=====", 1)[-1]
    fields: dict[str, str] = {}
    for line in record.splitlines():
        key, _, value = line.partition(" ")
        if key:
            fields[key] = value.strip()
    failed = fields.get("failed", "0")
    code, _, reason = failed.partition(":")
    try:
        return Accounting(failed=int(code.strip()), failed_reason=reason.strip(),
                          exit_status=int(fields.get("exit_status", "0").split()[0]),
                          job_id=fields.get("jobnumber", ""), name=fields.get("jobname", ""))
    except ValueError:
        return None


def accounted_status(record: Accounting) -> JobStatus:
    """A finished job as qacct reports it, in the batch agent's words."""
    if record.walltime_exceeded:
        end = JobEnd.TIMEOUT
    elif record.deleted:
        end = JobEnd.CANCELLED
    elif record.failed == 0 and record.exit_status == 0:
        end = JobEnd.COMPLETED
    else:
        end = JobEnd.FAILED
    return JobStatus(job_id=record.job_id, name=record.name, state=JobState.FINISHED, end=end,
                     native_state="qacct",
                     reason=f"failed {record.failed} {record.failed_reason}, exit status "
                            f"{record.exit_status}")


def error_reason(qstat_j: str) -> str:
    """The "error reason" lines of ``qstat -j ID`` (why a job sits in Eqw), timestamps dropped."""
    reasons = []
    for line in qstat_j.splitlines():
        if line.startswith("error reason"):
            text = line.split(":", 1)[-1]
            reasons.append(re.sub(r"^\s*\d\d/\d\d/\d{4} [\d:]+ \[[\d:]+\]:\s*", "", text).strip())
    return "; ".join(reasons)


_UNREACHABLE = ("unable to send message to qmaster", "unable to contact qmaster", "commlib error")


def qmaster_unreachable(stderr: str) -> bool:
    """True when a client program failed because the qmaster did not answer (not because of the job)."""
    return any(marker in stderr for marker in _UNREACHABLE)
