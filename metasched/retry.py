"""Which failed tasks `retry` runs again, and their copies (pure: no journal, no scheduler)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from metasched.data.serializers import dumps, loads, serializer_of
from metasched.journal_schema import StoredTask
from metasched.records import TaskId, TaskKind, TaskRef, TaskSpec, replace_nested
from metasched.scheduler.states import TaskState


def retry_selection(stored: Sequence[StoredTask], names: Sequence[str] | None) -> set[TaskId]:
    """Failed/cancelled tasks to retry.

    The named ones (all if none), their failed ancestors, and the failed tasks downstream of them.
    """
    failed = {t.spec.task_id for t in stored if t.state in (TaskState.FAILED, TaskState.CANCELLED)}
    by_id = {t.spec.task_id: t for t in stored}
    chosen = {tid for tid in failed if names is None or by_id[tid].spec.name in names}
    stack = list(chosen)
    while stack:
        for dep in by_id[stack.pop()].spec.depends_on:
            if dep in failed and dep not in chosen:
                chosen.add(dep)
                stack.append(dep)
    for task in stored:  # in submission order, so chains of dependents are covered
        if task.spec.task_id in failed and any(d in chosen for d in task.spec.depends_on):
            chosen.add(task.spec.task_id)
    return chosen


def retried(spec: TaskSpec, replacements: dict[TaskId, TaskId]) -> TaskSpec:
    """A copy of `spec` under its new id, depending on the new copies of its retried dependencies."""
    deps = tuple(replacements.get(d, d) for d in spec.depends_on)
    payload = spec.payload
    if spec.kind is TaskKind.FUNCTION and deps != spec.depends_on:
        args, kwargs = loads(payload)
        remap = lambda ref: TaskRef(replacements.get(ref.task_id, ref.task_id))  # noqa: E731
        payload = dumps((replace_nested(args, TaskRef, remap), replace_nested(kwargs, TaskRef, remap)),
                        serializer_of(payload))
    return dataclasses.replace(spec, task_id=replacements[spec.task_id], depends_on=deps, payload=payload)
