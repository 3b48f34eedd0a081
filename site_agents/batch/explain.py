"""What a job means when its attempt left no record of how it ended (pure: no I/O, no clock).

The attempt's own record (``Launcher.outcome``) always wins; these are read only without one. A job the
site lost while its server had just come back from an outage (``after_outage``) was lost by the server,
not by the task: its task runs again without using up a retry.
"""

from __future__ import annotations

from metasched.outcomes import Cancelled, LossReason, Lost, failed
from metasched.sites.base import AttemptUpdate
from site_agents.batch.dialect import WALLTIME_MARGIN_S, JobEnd, JobStatus
from site_agents.batch.jobs import BatchJob

#: A job lost this soon after the server answered again was lost by the server (a restarted controller
#: forgets, cancels or duplicates the jobs of the state it lost).
OUTAGE_GRACE_S = 300.0


def lost(job: BatchJob, reason: LossReason, detail: str, *, charge: bool = True) -> AttemptUpdate:
    """The site lost the attempt; its task may run again."""
    return AttemptUpdate(attempt_id=job.attempt_id, native_id=job.job_id,
                         outcome=Lost(reason=reason, detail=detail, charge_retry=charge))


def lost_by_site(job: BatchJob, reason: LossReason, detail: str, *, after_outage: bool) -> AttemptUpdate:
    """Lost: charged to the task, unless the server had just come back from an outage."""
    if after_outage:
        return lost(job, reason, f"{detail}, after the server was unreachable", charge=False)
    return lost(job, reason, detail)


def vanished(job: BatchJob, site: str, *, polls: int, after_outage: bool) -> AttemptUpdate:
    """The job left the scheduler's listing (and its accounting) without an outcome record."""
    return lost_by_site(job, LossReason.VANISHED, f"{job.where} at site {site} left the scheduler's listing "
                        f"without an outcome record ({polls} polls)", after_outage=after_outage)


def held(job: BatchJob, status: JobStatus, site: str, reason: str) -> AttemptUpdate:
    """The job can never start as submitted: it was deleted; the attempt fails with the scheduler's why."""
    said = reason or status.reason or status.native_state
    return AttemptUpdate(attempt_id=job.attempt_id, native_id=job.job_id, outcome=failed(
        "SchedulerError", f"{job.where} at site {site} can never start as submitted ({status.native_state}: "
        f"{said}) and was deleted"))


def stalled(job: BatchJob, status: JobStatus, site: str, waited_s: float) -> AttemptUpdate:
    """The job waited too long on unusable nodes: withdrawn so its task can run elsewhere, at no cost."""
    return lost(job, LossReason.STALLED,
                f"{job.where} waited {waited_s:.0f} s at site {site} on unusable nodes "
                f"({status.reason or status.native_state}); withdrawn to run elsewhere", charge=False)


def not_taking_work(unanswered: str | None, *, slow: bool = False, silent: bool = False,
                    detail: str = "") -> str:
    """Why a batch site takes no new work now (`unanswered`: its server's failure, None if it answers).

    Stable words while the reason lasts: ``metasched status`` shows them, journaled when they change.
    """
    if unanswered is not None:
        return f"not answering: {unanswered}"
    if slow:
        return "its status command is slow to answer"
    if silent:
        return "a submission to it has not been answered"
    return f"no node takes jobs {detail}".strip()


def ended(job: BatchJob, status: JobStatus, site: str, *, ran_s: float | None,
          after_outage: bool) -> AttemptUpdate:
    """A finished job without an outcome record: cancelled by us, its time limit, deleted outside, lost...

    `ran_s` is how long it has been running as the agent saw it (None if never seen running): a job that
    ran past its walltime plus the margin hit the scheduler's limit even where the scheduler does not say.
    """
    where = f"{job.where} at site {site}"
    said = f"{status.native_state}{f', {status.reason}' if status.reason else ''}"
    if job.cancelled:
        return AttemptUpdate(attempt_id=job.attempt_id, native_id=job.job_id,
                             outcome=Cancelled(detail=f"{where} cancelled"))
    err = job.attempt.stderr_tail()
    walltime = job.spec.resources.walltime_s
    past_limit = walltime is not None and ran_s is not None and ran_s >= walltime + WALLTIME_MARGIN_S
    if status.end is JobEnd.TIMEOUT or past_limit:
        return AttemptUpdate(attempt_id=job.attempt_id, native_id=job.job_id, outcome=failed(
            "WalltimeExceeded", f"{where} was ended by its scheduler's time limit ({said})", traceback=err,
            walltime_exceeded=True))
    if job.refused_runs:
        return lost(job, LossReason.KILLED, f"{where} ended without a result, and the scheduler ran it "
                    f"again ({job.refused_runs} further run(s) refused)")
    match status.end:
        case JobEnd.CANCELLED:
            return lost_by_site(job, LossReason.DELETED_OUTSIDE,
                                f"{where} was cancelled outside metasched ({said})",
                                after_outage=after_outage)
        case JobEnd.NODE_FAIL:
            return lost(job, LossReason.NODE_FAILURE, f"{where}: node failure ({said})")
        case JobEnd.KILLED | JobEnd.UNKNOWN:
            return lost_by_site(job, LossReason.KILLED, f"{where} ended without a result, killed or deleted "
                                f"outside metasched ({said})", after_outage=after_outage)
        case _:
            return AttemptUpdate(attempt_id=job.attempt_id, native_id=job.job_id, outcome=failed(
                "SchedulerError", f"{where} ended {said} without a result; its stderr is below and in "
                f"{job.attempt.job_stderr}", traceback=err))
