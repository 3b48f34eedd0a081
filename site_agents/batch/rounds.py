"""One round of a batch site's status commands, run on the agent's poller thread (no job record touched).

The status command of every job; accounting for jobs it stopped listing; the reason a HELD job will not
start; the node listing when it is due (or as the probe of a site without jobs). Every user's queue
(``list_queue``) is listed on a thread of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from site_agents.batch.dialect import Capacity, Dialect, JobState, JobStatus
from site_agents.batch.forecast import QueuedJob
from site_agents.runner import CommandOutput

ACCOUNTING_AFTER_POLLS = 2  # a job missing from the listing this many polls is looked up in accounting


@dataclass(frozen=True, slots=True, kw_only=True)
class Answer:
    """What one round of status commands learned (built on the poller thread, applied on the next poll)."""

    statuses: Mapping[str, JobStatus] | None  # None: the server did not answer
    problem: str = ""
    accounted: Mapping[str, JobStatus] = field(default_factory=dict)
    hold_reasons: Mapping[str, str] = field(default_factory=dict)
    capacity: Capacity | None = None


@dataclass(slots=True)
class Deletions:
    """Jobs a poll gave up on: deleted by id (listed under our name just now) or by name (not listed)."""

    ids: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)


def status_round(dialect: Dialect, run: Callable[[list[str]], CommandOutput], user: str,
                 jobs: Sequence[tuple[str, int]], nodes_due: bool,
                 status_run: Callable[[list[str]], CommandOutput] | None = None) -> Answer:
    """Ask about these jobs ((job id, polls missing so far) each) and, when due, the nodes.

    The status command runs through `status_run` if given (e.g. with the attempt records fetched in the
    same round trip), else like the others through `run`.
    """
    capacity = dialect.parse_nodes(run(dialect.nodes_argv())) if nodes_due or not jobs else None
    if not jobs:
        return Answer(statuses=None if capacity is None else {}, problem="the node listing did not answer",
                      capacity=capacity)
    out = (status_run or run)(dialect.status_argv(user, [job_id for job_id, _ in jobs]))
    statuses = dialect.parse_status(out)
    if statuses is None:
        return Answer(statuses=None, problem=out.describe())
    missing = [job_id for job_id, polls in jobs if dialect.status_key(job_id) not in statuses
               and polls + 1 >= ACCOUNTING_AFTER_POLLS]
    accounted: dict[str, JobStatus] = {}
    for lookup in dialect.accounting_argvs(missing) if missing else []:
        answer = run(lookup)
        accounted.update(dialect.parse_accounting(answer.stdout) if answer.ok else {})
    reasons = {}
    for status in statuses.values():
        argv = dialect.hold_reason_argv(status.job_id) if status.state is JobState.HELD else None
        if argv is not None:
            reasons[status.job_id] = dialect.parse_hold_reason(run(argv).stdout)
    return Answer(statuses=statuses, accounted=accounted, hold_reasons=reasons, capacity=capacity)


def jobs_by_name(dialect: Dialect, run: Callable[[list[str]], CommandOutput],
                 user: str) -> dict[str, str] | None:
    """The id of each of `user`'s listed jobs, by job name (None if the listing did not answer)."""
    statuses = dialect.parse_status(run(dialect.status_argv(user, [])))
    return None if statuses is None else {s.name: s.job_id for s in statuses.values() if s.name}


def list_queue(dialect: Dialect, run: Callable[[list[str]], CommandOutput]) -> list[QueuedJob] | None:
    """Every user's jobs, for the wait forecast (None where the dialect cannot list them or no answer).

    Run on a thread of its own: a slow whole-queue listing never delays the status round.
    """
    argv = dialect.queue_argv()
    return dialect.parse_queue(run(argv)) if argv is not None else None
