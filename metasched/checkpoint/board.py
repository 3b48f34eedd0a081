"""Cooperative checkpoints of attempts that run as Ray tasks: a local site's, or a pilot block's.

A batch job's worker hears "stop" as a signal and leaves each save in its attempt directory. An attempt in
a Ray task has neither, so its agent keeps one small actor, the **board**, on the scheduler's node:

- the agent posts stop requests there (a migration, a drain: ``Board.stop``);
- the task's ``Checkpoint`` reports its saves there, at most every ``REPORT_EVERY_S`` (a round trip costs
  1-2 ms), and hears in the same call whether it was asked to stop (``Board.saved``), so a stop costs
  the task nothing between saves; a task that saves more often is heard at its first save a second
  after the last report;
- the agent collects the saves with its poll (``Board.take``): the scheduler keeps the newest as the
  task's restart point, as it does a batch job's.

The attempt also stops at its first save past a deadline (``Steering.stop_at``): a pilot block's end, less
a lead, and its own walltime, less the same lead. No board call is needed for that.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from metasched.checkpoint.cooperative import Checkpoint
from metasched.data.objects import DataContext, DataRef
from metasched.outcomes import CheckpointReason
from metasched.records import TaskSpec

ANSWER_TIMEOUT_S = 10.0  # how long a save waits for the board before it goes on without its answer
REPORT_EVERY_S = 1.0  # a save is reported to the board this long after the last report


class Board:
    """The actor: stop requests posted by an agent, saves reported by its attempts."""

    def __init__(self) -> None:
        self._stop: set[str] = set()
        self._saved: dict[str, DataRef] = {}

    def stop(self, attempt_ids: Sequence[str]) -> None:
        """Ask these attempts to stop at their next save."""
        self._stop.update(attempt_ids)

    def saved(self, attempt_id: str, ref: DataRef) -> bool:
        """An attempt saved `ref`; whether it was asked to stop."""
        self._saved[attempt_id] = ref
        return attempt_id in self._stop

    def take(self, done: Sequence[str]) -> dict[str, DataRef]:
        """The newest save of each attempt since the last take; forget the attempts that are `done`."""
        saved, self._saved = self._saved, {}
        self._stop.difference_update(done)
        return saved


def start_board(ray: Any, name: str) -> Any:
    """A board actor called `name` on this node (the scheduler's, so it ends with the scheduler)."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = NodeAffinitySchedulingStrategy(node_id=ray.get_runtime_context().get_node_id(), soft=False)
    actor = ray.remote(num_cpus=0, max_restarts=0)(Board)
    return actor.options(name=name, scheduling_strategy=here).remote()


@dataclass(frozen=True, slots=True, kw_only=True)
class Steering:
    """What a cooperative attempt in a Ray task is handed: its board, restart point and deadline."""

    board: str  # the board actor's name
    restore: DataRef | None = None
    stop_at: float | None = None  # time.time() past which the next save stops the attempt (a block's end)
    lead_s: float = 0.0  # how long before its walltime the attempt stops at a save

    def checkpoint(self, attempt_id: str, spec: TaskSpec, data: DataContext | None) -> Checkpoint:
        """The ``ckpt`` handle of this attempt, from now on."""
        return Checkpoint(attempt_id=attempt_id, data=data, attempt=None, restore=self.restore,
                          steer=BoardLink(self, attempt_id, spec.resources.walltime_s))


class BoardLink:
    """An attempt's side of the board: reports its saves, says when to stop."""

    def __init__(self, steering: Steering, attempt_id: str, walltime_s: float | None) -> None:
        self._name = steering.board
        self._attempt_id = attempt_id
        self._board: Any = None
        self._reported = -math.inf
        ends = [steering.stop_at] if steering.stop_at is not None else []
        if walltime_s:  # stop at a save `lead` before the walltime (half of it if that is shorter)
            ends.append(time.time() + max(walltime_s - steering.lead_s, walltime_s / 2))
        self.stop_at = min(ends) if ends else None

    def saved(self, ref: DataRef) -> CheckpointReason | None:
        """Report `ref` to the board (at most every REPORT_EVERY_S); why the attempt should stop now."""
        now = time.monotonic()
        if now - self._reported >= REPORT_EVERY_S:
            self._reported = now
            if self._asked(ref):
                return CheckpointReason.REQUESTED
        if self.stop_at is not None and time.time() >= self.stop_at:
            return CheckpointReason.WALLTIME
        return None

    def _asked(self, ref: DataRef) -> bool:
        import ray

        try:
            if self._board is None:
                self._board = ray.get_actor(self._name)
            return bool(ray.get(self._board.saved.remote(self._attempt_id, ref), timeout=ANSWER_TIMEOUT_S))
        except Exception as exc:  # the save is stored all the same; the task goes on, and says why
            print(f"metasched: checkpoint {ref.object_id} not reported to the scheduler ({exc})",
                  file=sys.stderr)
            return False
