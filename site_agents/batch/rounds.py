"""One round of a batch site's status commands, run on the agent's poller thread (no job record touched).

The status command of every job; accounting for jobs it stopped listing; the reason a HELD job will not
start; the node listing when it is due (or as the probe of a site without jobs). Every user's queue
(``list_queue``) is listed on a thread of its own, with the controller's expected starts of the resource
shapes our jobs have.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from metasched.records import Resources
from site_agents.batch.dialect import Capacity, Dialect, JobState, JobStatus
from site_agents.batch.forecast import QueuedJob
from site_agents.batch.launchers import shape_limit_s
from site_agents.runner import CommandOutput

log = logging.getLogger(__name__)

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

    def add(self, job_id: str, name: str, *, listed: bool) -> None:
        """One job: by its id if listed under its name just now, else by its name."""
        if listed:
            self.ids.append(job_id)
        else:
            self.names.append(name)

    def run(self, dialect: Dialect, run: Callable[[list[str]], CommandOutput], user: str) -> list[str]:
        """Delete them: the ids in one call, the names as the dialect can; returns the names not looked up.

        Where the delete command takes ids only (PBS's qdel), `user`'s jobs are listed and those of these
        names still queued or running are deleted with the ids; if that listing does not answer, their
        names are returned (to try again at the site's next answer).
        """
        ids, by_name = list(self.ids), dialect.delete_by_name_argvs(self.names) if self.names else []
        unlisted: list[str] = []
        if by_name is None:
            listed = users_jobs(dialect, run, user)
            if listed is None:
                log.warning("the job listing did not answer: jobs %s not looked up to be deleted",
                            ", ".join(self.names))
                unlisted = list(self.names)
            else:
                wanted = set(self.names)
                ids += [job.job_id for job in listed
                        if job.name in wanted and job.state is not JobState.FINISHED]
        if ids:
            run(dialect.delete_argv(ids))
        for argv in by_name or []:
            run(argv)
        return unlisted


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


def users_jobs(dialect: Dialect, run: Callable[[list[str]], CommandOutput],
               user: str) -> list[JobStatus] | None:
    """Every job the status command lists for `user`, ours or not (None if it did not answer)."""
    statuses = dialect.parse_status(run(dialect.status_argv(user, [])))
    return None if statuses is None else list(statuses.values())


def jobs_by_name(dialect: Dialect, run: Callable[[list[str]], CommandOutput],
                 user: str) -> dict[str, str] | None:
    """The id of each of `user`'s listed jobs, by job name (None if the listing did not answer)."""
    listed = users_jobs(dialect, run, user)
    return None if listed is None else {s.name: s.job_id for s in listed if s.name}


@dataclass(frozen=True, slots=True)
class Listing:
    """The whole queue, and the controller's expected start (s) of each shape asked about.

    ``jobs`` is None where the dialect cannot list the queue or it did not answer; ``starts`` holds the
    shapes the controller answered for (none where the dialect cannot ask).
    """

    jobs: list[QueuedJob] | None
    starts: dict[Resources, float]


def list_queue(dialect: Dialect, run: Callable[[list[str]], CommandOutput],
               shapes: Sequence[tuple[Resources, list[str]]] = ()) -> Listing:
    """Every user's jobs, for the wait forecast, and `shapes`' expected starts (each with its command).

    Run on a thread of its own: a slow whole-queue listing never delays the status round.
    """
    argv = dialect.queue_argv()
    jobs = dialect.parse_queue(run(argv)) if argv is not None else None
    return Listing(jobs=jobs, starts=ask_starts(dialect, run, shapes))


def ask_starts(dialect: Dialect, run: Callable[[list[str]], CommandOutput],
               shapes: Sequence[tuple[Resources, list[str]]]) -> dict[Resources, float]:
    """Seconds until each shape would start, by its command (one the scheduler did not answer: left out)."""
    starts = {}
    for shape, asking in shapes:
        start = dialect.parse_start(run(asking))
        if start is not None:
            starts[shape] = start
    return starts


def start_questions(dialect: Dialect, shapes: Sequence[Resources],
                    capacity: Capacity) -> list[tuple[Resources, list[str]]]:
    """The command asking when a job of each shape would start, for shapes that fit the site's nodes."""
    questions = []
    for shape in shapes:
        if shape.cores > capacity.max_cores_per_node or shape.nodes > capacity.usable_nodes:
            continue  # placement never sends it here
        argv = dialect.start_argv(shape, limit_s=shape_limit_s(shape), memory=not capacity.memory_untracked)
        if argv is not None:
            questions.append((shape, argv))
    return questions
