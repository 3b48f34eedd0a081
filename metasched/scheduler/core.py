"""The scheduler's synchronous core: tasks, attempts, dependencies and the transitions between states.

No I/O and no Ray: the actor (``metasched.scheduler.actor``) feeds it events and acts on what it says,
and unit tests drive it directly. Every state change goes through ``_move``, which enforces the
``ALLOWED`` table and records a ``Transition`` for the journal; an outcome for an attempt that is no
longer the task's current attempt is ignored, so a task reaches a terminal state exactly once.
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from metasched.errors import (
    AttemptLostError,
    ConfigurationError,
    DependencyError,
    MetaschedError,
    TaskCancelledError,
    TaskError,
)
from metasched.records import AttemptId, SiteName, TaskId, TaskSpec, Usage, split_attempt_id
from metasched.scheduler.states import ALLOWED, AttemptState, TaskState


class TransitionError(MetaschedError):
    """A state change the transition table forbids was asked for: a bug in metasched, not in the task."""


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


@dataclass(slots=True, kw_only=True)
class TaskRecord:
    """The scheduler's view of one task."""

    spec: TaskSpec
    state: TaskState
    tries: int = 0  # attempts that counted against `retries`
    attempts: int = 0  # every attempt ever made
    current: Attempt | None = None
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


class SchedulerCore:
    """The state machine of one campaign."""

    def __init__(self) -> None:
        self.tasks: dict[TaskId, TaskRecord] = {}
        self.order: list[TaskId] = []
        self.ready: deque[TaskId] = deque()
        self.attempts: dict[AttemptId, Attempt] = {}
        self.transitions: list[Transition] = []

    # ----------------------------------------------------------------------------------------- inputs
    def add(self, spec: TaskSpec) -> TaskRecord:
        """Accept a new task; it becomes READY at once if every dependency is already DONE."""
        if spec.task_id in self.tasks:
            raise ConfigurationError(f"task id {spec.task_id!r} ({spec.name}) was submitted twice.")
        missing = [d for d in spec.depends_on if d not in self.tasks]
        if missing:
            raise ConfigurationError(
                f"task {spec.name!r} ({spec.task_id}) depends on unknown task(s) {', '.join(missing)}; "
                "submit dependencies before the tasks that use them."
            )
        record = TaskRecord(spec=spec, state=TaskState.PENDING)
        self.tasks[spec.task_id] = record
        self.order.append(spec.task_id)
        self._record(Transition(task_id=spec.task_id, old=None, new=TaskState.PENDING, at=time.time()))
        self._link(record)
        failed_dep = next(
            (self.tasks[d] for d in spec.depends_on if self.tasks[d].state in (TaskState.FAILED,
                                                                              TaskState.CANCELLED)),
            None,
        )
        if failed_dep is not None:
            self._fail_dependents_of(failed_dep, only=[spec.task_id])
        elif not record.waiting_on:
            self._make_ready(record)
        return record

    def _link(self, record: TaskRecord) -> None:
        """Record the task among its dependencies' dependents, and wait for those not DONE."""
        for dep_id in dict.fromkeys(record.spec.depends_on):
            dep = self.tasks[dep_id]
            if dep.dependents is None:
                dep.dependents = []
            dep.dependents.append(record.spec.task_id)
            if dep.state is not TaskState.DONE:
                if record.waiting_on is None:
                    record.waiting_on = set()
                record.waiting_on.add(dep_id)

    def restore(
        self,
        spec: TaskSpec,
        *,
        state: TaskState,
        tries: int,
        attempts: int,
        result: bytes | None,
        error: TaskError | None,
        site: SiteName | None = None,
        checkpoint: str | None = None,
        migrate_to: SiteName | None = None,
    ) -> TaskRecord:
        """Rebuild a task from the journal without recording transitions (they are already recorded).

        Terminal tasks keep their state and result. Any other task starts over from PENDING/READY
        (its attempts were lost with the previous scheduler; the actor records that), keeping its
        retry count.
        """
        record = TaskRecord(spec=spec, state=TaskState.PENDING, tries=tries, attempts=attempts,
                            last_site=site, checkpoint=checkpoint, migrate_to=migrate_to)
        self.tasks[spec.task_id] = record
        self.order.append(spec.task_id)
        self._link(record)
        if state.terminal:
            record.state, record.result, record.error = state, result, error
        elif not record.waiting_on:
            record.state = TaskState.READY
            self.ready.append(spec.task_id)
        return record

    def reattach(self, task_id: TaskId, site: SiteName, attempt_id: AttemptId, number: int) -> Attempt:
        """After a restore: the attempt the site still runs becomes the task's current one again."""
        record = self.tasks[task_id]
        self._discard_ready(record)
        attempt = Attempt(attempt_id=attempt_id, task_id=task_id, site=site, number=number,
                          submitted_at=time.time())
        record.state = TaskState.SUBMITTED  # as journaled: no new transition
        record.current = attempt
        record.last_site = site
        self.attempts[attempt_id] = attempt
        return attempt

    def fail_orphans(self) -> None:
        """After a restore: fail unfinished tasks downstream of a failed or cancelled task."""
        for record in list(self.tasks.values()):
            if record.state in (TaskState.FAILED, TaskState.CANCELLED):
                self._fail_dependents_of(record)

    def stage(self, task_id: TaskId, site: SiteName, detail: str) -> None:
        """READY -> STAGING: placed at `site`, waiting for input data to be copied there."""
        record = self.tasks[task_id]
        record.last_site = site
        self._move(record, TaskState.STAGING, detail=f"site {site}: {detail}")

    def start_attempt(self, task_id: TaskId, site: SiteName, attempt_id: AttemptId, why: str = "") -> Attempt:
        """READY (or STAGING) -> SUBMITTED: the actor hands an attempt to `site` (`why`: the placement's)."""
        record = self.tasks[task_id]
        attempt = Attempt(
            attempt_id=attempt_id, task_id=task_id, site=site, number=record.attempts + 1,
            submitted_at=time.time(),
        )
        detail = f"attempt {attempt.number}; {why}" if why else f"attempt {attempt.number}"
        self._move(record, TaskState.SUBMITTED, attempt=attempt, detail=detail)
        record.attempts += 1
        record.tries += 1
        record.current = attempt
        record.last_site = site
        self.attempts[attempt_id] = attempt
        return attempt

    def attempt_running(self, attempt_id: AttemptId) -> bool:
        """The site reports the attempt running."""
        record = self._current(attempt_id)
        if record is None or record.state is not TaskState.SUBMITTED:
            return False
        self.attempts[attempt_id].state = AttemptState.RUNNING
        self._move(record, TaskState.RUNNING, attempt=record.current)
        return True

    def attempt_succeeded(self, attempt_id: AttemptId, result: bytes) -> bool:
        """The attempt produced a result: the task is DONE and dependents may become READY."""
        record = self._current(attempt_id)
        if record is None:
            return False
        self._end_attempt(attempt_id, AttemptState.SUCCEEDED)
        record.result = result
        self._move(record, TaskState.DONE, attempt=self.attempts[attempt_id])
        for dep_id in record.dependents or ():
            dependent = self.tasks[dep_id]
            if dependent.waiting_on:
                dependent.waiting_on.discard(record.spec.task_id)
            if dependent.state is TaskState.PENDING and not dependent.waiting_on:
                self._make_ready(dependent)
        return True

    def attempt_failed(self, attempt_id: AttemptId, error: TaskError, *, retryable: bool = True) -> bool:
        """The attempt failed: retry while retries are left, else FAIL the task and its dependents."""
        record = self._current(attempt_id)
        if record is None:
            return False
        self._end_attempt(attempt_id, AttemptState.FAILED)
        attempt = self.attempts[attempt_id]
        if retryable and record.tries <= record.spec.retries:
            self._move(record, TaskState.READY, attempt=attempt,
                       detail=f"retry {record.tries}/{record.spec.retries} after: {error.message}")
            self.ready.append(record.spec.task_id)
        else:
            self._finish_failed(record, error, attempt=attempt)
        return True

    def attempt_checkpointed(self, attempt_id: AttemptId, checkpoint: str, *, detail: str) -> bool:
        """The attempt stopped with a checkpoint: the task is READY again and resumes from it.

        The stopped attempt uses no retry (it did not fail).
        """
        record = self._current(attempt_id)
        if record is None:
            return False
        self._end_attempt(attempt_id, AttemptState.CHECKPOINTED)
        record.tries -= 1
        record.checkpoint = checkpoint
        where = f"; next attempt at {record.migrate_to}" if record.migrate_to else ""
        self._move(record, TaskState.READY, attempt=self.attempts[attempt_id], detail=f"{detail}{where}")
        record.current = None
        self.ready.append(record.spec.task_id)
        return True

    def attempt_lost(self, attempt_id: AttemptId, *, reason: str, counts_as_try: bool = True) -> bool:
        """The site no longer knows the attempt: run it again.

        A lost attempt consumes a retry unless the loss was ours (e.g. a scheduler restart).
        """
        record = self._current(attempt_id)
        if record is None:
            return False
        self._end_attempt(attempt_id, AttemptState.LOST)
        if not counts_as_try:
            record.tries -= 1
        attempt = self.attempts[attempt_id]
        if record.tries <= record.spec.retries:
            self._move(record, TaskState.READY, attempt=attempt, detail=f"resubmitting: {reason}")
            self.ready.append(record.spec.task_id)
        else:
            error = AttemptLostError(
                f"task {record.spec.name!r} ({record.spec.task_id}) was lost at site {attempt.site} "
                f"({reason}) and has no retries left (retries={record.spec.retries}).",
                task_id=record.spec.task_id, task_name=record.spec.name,
            )
            self._finish_failed(record, error, attempt=attempt)
        return True

    def fail(self, task_id: TaskId, error: TaskError) -> bool:
        """Fail a task that cannot run at all (e.g. no site can ever place it)."""
        record = self.tasks[task_id]
        if record.state.terminal:
            return False
        self._discard_ready(record)
        self._finish_failed(record, error, attempt=record.current)
        return True

    def cancel(self, task_id: TaskId) -> Attempt | None:
        """Cancel a task; returns its live attempt (for the actor to cancel at the site), if any."""
        record = self.tasks[task_id]
        if record.state.terminal:
            return None
        live = record.current if record.state in (TaskState.SUBMITTED, TaskState.RUNNING) else None
        if live is not None:
            self._end_attempt(live.attempt_id, AttemptState.CANCELLED)
        self._discard_ready(record)
        record.error = TaskCancelledError(
            f"task {record.spec.name!r} ({task_id}) was cancelled.", task_id=task_id,
            task_name=record.spec.name,
        )
        self._move(record, TaskState.CANCELLED, attempt=live, detail="cancelled by user")
        record.current = None
        self._fail_dependents_of(record)
        return live

    # ---------------------------------------------------------------------------------------- queries
    def result_of(self, task_id: TaskId) -> bytes:
        """A DONE task's result (what its dependents are given)."""
        result = self.tasks[task_id].result
        assert result is not None  # noqa: S101  (a READY task's dependencies are all DONE)
        return result

    def take_transitions(self) -> list[Transition]:
        """The transitions recorded since the last call (the actor journals them)."""
        out, self.transitions = self.transitions, []
        return out

    def unfinished(self) -> int:
        """Tasks not yet in a terminal state."""
        return sum(1 for r in self.tasks.values() if not r.state.terminal)

    def _record(self, transition: Transition) -> None:
        self.transitions.append(transition)

    def _move(self, record: TaskRecord, new: TaskState, *, attempt: Attempt | None = None,
              detail: str = "") -> None:
        old = record.state
        if new not in ALLOWED[old]:
            raise TransitionError(
                f"task {record.spec.task_id} cannot go from {old.value} to {new.value}; this is a bug in "
                "metasched, please report it with the campaign journal."
            )
        record.state = new
        self._record(Transition(
            task_id=record.spec.task_id, old=old, new=new, at=time.time(),
            attempt_id=attempt.attempt_id if attempt else None, site=attempt.site if attempt else None,
            detail=detail,
        ))

    def _make_ready(self, record: TaskRecord) -> None:
        self._move(record, TaskState.READY)
        self.ready.append(record.spec.task_id)

    def forget_ended(self, attempts: Iterable[Attempt]) -> None:
        """Let go of attempts that ended, once journaled (about 220 bytes each, a million in a big campaign).

        A late report of one (e.g. a note about its job) still finds its task through `owner`.
        """
        for attempt in attempts:
            attempt.usage, attempt.printed = None, ("", "")
            if attempt.ended_at is None:
                continue
            self.attempts.pop(attempt.attempt_id, None)
            record = self.tasks[attempt.task_id]
            if record.current is attempt and record.state.terminal:
                record.current = None

    def owner(self, attempt_id: AttemptId) -> TaskId | None:
        """The task an attempt of this campaign (live, or ended and forgotten) belongs to; else None."""
        attempt = self.attempts.get(attempt_id)
        if attempt is not None:
            return attempt.task_id
        try:
            task_id = split_attempt_id(attempt_id)[0]
        except ValueError:
            return None
        return task_id if task_id in self.tasks else None

    def _discard_ready(self, record: TaskRecord) -> None:
        if record.state is TaskState.READY:
            with contextlib.suppress(ValueError):
                self.ready.remove(record.spec.task_id)

    def _current(self, attempt_id: AttemptId) -> TaskRecord | None:
        attempt = self.attempts.get(attempt_id)
        if attempt is None:
            return None
        record = self.tasks[attempt.task_id]
        if record.current is None or record.current.attempt_id != attempt_id or record.state.terminal:
            return None
        if record.state not in (TaskState.SUBMITTED, TaskState.RUNNING):
            return None
        return record

    def _end_attempt(self, attempt_id: AttemptId, state: AttemptState) -> None:
        attempt = self.attempts[attempt_id]
        attempt.state = state
        attempt.ended_at = time.time()

    def _finish_failed(self, record: TaskRecord, error: TaskError, *, attempt: Attempt | None) -> None:
        record.error = error
        self._move(record, TaskState.FAILED, attempt=attempt, detail=error.message)
        record.current = None
        self._fail_dependents_of(record)

    def _fail_dependents_of(self, root: TaskRecord, *, only: list[TaskId] | None = None) -> None:
        """Fail every unfinished task downstream of `root`, naming the root cause task."""
        root_id: str = root.spec.task_id
        root_name = root.spec.name
        if isinstance(root.error, DependencyError):  # name the original cause, not the messenger
            root_id, root_name = root.error.root_task_id, root.error.root_task_name
        how = "was cancelled" if root.state is TaskState.CANCELLED else "failed"
        stack = list(only if only is not None else root.dependents or ())
        while stack:
            record = self.tasks[stack.pop()]
            if record.state.terminal:
                continue
            self._discard_ready(record)
            record.error = DependencyError(
                f"task {record.spec.name!r} ({record.spec.task_id}) did not run because the task it "
                f"depends on, {root_name!r} ({root_id}), {how}.",
                task_id=record.spec.task_id, task_name=record.spec.name,
                root_task_id=root_id, root_task_name=root_name,
            )
            self._move(record, TaskState.FAILED, detail=record.error.message)
            stack.extend(record.dependents or ())
