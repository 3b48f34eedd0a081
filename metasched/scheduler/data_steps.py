"""The scheduler's side of the data plane: what a task reads, staging its inputs, evicting what is done with.

A mixin of ``SchedulerService`` (it uses the service's core and data plane). A task placed at a site
that lacks some of its stored inputs waits in STAGING while the transfer worker copies them; it is
submitted once they arrived, and fails naming the object and both stores if they could not be moved.
Objects no unfinished task needs are evicted as tasks finish.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from metasched.data.plane import DataPlane
from metasched.errors import DataTransferError
from metasched.records import SiteName, TaskId, TaskKind
from metasched.scheduler.core import SchedulerCore
from metasched.scheduler.states import TaskState
from metasched.scheduler.task_records import TaskRecord, Transition
from metasched.sites.base import Submission


class DataSteps:
    """The data part of the scheduler service (see the module docstring)."""

    core: SchedulerCore
    data: DataPlane | None

    def _start(self, task_id: TaskId, site: SiteName) -> Submission:
        raise NotImplementedError  # the service's

    def _submit_batches(self, batches: dict[SiteName, list[Submission]]) -> None:
        raise NotImplementedError  # the service's

    def _input_ids(self, record: TaskRecord) -> list[str]:
        """The stored objects a task reads, its checkpoint too (``after=`` edges of commands move no data)."""
        if self.data is None:
            return []
        spec = record.spec
        consumed = spec.depends_on if spec.kind is TaskKind.FUNCTION else ()
        stored = [d for d in consumed if d in self.data.tracker.replicas]
        ids = self.data.input_ids(spec, stored)
        return [*ids, record.checkpoint] if record.checkpoint is not None else ids

    def _staging_sites(self) -> dict[SiteName, int]:
        counts: dict[SiteName, int] = defaultdict(int)
        if self.data is not None and self.data.transfers.in_flight:
            for record in self.core.tasks.values():
                if record.state is TaskState.STAGING and record.last_site is not None:
                    counts[record.last_site] += 1
        return counts

    def _release_data(self, transitions: Sequence[Transition]) -> None:
        """Evict stored objects no unfinished task needs.

        That is a done task's big arguments, and the results of its dependencies once all their
        consumers are done (kept when marked keep=True).
        """
        data = self.data
        if data is None:
            return
        for transition in transitions:
            if transition.new is not TaskState.DONE:
                continue
            record = self.core.tasks[transition.task_id]
            spec = record.spec
            data.release([ref.object_id for ref in spec.inputs], keep_origin=False)
            if record.checkpoint is not None:  # done: its last checkpoint is of no further use
                data.release([record.checkpoint], keep_origin=False)
            for dep_id in spec.depends_on:
                dep = self.core.tasks[dep_id]
                if dep_id in data.tracker.replicas and all(
                        self.core.tasks[d].state is TaskState.DONE for d in dep.dependents or ()):
                    keep = dep.spec.keep or not data.settings.evict_intermediates
                    data.release([dep_id], keep_origin=keep)

    def _poll_transfers(self) -> bool:
        """Start tasks whose inputs arrived; fail those whose inputs could not be moved."""
        data = self.data
        if data is None or not data.transfers.in_flight:
            return False
        report = data.poll()
        batches: dict[SiteName, list[Submission]] = defaultdict(list)
        for task_id in report.ready:
            record = self.core.tasks[TaskId(task_id)]
            if record.state is TaskState.STAGING and record.last_site is not None:
                batches[record.last_site].append(self._start(record.spec.task_id, record.last_site))
        for task_id, source, target, why in report.failed:
            record = self.core.tasks[TaskId(task_id)]
            message = data.describe_failure(source, target, why)
            self.core.fail(record.spec.task_id, DataTransferError(
                f"task {record.spec.name!r} ({task_id}) did not start: {message}.", task_id=task_id,
                task_name=record.spec.name, object_id=source.object_id,
                source=data.where(source.store.store_id), target=data.where(target.store_id)))
        self._submit_batches(batches)
        return bool(report.arrived or report.ready or report.failed)

