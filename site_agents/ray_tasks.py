"""Attempts running as Ray tasks on the campaign's Ray cluster: what the local site and pilot blocks share.

An attempt (or a pack of short ones, run one after the other) is one Ray task asking for a custom
resource: ``site:<name>`` on a local site, ``block:<id>`` in a pilot block. ``RayTasks`` keeps the tasks
in flight, collects every finished one with a single ``ray.wait`` and turns what Ray says into outcomes:
a cancelled task is Cancelled, a dead worker or node is Lost (charged a retry only when the attempt ran
alone and nothing outside it was to blame).

Cooperative attempts are steered through a board actor (``metasched.checkpoint.board``), started with
the first of them: ``ask_stop`` posts a stop request, each poll (at most every ``SAVES_REFRESH_S``)
collects their saves as restart points.
"""

from __future__ import annotations

import collections
import logging
import pickle
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from metasched.checkpoint.board import ANSWER_TIMEOUT_S, Steering, start_board
from metasched.outcomes import Cancelled, LossReason, Lost, TaskOutcome
from metasched.records import AttemptId, CheckpointKind, TaskKind
from metasched.sites.base import AttemptUpdate, Submission
from metasched.worker import run_packed

log = logging.getLogger(__name__)

_DURATION_SMOOTHING = 0.2
PACK_BELOW_S = 0.02  # attempts shorter than this (on average) share Ray tasks
MAX_DEPTH = 64  # attempts handed to Ray per core at most (very short tasks)
STOP_LEAD_S = 10.0  # a cooperative attempt stops at its first save this long before its walltime
SAVES_REFRESH_S = 1.0  # how often the board's saves are collected while cooperative attempts run


def depth(mean_run_s: float | None, *, backlog_s: float, least: int, most: float = MAX_DEPTH) -> float:
    """Attempts per core to hand Ray ahead: ``backlog_s`` of work at the recent mean run time.

    At least `least` (also while no attempt has ended) and at most `most`: short tasks stream through
    Ray, long ones stay in a queue where they can still go elsewhere.
    """
    if not mean_run_s:
        return least
    return min(most, max(least, backlog_s / mean_run_s))


@dataclass(slots=True, kw_only=True)
class Pack:
    """One Ray task running one or more attempts in sequence."""

    attempt_ids: list[AttemptId]
    submitted_at: float
    group: str = ""  # the pilot block it runs in ("" on a local site)
    cancelled: set[AttemptId] = field(default_factory=set)
    container: bool = False  # one attempt run by run_in_docker (its answer is one pickled outcome)
    lost: Lost | None = None  # the site lost the place it ran (a pilot block ended): not the task's fault


class RayTasks:
    """Ray tasks in flight for one site, by attempt; ``poll`` collects the finished ones in one call."""

    def __init__(self, ray: Any, *, on_orphan: Callable[[Pack], None] | None = None, site: str = "",
                 lead_s: float = STOP_LEAD_S) -> None:
        self._ray = ray
        self._remote = ray.remote(max_retries=0, num_cpus=0)(run_packed)
        self._remotes: dict[tuple[tuple[tuple[str, float], ...], int], Any] = {}
        self._packs: dict[Any, Pack] = {}
        self._by_attempt: dict[AttemptId, Any] = {}
        self._in_group: collections.Counter[str] = collections.Counter()  # attempts in flight per group
        self._on_orphan = on_orphan
        self._warming: list[Any] = []
        self.mean_run_s: float | None = None
        self._board: Any = None
        self._board_name = f"metasched-checkpoints-{site}-{secrets.token_hex(4)}"
        self._lead_s = lead_s
        self._steered: set[AttemptId] = set()  # cooperative attempts in flight
        self._steered_done: list[AttemptId] = []  # ... that ended since the board was last read
        self._saves_read = 0.0

    def __len__(self) -> int:
        return len(self._by_attempt)

    def __contains__(self, attempt_id: object) -> bool:
        """Whether the attempt is in flight here (its Ray task has not ended)."""
        return attempt_id in self._by_attempt

    @property
    def packs(self) -> int:
        """Ray tasks in flight."""
        return len(self._packs)

    def pack_size(self, count: int, cores: int, max_pack: int, group: str = "") -> int:
        """How many of `count` ready function attempts share one Ray task on `cores` cores.

        Once the mean run time of recent attempts is below ``PACK_BELOW_S``, up to `max_pack` with the same
        request share one (run one after the other), which amortizes Ray's per-task overhead, leaving at
        least two packs per core of the work in flight on those cores (`group`: a pilot block's). That work
        counts the attempts already there: a scheduler loop that comes back quickly hands over a few
        attempts at a time, which must not become packs of one each while hundreds run.
        """
        if self.mean_run_s is None or self.mean_run_s >= PACK_BELOW_S:
            return 1
        return max(1, min(max_pack, (count + self.in_group(group)) // (2 * max(1, cores))))

    def start(self, subs: Sequence[Submission], resource: str, *, cores: int, max_pack: int,
              group: str = "", stop_at: float | None = None) -> None:
        """Run `subs` on `cores` cores that offer `resource` (one unit per core an attempt asks for).

        Attempts with the same request share a Ray task where ``pack_size`` says so (short function
        attempts); commands and longer attempts get one each. Cooperative attempts stop at their first
        save past `stop_at` (``time.time()``; a pilot block's end).
        """
        groups: dict[tuple[int, int, bool], list[Submission]] = collections.defaultdict(list)
        for sub in subs:
            res = sub.spec.resources
            groups[(res.cores, res.gpus, sub.spec.kind is TaskKind.FUNCTION)].append(sub)
        for (need, gpus, is_function), same in groups.items():
            size = self.pack_size(len(same), cores, max_pack, group) if is_function else 1
            for i in range(0, len(same), size):
                self.run(same[i:i + size], {resource: float(need)}, gpus=gpus, group=group, stop_at=stop_at)

    def run(self, subs: Sequence[Submission], resources: dict[str, float], *, gpus: int = 0,
            group: str = "", stop_at: float | None = None) -> None:
        """Start one Ray task running `subs` in sequence, asking for `resources` (and `gpus`)."""
        functions = {s.spec.function_digest: s.function for s in subs
                     if s.spec.function_digest and s.function is not None}
        items = [(s.attempt_id, s.spec, s.dependency_results, s.data, self._steering(s, stop_at))
                 for s in subs]
        ref = self._remote_for(resources, gpus).remote(
            pickle.dumps((functions, items), protocol=pickle.HIGHEST_PROTOCOL))
        self.track(ref, [s.attempt_id for s in subs], group=group)

    def _steering(self, sub: Submission, stop_at: float | None) -> Steering | None:
        """A cooperative attempt's board, restart point and deadline (None for any other attempt)."""
        if sub.spec.checkpoint is not CheckpointKind.COOPERATIVE:
            return None
        if self._board is None:
            self._board = start_board(self._ray, self._board_name)
        self._steered.add(sub.attempt_id)
        return Steering(board=self._board_name, restore=sub.restore, stop_at=stop_at, lead_s=self._lead_s)

    def ask_stop(self, attempt_ids: Sequence[AttemptId]) -> list[AttemptId]:
        """Ask these cooperative attempts in flight to stop at their next save; the ones asked."""
        asked = [a for a in attempt_ids if a in self._steered and a in self._by_attempt]
        if asked:
            self._board.stop.remote(asked)
        return asked

    def saves(self) -> list[AttemptUpdate]:
        """Restart points that cooperative attempts in flight saved since the last call, as updates.

        Read at most every ``SAVES_REFRESH_S``.
        """
        now = time.monotonic()
        if not (self._steered or self._steered_done) or now - self._saves_read < SAVES_REFRESH_S:
            return []
        self._saves_read = now
        done, self._steered_done = self._steered_done, []
        try:
            saved = self._ray.get(self._board.take.remote(done), timeout=ANSWER_TIMEOUT_S)
        except self._ray.exceptions.RayError as exc:  # the attempts still end with their last save
            log.warning("the checkpoint board %s did not answer: %s", self._board_name, exc)
            return []
        return [AttemptUpdate(attempt_id=AttemptId(a), checkpoint=ref) for a, ref in saved.items()
                if a in self._by_attempt]

    def warm(self, resources: dict[str, float], count: int) -> None:
        """Start `count` empty packs asking for `resources`, answers not awaited.

        Ray starts that many worker processes (importing metasched's worker) before an attempt needs one.
        """
        empty = pickle.dumps(({}, []), protocol=pickle.HIGHEST_PROTOCOL)
        self._warming = [self._remote_for(resources, 0).remote(empty) for _ in range(count)]

    def track(self, ref: Any, attempt_ids: list[AttemptId], *, group: str = "",
              container: bool = False) -> None:
        """Follow a Ray task started elsewhere (e.g. a container attempt)."""
        self._packs[ref] = Pack(attempt_ids=attempt_ids, submitted_at=time.monotonic(), group=group,
                                container=container)
        self._in_group[group] += len(attempt_ids)
        for attempt_id in attempt_ids:
            self._by_attempt[attempt_id] = ref

    def _remote_for(self, resources: dict[str, float], gpus: int) -> Any:
        """The Ray remote function with this resource request (``.options`` is costly: build it once)."""
        key = (tuple(sorted(resources.items())), gpus)
        remote = self._remotes.get(key)
        if remote is None:
            options: dict[str, Any] = {"resources": resources}
            if gpus:
                options["num_gpus"] = gpus
            remote = self._remotes[key] = self._remote.options(**options)
        return remote

    def poll(self) -> list[AttemptUpdate]:
        """Cooperative attempts' saves, then every finished pack (one ray.wait over all refs)."""
        updates = self.saves()
        if not self._packs:
            return updates
        refs = list(self._packs)
        ready, _ = self._ray.wait(refs, num_returns=len(refs), timeout=0)
        for ref in ready:
            pack = self._packs.pop(ref)
            self._in_group[pack.group] -= len(pack.attempt_ids)
            for attempt_id in pack.attempt_ids:
                self._by_attempt.pop(attempt_id, None)
                if attempt_id in self._steered:
                    self._steered.remove(attempt_id)
                    self._steered_done.append(attempt_id)
            updates.extend(self._collect(ref, pack))
        return updates

    def _collect(self, ref: Any, pack: Pack) -> list[AttemptUpdate]:
        ray = self._ray
        try:
            if pack.container:
                outcome: TaskOutcome = pickle.loads(ray.get(ref))  # noqa: S301  (our own worker's answer)
                return [AttemptUpdate(attempt_id=pack.attempt_ids[0], outcome=outcome)]
            results: list[tuple[AttemptId, TaskOutcome, float]] = pickle.loads(ray.get(ref))  # noqa: S301
        except ray.exceptions.TaskCancelledError:
            self._orphaned(pack)
            return [self._interrupted(a, pack, "cancelled") for a in pack.attempt_ids]
        except ray.exceptions.RayError as exc:  # worker died, node lost, object lost
            self._orphaned(pack)
            reason = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
            return [self._interrupted(a, pack, reason) for a in pack.attempt_ids]
        for _, _, run_s in results:
            if self.mean_run_s is None:
                self.mean_run_s = run_s
            else:
                self.mean_run_s += _DURATION_SMOOTHING * (run_s - self.mean_run_s)
        return [AttemptUpdate(attempt_id=a, outcome=outcome) for a, outcome, _ in results]

    def _orphaned(self, pack: Pack) -> None:
        if self._on_orphan is not None:
            self._on_orphan(pack)

    @staticmethod
    def _interrupted(attempt_id: AttemptId, pack: Pack, reason: str) -> AttemptUpdate:
        if attempt_id in pack.cancelled:
            return AttemptUpdate(attempt_id=attempt_id, outcome=Cancelled(detail=reason))
        if pack.lost is not None:
            return AttemptUpdate(attempt_id=attempt_id, outcome=pack.lost)
        # A neighbour in the pack was cancelled, or the worker died: not this task's fault if it
        # shared the pack; a lone attempt whose worker died is charged a retry.
        charge = len(pack.attempt_ids) == 1 and not pack.cancelled
        why = LossReason.NEIGHBOUR_STOPPED if pack.cancelled else LossReason.WORKER_DIED
        lost = Lost(reason=why, detail=reason, charge_retry=charge)
        return AttemptUpdate(attempt_id=attempt_id, outcome=lost)

    def cancel(self, attempt_ids: Sequence[AttemptId]) -> list[Pack]:
        """Force-cancel the Ray tasks of these attempts (kills their worker processes if running)."""
        hit = []
        for attempt_id in attempt_ids:
            ref = self._by_attempt.get(attempt_id)
            if ref is not None:
                self._packs[ref].cancelled.add(attempt_id)
                self._ray.cancel(ref, force=True)
                hit.append(self._packs[ref])
        return hit

    def lose_group(self, group: str, lost: Lost) -> int:
        """The place `group` ran is gone: its attempts come back as `lost` (at the next poll)."""
        count = 0
        for ref, pack in self._packs.items():
            if pack.group == group:
                pack.lost = lost
                self._ray.cancel(ref, force=True)
                count += len(pack.attempt_ids)
        return count

    def in_group(self, group: str) -> int:
        """Attempts in flight in `group`."""
        return self._in_group[group]

    def close(self) -> list[Pack]:
        """Cancel every task still in flight; returns their packs."""
        packs = list(self._packs.values())
        for ref in list(self._packs):
            self._ray.cancel(ref, force=True)
        if self._board is not None:
            self._ray.kill(self._board)
            self._board = None
        self._packs.clear()
        self._by_attempt.clear()
        self._in_group.clear()
        return packs
