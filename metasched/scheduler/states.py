"""Task states and the explicit table of allowed transitions."""

from __future__ import annotations

import enum


class TaskState(enum.Enum):
    """Where a task is in its life. DONE, FAILED and CANCELLED are terminal."""

    PENDING = "pending"  # waiting for dependencies
    READY = "ready"  # dependencies done; waiting for a site with room
    STAGING = "staging"  # placed at a site; waiting for its input data to be copied there
    SUBMITTED = "submitted"  # an attempt was handed to a site agent
    RUNNING = "running"  # the site reports the attempt running
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        """True for DONE, FAILED and CANCELLED."""
        return self in TERMINAL


TERMINAL = frozenset({TaskState.DONE, TaskState.FAILED, TaskState.CANCELLED})

ALLOWED: dict[TaskState, frozenset[TaskState]] = {
    TaskState.PENDING: frozenset({TaskState.READY, TaskState.FAILED, TaskState.CANCELLED}),
    TaskState.READY: frozenset(
        {TaskState.STAGING, TaskState.SUBMITTED, TaskState.FAILED, TaskState.CANCELLED}),
    TaskState.STAGING: frozenset(
        {TaskState.SUBMITTED, TaskState.READY, TaskState.FAILED, TaskState.CANCELLED}),
    TaskState.SUBMITTED: frozenset(
        {TaskState.RUNNING, TaskState.READY, TaskState.DONE, TaskState.FAILED, TaskState.CANCELLED}
    ),
    TaskState.RUNNING: frozenset({TaskState.READY, TaskState.DONE, TaskState.FAILED, TaskState.CANCELLED}),
    TaskState.DONE: frozenset(),
    TaskState.FAILED: frozenset(),
    TaskState.CANCELLED: frozenset(),
}


class AttemptState(enum.Enum):
    """One try of a task at one site."""

    SUBMITTED = "submitted"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    LOST = "lost"  # the site no longer knows it (worker died, scheduler restarted, job vanished)
    CHECKPOINTED = "checkpointed"  # stopped with a checkpoint; the next attempt restores from it
