"""The dependency graph of a campaign's tasks: who waits on whom, what became ready, what cannot run.

A mixin of ``SchedulerCore`` (it uses the core's tasks, ready queue and ``_move``). A task waits on its
unfinished dependencies (``waiting_on``) and is READY once they are all DONE; a failed or cancelled
task fails everything downstream of it, naming the task that caused it.
"""

from __future__ import annotations

import contextlib
from collections import deque
from typing import TYPE_CHECKING

from metasched.errors import DependencyError
from metasched.records import TaskId
from metasched.scheduler.states import TaskState

if TYPE_CHECKING:
    from metasched.scheduler.task_records import Attempt, TaskRecord


class DependencyGraph:
    """The dependency part of the scheduler core (see the module docstring)."""

    tasks: dict[TaskId, TaskRecord]
    ready: deque[TaskId]

    def _move(self, record: TaskRecord, new: TaskState, *, attempt: Attempt | None = None,
              detail: str = "") -> None:
        raise NotImplementedError  # the core's

    def fail_orphans(self) -> None:
        """After a restore: fail unfinished tasks downstream of a failed or cancelled task."""
        for record in list(self.tasks.values()):
            if record.state in (TaskState.FAILED, TaskState.CANCELLED):
                self._fail_dependents_of(record)

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

    def _release_dependents(self, record: TaskRecord) -> None:
        """`record` is DONE: its dependents waiting on nothing else become READY."""
        for dep_id in record.dependents or ():
            dependent = self.tasks[dep_id]
            if dependent.waiting_on:
                dependent.waiting_on.discard(record.spec.task_id)
            if dependent.state is TaskState.PENDING and not dependent.waiting_on:
                self._make_ready(dependent)

    def _make_ready(self, record: TaskRecord) -> None:
        self._move(record, TaskState.READY)
        self.ready.append(record.spec.task_id)

    def _discard_ready(self, record: TaskRecord) -> None:
        if record.state is TaskState.READY:
            with contextlib.suppress(ValueError):
                self.ready.remove(record.spec.task_id)

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
