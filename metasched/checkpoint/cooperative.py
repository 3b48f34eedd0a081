"""Cooperative checkpoints of Python function tasks: the task saves and loads its own state.

    @c.task(checkpoint="cooperative")
    def integrate(steps: int, ckpt: ms.Checkpoint) -> float:
        state = ckpt.load({"i": 0, "total": 0.0})
        for i in range(state["i"], steps):
            state = {"i": i + 1, "total": state["total"] + step(i)}
            if i % 100 == 0:
                ckpt.save(state)          # a restart point; stops the task here if a move was asked
        return state["total"]

The worker passes the handle as the keyword argument ``ckpt``. ``save`` pickles the state into the site's
store and records it where the agent picks it up: in a batch job, the attempt directory
(``AttemptDir.save_cooperative``); in a Ray task (a local site, a pilot block), the agent's board
(``metasched.checkpoint.board``). The scheduler keeps the latest as the task's checkpoint. When the
scheduler asked the attempt to stop (a migration, a drain: USR2 to a batch job, a word on the board), or
its time is nearly up (Slurm's USR1 before the walltime; a pilot block's end or the walltime in a Ray
task), the next ``save`` stores the state and ends the attempt; the next attempt, wherever it runs, gets
the state back from ``load``.
"""

from __future__ import annotations

import pickle
from typing import TYPE_CHECKING, Any, Protocol

from metasched.data.objects import DataContext, DataRef, put_blob, read_value
from metasched.outcomes import CheckpointReason

if TYPE_CHECKING:
    from metasched.attempt_dir import AttemptDir


class CheckpointStop(BaseException):  # noqa: N818  (a control-flow signal, like StopIteration)
    """Raised by ``Checkpoint.save`` to end the attempt after its state was stored."""

    def __init__(self, ref: DataRef, reason: CheckpointReason) -> None:
        super().__init__(reason.value)
        self.ref = ref
        self.reason = reason


class Steer(Protocol):
    """Where an attempt without an attempt directory reports its saves and hears when to stop."""

    def saved(self, ref: DataRef) -> CheckpointReason | None:
        """Report the save `ref`; why the attempt should stop now, if it should."""
        ...


class Checkpoint:
    """The handle a cooperative task receives as ``ckpt``."""

    def __init__(self, *, attempt_id: str, data: DataContext | None, attempt: AttemptDir | None,
                 restore: DataRef | None, steer: Steer | None = None) -> None:
        self._attempt_id = attempt_id
        self._data = data
        self._attempt = attempt
        self._restore = restore
        self._steer = steer
        self._saves = 0
        self.stop_reason: CheckpointReason | None = None  # set from a signal handler

    @property
    def restored(self) -> bool:
        """Whether this attempt continues from a saved state."""
        return self._restore is not None

    def load(self, default: Any = None) -> Any:
        """The state saved by an earlier attempt, or `default` on the first one."""
        if self._restore is None:
            return default
        ref = self._restore
        if self._data is not None:
            ref = self._data.inputs.get(ref.object_id, ref)
        return read_value(ref)

    def save(self, state: Any) -> None:
        """Store `state` as the task's restart point; ends the attempt if a stop was asked."""
        if self._data is None:
            raise RuntimeError("this site gives the task no store to save checkpoints in")
        self._saves += 1
        blob = pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
        ref = put_blob(self._data.store, blob, object_id=f"{self._attempt_id}.ckpt{self._saves}")
        if self._attempt is not None:
            self._attempt.save_cooperative(ref)
        if self._steer is not None:
            self.stop_reason = self.stop_reason or self._steer.saved(ref)
        if self.stop_reason is not None:
            raise CheckpointStop(ref, self.stop_reason)
