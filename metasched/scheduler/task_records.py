"""What the scheduler core keeps: a task's record, its attempts, the transitions it journals, settled races.

Plain records (no behaviour): ``metasched.scheduler.core`` changes them, the journal writes them.
"""

from __future__ import annotations

from dataclasses import dataclass

from metasched.errors import TaskError
from metasched.records import AttemptId, SiteName, TaskId, TaskSpec, Usage
from metasched.scheduler.states import AttemptState, TaskState


@dataclass(frozen=True, slots=True, kw_only=True)
class Transition:
    """One recorded state change of a task (and, where one is involved, of its attempt)."""

    task_id: TaskId
    old: TaskState | None
    new: TaskState
    at: float
    attempt_id: AttemptId | None = None
    site: SiteName | None = None
    detail: str = ""


@dataclass(slots=True, kw_only=True)
class Attempt:
    """One try of a task at one site."""

    attempt_id: AttemptId
    task_id: TaskId
    site: SiteName
    number: int
    state: AttemptState = AttemptState.SUBMITTED
    submitted_at: float = 0.0
    ended_at: float | None = None
    usage: Usage | None = None  # what it used, once it ended (as its worker measured it), until journaled
    printed: tuple[str, str] = ("", "")  # the ends of its stdout and stderr, until journaled
    predicted_s: float | None = None  # the wait its placement predicted (None: not known, e.g. reattached)


@dataclass(frozen=True, slots=True, kw_only=True)
class Settled:
    """A race between a task's two queued attempts that ended: `winner` goes on, `loser` has ended.

    The loser ended CANCELLED when the winner started first (the service cancels it at its site), or
    LOST when its site lost it (the winner, the task's hedge, carries on in its place).
    """

    winner: Attempt
    loser: Attempt


@dataclass(slots=True, kw_only=True)
class TaskRecord:
    """The scheduler's view of one task."""

    spec: TaskSpec
    state: TaskState
    tries: int = 0  # attempts that counted against `retries`
    attempts: int = 0  # every attempt ever made
    current: Attempt | None = None
    hedge: Attempt | None = None  # a second attempt queued at another site; the first to start wins
    # Made on first use: most tasks of a big campaign have neither (an empty set is 216 bytes).
    waiting_on: set[TaskId] | None = None  # unfinished tasks it depends on
    dependents: list[TaskId] | None = None  # tasks that depend on it
    result: bytes | None = None
    error: TaskError | None = None
    last_site: SiteName | None = None
    placed: str = ""  # why the pending placement chose its site (journaled with the attempt it starts)
    checkpoint: str | None = None  # object id of the checkpoint the next attempt restores from
    migrate_to: SiteName | None = None  # where the next attempt must run (a migration in progress)
    avoid_site: SiteName | None = None  # prefer another site for the next attempt (after a time limit)
