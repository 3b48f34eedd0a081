"""What the scheduler tells drivers: terminal task events (a log they long-poll) and per-site counts."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from metasched.errors import RemoteTaskError, TaskError, WalltimeExceededError
from metasched.outcomes import Failed
from metasched.records import TaskId, TaskSpec
from metasched.scheduler.states import TaskState
from metasched.scheduler.task_records import TaskRecord


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskEvent:
    """A task reached a terminal state (sent to the driver to resolve its future)."""

    task_id: TaskId
    state: TaskState
    result: bytes | None = None
    error: TaskError | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SiteSummary:
    """Counts for one site (or for tasks not yet placed, under site ``"-"``)."""

    site: str
    queued: int
    running: int
    done: int
    failed: int
    predicted_wait_s: float | None = None  # a new one-core task's predicted wait at the site now
    problem: str = ""  # why the site takes no new work now ("" if it does)


class EventLog:
    """Terminal events in order; a driver reads those after its cursor, which acknowledges the ones before."""

    def __init__(self) -> None:
        self._events: list[TaskEvent] = []
        self._base = 0  # the cursor of self._events[0]

    def add(self, event: TaskEvent) -> None:
        """Append an event."""
        self._events.append(event)

    def since(self, cursor: int) -> tuple[int, list[TaskEvent]]:
        """(the new cursor, the events after `cursor`); events before it are dropped."""
        if cursor > self._base:
            drop = min(cursor - self._base, len(self._events))
            del self._events[:drop]
            self._base += drop
        start = max(0, cursor - self._base)
        return self._base + len(self._events), self._events[start:]


_COLUMN = {TaskState.PENDING: 0, TaskState.READY: 0, TaskState.STAGING: 0, TaskState.SUBMITTED: 1,
           TaskState.RUNNING: 1, TaskState.DONE: 2}


def site_summary(records: Iterable[TaskRecord]) -> list[SiteSummary]:
    """Per-site counts; tasks never placed are counted under site "-"."""
    rows: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for record in records:
        rows[record.last_site or "-"][_COLUMN.get(record.state, 3)] += 1
    return [SiteSummary(site=s, queued=r[0], running=r[1], done=r[2], failed=r[3]) for s,
            r in sorted(rows.items())]


def task_error(spec: TaskSpec, site: str, attempt: int, outcome: Failed) -> TaskError:
    """The error a user sees for a failed attempt: what failed, where, and (for walltime) what to do."""
    failure = outcome.failure
    where = f"at site {site} (attempt {attempt})"
    if failure.walltime_exceeded:
        return WalltimeExceededError(
            f"task {spec.name!r} ({spec.task_id}) was stopped {where}: {failure.message}. "
            "Raise its walltime or split the work.", task_id=spec.task_id, task_name=spec.name,
            stdout=failure.stdout, stderr=failure.stderr, files=failure.files)
    return RemoteTaskError(
        f"task {spec.name!r} ({spec.task_id}) failed {where}: {failure.error_type}: {failure.message}",
        task_id=spec.task_id, task_name=spec.name, site=site, error_type=failure.error_type,
        remote_traceback=failure.traceback, stdout=failure.stdout, stderr=failure.stderr, files=failure.files)
