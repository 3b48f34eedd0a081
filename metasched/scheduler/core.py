"""The scheduler's synchronous core: tasks, attempts, dependencies and the transitions between states.

No I/O and no Ray: the actor (``metasched.scheduler.actor``) feeds it events and acts on what it says,
and unit tests drive it directly. Every state change goes through ``_move``, which enforces the
``ALLOWED`` table and records a ``Transition`` for the journal; an outcome for an attempt that is no
longer the task's current attempt is ignored, so a task reaches a terminal state exactly once.

A SUBMITTED task may have a second attempt queued at another site, its hedge (``start_hedge``): the
first of the two to start (or to end, which means it started) becomes the current attempt and the other
is settled as the loser (``take_settled``) for the service to cancel at its site.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable

from metasched.errors import (
    AttemptLostError,
    ConfigurationError,
    MetaschedError,
    TaskCancelledError,
    TaskError,
)
from metasched.records import AttemptId, SiteName, TaskId, TaskSpec, split_attempt_id
from metasched.scheduler.graph import DependencyGraph
from metasched.scheduler.states import ALLOWED, AttemptState, TaskState
from metasched.scheduler.task_records import Attempt, Settled, TaskRecord, Transition


class TransitionError(MetaschedError):
    """A state change the transition table forbids was asked for: a bug in metasched, not in the task."""


class SchedulerCore(DependencyGraph):
    """The state machine of one campaign."""

    def __init__(self) -> None:
        self.tasks: dict[TaskId, TaskRecord] = {}
        self.order: list[TaskId] = []
        self.ready: deque[TaskId] = deque()
        self.attempts: dict[AttemptId, Attempt] = {}
        self.transitions: list[Transition] = []
        self.settled: list[Settled] = []

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
        """After a restore: the attempt the site still runs becomes the task's current one again.

        A second one (the task was hedged) becomes its hedge again: the race goes on.
        """
        record = self.tasks[task_id]
        self._discard_ready(record)
        attempt = Attempt(attempt_id=attempt_id, task_id=task_id, site=site, number=number,
                          submitted_at=time.time())
        if record.current is not None:
            record.hedge = attempt
            self.attempts[attempt_id] = attempt
            return attempt
        record.state = TaskState.SUBMITTED  # as journaled: no new transition
        record.current = attempt
        record.last_site = site
        self.attempts[attempt_id] = attempt
        return attempt

    def stage(self, task_id: TaskId, site: SiteName, detail: str) -> None:
        """READY -> STAGING: placed at `site`, waiting for input data to be copied there."""
        record = self.tasks[task_id]
        record.last_site = site
        self._move(record, TaskState.STAGING, detail=f"site {site}: {detail}")

    def start_attempt(self, task_id: TaskId, site: SiteName, attempt_id: AttemptId, why: str = "", *,
                      predicted_s: float | None = None) -> Attempt:
        """READY (or STAGING) -> SUBMITTED: the actor hands an attempt to `site` (`why`: the placement's)."""
        record = self.tasks[task_id]
        attempt = Attempt(
            attempt_id=attempt_id, task_id=task_id, site=site, number=record.attempts + 1,
            submitted_at=time.time(), predicted_s=predicted_s,
        )
        detail = f"attempt {attempt.number}; {why}" if why else f"attempt {attempt.number}"
        self._move(record, TaskState.SUBMITTED, attempt=attempt, detail=detail)
        record.attempts += 1
        record.tries += 1
        record.current = attempt
        record.last_site = site
        self.attempts[attempt_id] = attempt
        return attempt

    def start_hedge(self, task_id: TaskId, site: SiteName, attempt_id: AttemptId, *,
                    predicted_s: float | None = None) -> Attempt:
        """A second attempt of a SUBMITTED task, queued at another `site` while the first still waits.

        It uses no retry: whichever of the two starts first is the task's try (``_race``).
        """
        record = self.tasks[task_id]
        if record.state is not TaskState.SUBMITTED or record.hedge is not None or record.current is None:
            raise TransitionError(f"task {task_id} ({record.state.value}) cannot be hedged; this is a bug in "
                                  "metasched, please report it with the campaign journal.")
        attempt = Attempt(attempt_id=attempt_id, task_id=task_id, site=site, number=record.attempts + 1,
                          submitted_at=time.time(), predicted_s=predicted_s)
        record.attempts += 1
        record.hedge = attempt
        self.attempts[attempt_id] = attempt
        return attempt

    def take_settled(self) -> list[Settled]:
        """The races settled since the last call (the service cancels the losers and notes why)."""
        out, self.settled = self.settled, []
        return out

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
        self._release_dependents(record)
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
        record = self._current(attempt_id, lost=True)
        if record is None:
            return False
        self._end_attempt(attempt_id, AttemptState.LOST)
        if record.current is not None and record.current.attempt_id != attempt_id:
            record.hedge = None  # it was the hedge: the task goes on with its first attempt
            return True
        hedge = record.hedge
        if hedge is not None:  # the hedge goes on in its place (and has its try)
            self.settled.append(Settled(winner=hedge, loser=self.attempts[attempt_id]))
            record.current, record.hedge, record.last_site = hedge, None, hedge.site
            return True
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

    def cancel(self, task_id: TaskId) -> list[Attempt]:
        """Cancel a task; returns its live attempts (for the actor to cancel at their sites)."""
        record = self.tasks[task_id]
        if record.state.terminal:
            return []
        live = record.current if record.state in (TaskState.SUBMITTED, TaskState.RUNNING) else None
        hedge, record.hedge = record.hedge, None
        for attempt in (live, hedge):
            if attempt is not None:
                self._end_attempt(attempt.attempt_id, AttemptState.CANCELLED)
        self._discard_ready(record)
        record.error = TaskCancelledError(
            f"task {record.spec.name!r} ({task_id}) was cancelled.", task_id=task_id,
            task_name=record.spec.name,
        )
        self._move(record, TaskState.CANCELLED, attempt=live, detail="cancelled by user")
        record.current = None
        self._fail_dependents_of(record)
        return [a for a in (live, hedge) if a is not None]

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

    def _current(self, attempt_id: AttemptId, *, lost: bool = False) -> TaskRecord | None:
        """The task whose current attempt this is, or None (the outcome is then ignored).

        The task's hedge counts as current: it started (or ended) first, so it wins the race and the
        first attempt is settled as the loser (``lost``: it was lost instead, and settles nothing).
        """
        attempt = self.attempts.get(attempt_id)
        if attempt is None:
            return None
        record = self.tasks[attempt.task_id]
        if record.state not in (TaskState.SUBMITTED, TaskState.RUNNING) or record.current is None:
            return None
        if record.hedge is not None and attempt_id in (record.hedge.attempt_id, record.current.attempt_id):
            if not lost:
                self._race(record, attempt)
            return record
        return record if record.current.attempt_id == attempt_id else None

    def _race(self, record: TaskRecord, winner: Attempt) -> None:
        """`winner` (the current attempt or the hedge) started first: the other is cancelled."""
        loser = record.hedge if winner is record.current else record.current
        assert loser is not None  # noqa: S101  (called only while the task has both)
        record.current, record.hedge, record.last_site = winner, None, winner.site
        self._end_attempt(loser.attempt_id, AttemptState.CANCELLED)
        self.settled.append(Settled(winner=winner, loser=loser))

    def _end_attempt(self, attempt_id: AttemptId, state: AttemptState) -> None:
        attempt = self.attempts[attempt_id]
        attempt.state = state
        attempt.ended_at = time.time()

    def _finish_failed(self, record: TaskRecord, error: TaskError, *, attempt: Attempt | None) -> None:
        if record.hedge is not None and record.current is not None:  # (failed by a dependency, cancelled)
            self._race(record, record.current)
        record.error = error
        self._move(record, TaskState.FAILED, attempt=attempt, detail=error.message)
        record.current = None
        self._fail_dependents_of(record)
