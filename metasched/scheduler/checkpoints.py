"""Steering on the scheduler's side: requests from the journal, cancel, checkpoints, migration, drain.

A mixin of ``SchedulerService`` (it uses the service's core, agents, data plane and journal). Other
processes (the CLI) leave requests in the journal, answered here about once a second. A task
submitted with ``checkpoint=...`` can be asked for a restart point (it goes on) or to move to another
site (it stops with a checkpoint, and the next attempt, pinned to the target, restores from it). The
task row keeps the current checkpoint and the target (``_moves``), so a restarted scheduler resumes a
move or rolls back to the last good checkpoint.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from functools import partial

from metasched.data.objects import DataRef
from metasched.data.plane import DataPlane
from metasched.errors import ConfigurationError, MetaschedError, SiteAgentError
from metasched.journal import Journal
from metasched.journal_schema import Note, RequestKind
from metasched.outcomes import Checkpointed, CheckpointReason
from metasched.placement import PlacementPolicy, infeasibility
from metasched.records import AttemptId, CheckpointKind, SiteName, TaskId
from metasched.scheduler.core import SchedulerCore
from metasched.scheduler.states import TaskState
from metasched.scheduler.task_records import Attempt, TaskRecord
from metasched.sites.base import CheckpointingAgent, SiteAgent

_REQUEST_POLL_S = 1.0  # how often the journal is read for requests from other processes
_REFUSALS = (ConfigurationError, SiteAgentError)  # why a request is refused: the task's state, or its site's


class CheckpointRequests:
    """The steering part of the scheduler service: cancel, checkpoint, migrate, drain (see above)."""

    core: SchedulerCore
    agents: dict[SiteName, SiteAgent]
    data: DataPlane | None
    journal: Journal
    _moves: dict[TaskId, tuple[str | None, str | None]]
    drained: set[SiteName]
    policy: PlacementPolicy
    _ended_attempts: list[Attempt]
    _notes: list[Note]

    _last_requests: float

    def _flush(self) -> None:
        raise NotImplementedError  # the service's

    def cancel(self, task_ids: Sequence[TaskId]) -> int:
        """Cancel tasks (and, through dependency failure, what depends on them). Returns how many."""
        by_site: dict[SiteName, list[Attempt]] = defaultdict(list)
        cancelled = 0
        for task_id in task_ids:
            if task_id not in self.core.tasks or self.core.tasks[task_id].state.terminal:
                continue
            live = self.core.cancel(task_id)
            if self.data is not None:
                self.data.transfers.forget(task_id)
            cancelled += 1
            for attempt in live:
                by_site[attempt.site].append(attempt)
                self._ended_attempts.append(attempt)
        for site, attempts in by_site.items():
            self._cancel_at(site, attempts)
        self._flush()
        return cancelled

    def _cancel_at(self, site: SiteName, attempts: Sequence[Attempt]) -> None:
        """Ask `site` to stop these (cancelled) attempts; if it fails, each says so in its notes.

        Their outcomes, whenever the site reports them, are ignored: the tasks stay cancelled, and the
        other sites are still asked (before, a site whose command failed ended the scheduler's loop).
        """
        try:
            self.agents[site].cancel([a.attempt_id for a in attempts])
        except MetaschedError as exc:
            self._notes.extend(Note(task_id=a.task_id, attempt_id=a.attempt_id, site=site, at=time.time(),
                                    note=f"cancelling it failed: {exc}") for a in attempts)

    def _handle_requests(self) -> bool:
        """Act on requests other processes left in the journal (e.g. `metasched cancel`), once a second."""
        now = time.monotonic()
        if now - self._last_requests < _REQUEST_POLL_S:
            return False
        self._last_requests = now
        requests = self.journal.take_requests()
        if not requests:
            return False
        by_name: dict[str, list[TaskId]] = defaultdict(list)
        for task_id, record in self.core.tasks.items():
            by_name[record.spec.name].append(task_id)
        for request in requests:
            name, target = request.task_name, SiteName(request.target or "")
            match request.kind:
                case RequestKind.CANCEL:
                    targets = list(self.core.tasks) if name is None else by_name.get(name, [])
                    answer = f"ok: cancelled {self.cancel(targets)} task(s)"
                case RequestKind.DRAIN | RequestKind.UNDRAIN:
                    answer = self._answer(partial(self.drain, target,
                                                  undo=request.kind is RequestKind.UNDRAIN))
                case RequestKind.CHECKPOINT:
                    answer = self._for_each_live(name, by_name, self.checkpoint)
                case RequestKind.MIGRATE:
                    answer = self._for_each_live(name, by_name, partial(self.migrate, site=target))
            self.journal.answer(request.request_id, answer)
        return True

    def drain(self, site: SiteName, *, undo: bool = False) -> str:
        """Stop placing work at `site` and move its running checkpointable tasks elsewhere.

        Tasks that cannot be checkpointed run to their end there. With undo, the site takes work again.
        """
        if site not in self.agents:
            raise ConfigurationError(f"no site {site!r} in this campaign ({', '.join(self.agents)}).")
        if undo:
            self.drained.discard(site)
            self.journal.set_meta("drained", sorted(self.drained))
            return f"site {site} takes new work again"
        self.drained.add(site)
        self.journal.set_meta("drained", sorted(self.drained))
        loads = [self.agents[s].load() for s in self.agents if s not in self.drained]
        moved, stayed, unanswered = [], [], ""
        for task_id, record in self.core.tasks.items():
            live = record.current
            if live is None or live.site != site or record.state.terminal:
                continue
            targets = [load for load in loads if infeasibility(record.spec, load) is None]
            target = self.policy.choose(record.spec, targets) if record.spec.checkpoint and targets else None
            if target is None or unanswered:  # a site that did not answer: the rest would wait for it again
                stayed.append(record.spec.name)
                continue
            try:
                self.migrate(task_id, target)
                moved.append(f"{record.spec.name} -> {target}")
            except (ConfigurationError, SiteAgentError) as exc:
                stayed.append(record.spec.name)
                unanswered = str(exc) if isinstance(exc, SiteAgentError) else ""
        parts = [f"site {site} drained: no new work"]
        if moved:
            parts.append(f"moving {', '.join(moved)}")
        if stayed:
            parts.append(f"finishing there: {', '.join(stayed)}")
        if unanswered:
            parts.append(f"{site} did not take the request ({unanswered}): drain it again to move them")
        return "; ".join(parts)

    def checkpoint(self, task_id: TaskId) -> str:
        """Take a restart point of a running CRIU task now; it goes on where it runs.

        If the attempt is later lost, the next attempt restores from the newest restart point.
        """
        record = self.core.tasks.get(task_id)
        if record is None:
            raise ConfigurationError(f"no task {task_id!r} in this campaign.")
        name = f"task {record.spec.name!r} ({task_id})"
        if record.spec.checkpoint is not CheckpointKind.CRIU:
            raise ConfigurationError(f"{name}: on-demand checkpoints need checkpoint='criu' (cooperative "
                                     "tasks save when they choose).")
        live = record.current
        if record.state is not TaskState.RUNNING or live is None:
            raise ConfigurationError(f"{name} is {record.state.value}, not running.")
        if not self._ask_checkpoint(name, live, stop=False):
            raise ConfigurationError(f"{name}: its attempt at {live.site} cannot take a checkpoint now.")
        return f"{name}: restart point requested at {live.site}"

    def migrate(self, task_id: TaskId, site: SiteName) -> str:
        """Checkpoint a running task and continue it at `site`; returns what was done.

        Raises ConfigurationError saying why when the task cannot be migrated there.
        """
        record = self.core.tasks.get(task_id)
        if record is None:
            raise ConfigurationError(f"no task {task_id!r} in this campaign.")
        name = f"task {record.spec.name!r} ({task_id})"
        if record.spec.checkpoint is None:
            raise ConfigurationError(f"{name} was not submitted with checkpoint= ('criu' or 'cooperative'): "
                                     "it cannot migrate.")
        if site not in self.agents:
            raise ConfigurationError(f"{name}: no site {site!r} in this campaign ({', '.join(self.agents)}).")
        reason = infeasibility(record.spec, self.agents[site].load())
        if reason is not None:
            raise ConfigurationError(f"{name} cannot run at {site}: {reason}.")
        live = record.current
        if record.state not in (TaskState.SUBMITTED, TaskState.RUNNING) or live is None:
            raise ConfigurationError(f"{name} is {record.state.value}, not running: nothing to migrate.")
        if record.hedge is not None:
            raise ConfigurationError(f"{name} is queued at {live.site} and {record.hedge.site} (hedged): "
                                     "move it once one of them has started.")
        if live.site == site:
            raise ConfigurationError(f"{name} already runs at {site}.")
        if not isinstance(self.agents[live.site], CheckpointingAgent):
            raise ConfigurationError(f"{name} runs at {live.site}, whose agent cannot checkpoint.")
        if not self._ask_checkpoint(name, live, stop=True):
            raise ConfigurationError(f"{name}: its attempt at {live.site} is not running or already ended.")
        record.migrate_to = site  # its checkpointed end is reported at a later poll, never during the ask
        self._moves[task_id] = (record.checkpoint, site)
        self._flush()
        return f"{name}: checkpoint requested at {live.site}, continuing at {site}"

    def _ask_checkpoint(self, name: str, live: Attempt, *, stop: bool) -> bool:
        """Ask the agent of `live`'s site for a checkpoint (see ``CheckpointingAgent``); whether it asked.

        SiteAgentError (the site's doing: it does not answer, its command failed) names the task.
        """
        agent = self.agents[live.site]
        if not isinstance(agent, CheckpointingAgent):
            return False
        try:
            return bool(agent.checkpoint([live.attempt_id], stop=stop))
        except SiteAgentError as exc:
            raise SiteAgentError(f"{name}: {exc}", site=live.site, transient=exc.transient) from exc

    def _answer(self, act: Callable[[], str]) -> str:
        """A journal request's answer: "ok: <what was done>" or "refused: <why>"."""
        try:
            return "ok: " + act()
        except _REFUSALS as exc:
            return f"refused: {exc}"

    def _for_each_live(self, name: str | None, by_name: dict[str, list[TaskId]],
                       act: Callable[[TaskId], str]) -> str:
        """Apply `act` to every unfinished task called `name`; the request's answer.

        "ok" with what was done (and what was refused) if anything was done, "refused" with why otherwise.
        """
        live = [t for t in by_name.get(name or "", []) if not self.core.tasks[t].state.terminal]
        if not live:
            return f"refused: no unfinished task named {name!r}"
        done: list[str] = []
        refused: list[str] = []
        for task_id in live:
            try:
                done.append(act(task_id))
            except _REFUSALS as exc:
                refused.append(str(exc))
        if not done:
            return "refused: " + "; ".join(refused)
        return "ok: " + "; ".join([*done, *(f"refused: {why}" for why in refused)])

    def _saved(self, attempt_id: AttemptId, ref: DataRef) -> None:
        """A running attempt saved a restart point (cooperative): it replaces the previous one."""
        attempt = self.core.attempts.get(attempt_id)
        if attempt is None or self.data is None:
            return
        record = self.core.tasks[attempt.task_id]
        if record.current is None or record.current.attempt_id != attempt_id:
            return
        previous, record.checkpoint = record.checkpoint, ref.object_id
        self.data.checkpoint_stored(ref)
        self._replaced(record, previous)

    def _checkpointed(self, attempt_id: AttemptId, record: TaskRecord, outcome: Checkpointed) -> bool:
        """An attempt stopped with a checkpoint: record the archive, drop the previous one, requeue."""
        ref = outcome.ref
        previous = record.checkpoint
        if self.data is not None:
            self.data.checkpoint_stored(ref)
        site = self.core.attempts[attempt_id].site
        if outcome.reason is CheckpointReason.WALLTIME and record.migrate_to is None:
            record.avoid_site = site  # its time is up there: continue where it can start afresh
        applied = self.core.attempt_checkpointed(attempt_id, ref.object_id, detail=outcome.detail)
        if applied:
            self._replaced(record, previous)
        return applied

    def _replaced(self, record: TaskRecord, previous: str | None) -> None:
        """The task's checkpoint is now `record.checkpoint`: journal it, evict the one it replaced."""
        self._moves[record.spec.task_id] = (record.checkpoint, record.migrate_to)
        if previous is not None and previous != record.checkpoint and self.data is not None:
            self.data.release([previous], keep_origin=False)

    def _restore_failed(self, attempt_id: AttemptId, record: TaskRecord, site: SiteName, why: str) -> bool:
        """A restore from a checkpoint failed: fall back to the next backend, a restart from scratch."""
        checkpoint, record.checkpoint = record.checkpoint, None
        self._moves[record.spec.task_id] = (None, None)
        if checkpoint is not None and self.data is not None:
            self.data.release([checkpoint], keep_origin=False)
        return self.core.attempt_lost(
            attempt_id, counts_as_try=False,
            reason=f"restore from checkpoint failed at {site} ({why}); restarting from scratch")
