"""The scheduler loop without Ray around it: poll sites, apply outcomes, place ready tasks, journal.

``SchedulerService.step()`` does one round. Everything it decides is written to the journal in one
transaction before the driver hears of it, so what a user has seen finished is durable.
"""

from __future__ import annotations

import dataclasses
import time
from collections import defaultdict
from collections.abc import Sequence

from metasched.data.plane import DataPlane, MissingInput
from metasched.errors import (
    ConfigurationError,
    DataTransferError,
    PlacementError,
    SiteAgentError,
)
from metasched.faults import armed, crash_point
from metasched.journal import Journal
from metasched.journal_schema import FinalRecord, LiveAttempt, Note
from metasched.outcomes import Cancelled, Checkpointed, Failed, Lost, RestoreFailed, Succeeded, reported
from metasched.placement import PlacementPolicy, assume_unknowns, explain, feasible_sites, predicted_wait
from metasched.records import AttemptId, Resources, SiteLoad, SiteName, TaskId, TaskSpec, attempt_id_of
from metasched.scheduler.agents import at_once, close_agents, start_agents
from metasched.scheduler.blocks import BlockJournal
from metasched.scheduler.checkpoints import CheckpointRequests
from metasched.scheduler.core import SchedulerCore
from metasched.scheduler.data_steps import DataSteps
from metasched.scheduler.events import EventLog, SiteSummary, TaskEvent, site_summary, task_error
from metasched.scheduler.hedging import HEDGES_MADE, Hedging
from metasched.scheduler.site_health import DRAINED, SiteHealth
from metasched.scheduler.states import TERMINAL, TaskState
from metasched.scheduler.task_records import Attempt, TaskRecord
from metasched.sites.base import (
    AttemptUpdate,
    ReattachableAgent,
    ShapeAwareAgent,
    SiteAgent,
    Submission,
    SubmitsInBackground,
)

_MAX_DEFERRED_PER_STEP = 2000


class SchedulerService(CheckpointRequests, DataSteps, Hedging):
    """Owns the core, the agents, the policy and the journal of one campaign."""

    def __init__(self, *, journal: Journal, agents: Sequence[SiteAgent], policy: PlacementPolicy,
                 data: DataPlane | None = None) -> None:
        self.journal = journal
        self.data = data
        self.agents: dict[SiteName, SiteAgent] = {a.name: a for a in agents}
        self.policy = policy
        self.core = SchedulerCore()
        self.functions: dict[str, bytes] = {}
        self.events = EventLog()
        self._new_attempts: list[Attempt] = []
        self._native_ids: dict[AttemptId, str] = {}
        self._last_requests = 0.0
        self._ended_attempts: list[Attempt] = []
        self._moves: dict[TaskId, tuple[str | None, str | None]] = {}
        self._notes: list[Note] = []
        self.drained: set[SiteName] = set()
        self.blocks = BlockJournal(journal, agents)
        self.health = SiteHealth(journal)
        self._raced: list[TaskId] = []
        self._shapes: set[Resources] = set()  # told to ShapeAwareAgents

    # ---------------------------------------------------------------------------------- lifecycle
    def start(self, *, resume: bool) -> int:
        """Start every agent; when resuming, rebuild state from the journal. Returns tasks restored."""
        if resume:
            self.blocks.resume()
        start_agents(list(self.agents.values()))
        return self._restore() if resume else 0

    def close(self) -> None:
        """Close agents (cancelling what still runs there) and the journal."""
        try:
            close_agents(list(self.agents.values()))
        finally:
            self.blocks.record()  # how the pilot blocks ended (deleted with their agents)
            self.health.closed()
            self.journal.close()

    def _restore(self) -> int:
        self.functions.update(self.journal.functions())
        self.drained = {s for s in self.journal.get_meta("drained") or () if s in self.agents}
        if self.data is not None:
            self.data.restore(self.journal.replicas())
        self.hedges_made = self.journal.get_meta(HEDGES_MADE) or 0
        live: dict[TaskId, list[LiveAttempt]] = defaultdict(list)
        for live_attempt in self.journal.live_attempts():
            live[live_attempt.task_id].append(live_attempt)
        restored = 0
        reattached: list[LiveAttempt] = []
        unfinished: list[TaskSpec] = []
        for stored in self.journal.tasks():
            task_id = stored.spec.task_id
            if not stored.state.terminal:
                unfinished.append(stored.spec)
            attempts = sorted(live.get(task_id, ()), key=lambda a: a.number)  # two: it was hedged
            kept = [a for a in attempts if not stored.state.terminal and self._reattach(a, stored.spec)]
            # An attempt lost with the previous scheduler was our loss: it uses no retry.
            tries = stored.tries - (1 if attempts and not kept else 0)
            record = self.core.restore(stored.spec, state=stored.state, tries=max(0, tries),
                                       attempts=stored.attempts, result=stored.result, error=stored.error,
                                       site=stored.site, checkpoint=stored.checkpoint,
                                       migrate_to=stored.migrate_to)
            for attempt in kept:
                self.core.reattach(task_id, attempt.site, attempt.attempt_id, attempt.number)
                reattached.append(attempt)
            if not kept and record.state.terminal:
                self.events.add(TaskEvent(task_id=task_id, state=record.state,
                                              result=record.result, error=record.error))
            restored += 1
        found = {a.attempt_id for a in reattached}
        self.journal.mark_attempts_lost([a.attempt_id for attempts in live.values() for a in attempts
                                         if a.attempt_id not in found])
        self.core.fail_orphans()
        self._expect_shapes(unfinished)  # one call: an agent asks about at most a few new shapes at once
        self._flush()
        return restored

    def _reattach(self, attempt: LiveAttempt, spec: TaskSpec) -> bool:
        """Whether the attempt's site still has it and follows it again (batch sites: its job)."""
        agent = self.agents.get(attempt.site)
        return isinstance(agent, ReattachableAgent) and agent.reattach(attempt.attempt_id, spec,
                                                                       attempt.native_id or "")

    # ------------------------------------------------------------------------------------- inputs
    def submit(self, specs: Sequence[TaskSpec], functions: dict[str, bytes]) -> dict[TaskId, str]:
        """Accept tasks; returns the ones refused, with why. Accepted tasks are journaled at once."""
        self.functions.update(functions)
        accepted: list[TaskSpec] = []
        refused: dict[TaskId, str] = {}
        for spec in specs:
            if spec.function_digest is not None and spec.function_digest not in self.functions:
                refused[spec.task_id] = f"task {spec.name!r} refers to a function that was never sent"
                continue
            try:
                self.core.add(spec)
            except ConfigurationError as exc:
                refused[spec.task_id] = str(exc)
                continue
            accepted.append(spec)
            if self.data is not None:
                self.data.inputs_added(spec)
        self._expect_shapes(accepted)
        self._flush(new_tasks=accepted, functions=functions)
        return refused

    def _expect_shapes(self, specs: Sequence[TaskSpec]) -> None:
        """Tell agents that predict per resource shape about shapes they have not been told of."""
        new = list(dict.fromkeys(s.resources for s in specs if s.resources not in self._shapes))
        if not new:
            return
        self._shapes.update(new)
        for agent in self.agents.values():
            if isinstance(agent, ShapeAwareAgent):
                agent.expect(new)

    # --------------------------------------------------------------------------------------- loop
    def step(self) -> bool:
        """One round: poll every site once, apply what changed, place ready tasks, journal it all."""
        changed = False
        for agent in self.agents.values():
            updates = agent.poll()
            for update in updates:
                self._apply(agent.name, update)
            changed = changed or bool(updates)
        changed = self._poll_transfers() or changed
        changed = self._dispatch() or changed
        changed = self._handle_requests() or changed
        changed = self._hedge() or changed
        changed = self._settle() or changed
        self.blocks.record()
        self.health.record(self._loads)
        if changed or self.core.transitions:
            self._flush()
        return changed

    def _apply(self, site: SiteName, update: AttemptUpdate) -> None:
        core = self.core
        attempt, task_id = core.attempts.get(update.attempt_id), core.owner(update.attempt_id)
        if task_id is None:  # not an attempt of this campaign
            return
        if update.native_id is not None:
            self._native_ids[update.attempt_id] = update.native_id
        if update.note:  # also of an attempt that ended (e.g. its job's second run, refused)
            self._notes.append(Note(task_id=task_id, attempt_id=update.attempt_id, site=site, at=time.time(),
                                    note=update.note))
        if attempt is None:  # ended and journaled: nothing of the task changes
            return
        if update.outcome is None:
            if update.running:
                core.attempt_running(update.attempt_id)
            if update.checkpoint is not None:
                self._saved(update.attempt_id, update.checkpoint)
            return
        record = core.tasks[attempt.task_id]
        match update.outcome:
            case Checkpointed() as checkpointed:
                applied = self._checkpointed(update.attempt_id, record, checkpointed)
            case Succeeded(result=result):
                applied = core.attempt_succeeded(update.attempt_id, result)
                if applied and self.data is not None:
                    self.data.result_stored(result)
            case Lost() as lost:
                applied = core.attempt_lost(update.attempt_id, reason=f"{lost.describe()} (site {site})",
                                            counts_as_try=lost.charge_retry)
            case Cancelled(detail=detail):
                applied = core.attempt_lost(update.attempt_id, counts_as_try=True,
                                            reason=f"{detail or 'cancelled at the site'} (site {site})")
            case RestoreFailed(message=message):
                applied = self._restore_failed(update.attempt_id, record, site, message)
            case Failed() as failed:
                error = task_error(record.spec, site, record.attempts, failed)
                applied = core.attempt_failed(update.attempt_id, error)
        if applied:
            attempt.usage, attempt.printed = reported(update.outcome)
            self._ended_attempts.append(attempt)

    def _loads(self) -> dict[SiteName, SiteLoad]:
        """Every site's load as placement sees it: tasks staging there count, drained sites take nothing."""
        loads: dict[SiteName, SiteLoad] = {name: agent.load() for name, agent in self.agents.items()}
        for staging_site, count in self._staging_sites().items():
            loads[staging_site].inflight += count
        for drained in self.drained:  # takes no new attempts
            loads[drained].accepting, loads[drained].problem = False, DRAINED
        assume_unknowns(list(loads.values()))
        return loads

    def _dispatch(self) -> bool:
        core = self.core
        if not core.ready:
            return False
        loads = self._loads()
        load_list = list(loads.values())
        batches: dict[SiteName, list[Submission]] = defaultdict(list)
        deferred: list[TaskId] = []
        staged = False
        while core.ready and len(deferred) < _MAX_DEFERRED_PER_STEP:
            if not any(load.free_slots > 0 for load in load_list):
                break
            task_id = core.ready.popleft()
            record = core.tasks[task_id]
            if record.state is not TaskState.READY:
                continue
            try:
                candidates = feasible_sites(record.spec, load_list)
            except PlacementError as exc:
                core.fail(task_id, exc)
                continue
            if record.migrate_to is not None:
                candidates = [c for c in candidates if c.site == record.migrate_to]
            elif record.avoid_site is not None and len(candidates) > 1:
                candidates = [c for c in candidates if c.site != record.avoid_site]
            inputs = self._input_ids(record)
            costs = self.data.transfer_costs(inputs, [c.site for c in candidates]) if self.data else {}
            site = self.policy.choose(record.spec, candidates, costs)
            full = site is None or loads[site].free_slots == 0
            if site is not None:  # placed, or waiting for this full site: later tasks see it ahead
                record.placed = "" if full else explain(record.spec, loads[site], candidates, costs)
                loads[site].inflight += 1
            if site is None or full:
                deferred.append(task_id)
                continue
            if inputs and self.data is not None:
                try:
                    sources = self.data.missing(inputs, site)
                except MissingInput as exc:
                    core.fail(task_id, DataTransferError(
                        f"task {record.spec.name!r} ({task_id}) cannot start: {exc}.", task_id=task_id,
                        task_name=record.spec.name, object_id=",".join(inputs), source="-", target=site))
                    continue
                if sources:
                    core.stage(task_id, site, self.data.stage(task_id, sources, site))
                    staged = True
                    continue
            batches[site].append(self._start(task_id, site))
        core.ready.extendleft(reversed(deferred))
        self._submit_batches(batches)
        return bool(batches) or staged

    def _start(self, task_id: TaskId, site: SiteName) -> Submission:
        """Start an attempt of a placed task; returns what to hand to the site's agent."""
        record = self.core.tasks[task_id]
        attempt = self.core.start_attempt(task_id, site, attempt_id_of(task_id, record.attempts + 1),
                                          why=record.placed, predicted_s=predicted_wait(record.placed))
        record.placed = ""
        self._new_attempts.append(attempt)
        submission = self._submission(record, attempt)
        record.avoid_site = None
        if record.migrate_to is not None:
            record.migrate_to = None
            self._moves[task_id] = (record.checkpoint, None)
        return submission

    def _submission(self, record: TaskRecord, attempt: Attempt) -> Submission:
        """What to hand to the agent of the attempt's site: the task, its function, its inputs there."""
        site, spec = attempt.site, record.spec
        results = {d: self.core.result_of(d) for d in spec.depends_on}
        data = None
        restore = None
        if self.data is not None:
            data = self.data.context(self._input_ids(record), site)
            results = {d: self.data.local_result(blob, site) for d, blob in results.items()}
            if record.checkpoint is not None:
                restore = data.inputs.get(record.checkpoint)
        return Submission(
            attempt_id=attempt.attempt_id, spec=spec,
            function=self.functions.get(spec.function_digest) if spec.function_digest else None,
            dependency_results=results, data=data, restore=restore,
        )

    def _submit_batches(self, batches: dict[SiteName, list[Submission]], *, point: str = "after-submit"
                        ) -> None:
        if any(isinstance(self.agents[site], ReattachableAgent) for site in batches):
            self._flush()  # their jobs outlive us: journal the attempts (their job names) before submitting
        raised = at_once(list(batches.items()), lambda batch: self.agents[batch[0]].submit(batch[1]))
        for exc in raised:
            if exc is not None and not isinstance(exc, SiteAgentError):
                raise exc
        for (site, submissions), exc in zip(batches.items(), raised, strict=True):
            if isinstance(exc, SiteAgentError):  # attempts the agent accepted before the error are tracked
                for sub in submissions:
                    self.core.attempt_lost(sub.attempt_id, reason=f"submission to {site} failed: {exc}",
                                           counts_as_try=not exc.transient)
            if armed(point, site) and isinstance(agent := self.agents[site], SubmitsInBackground):
                agent.settle()  # the tests' window: the site has the jobs, their ids not journaled
            crash_point(point, site)

    def _flush(self, *, new_tasks: Sequence[TaskSpec] = (), functions: dict[str, bytes] | None = None
               ) -> None:
        core = self.core
        transitions = core.take_transitions()
        self._release_data(transitions)
        replicas, evicted = self.data.take_journal_rows() if self.data is not None else ([], [])
        finals = [
            FinalRecord(task_id=t.task_id, state=t.new, result=core.tasks[t.task_id].result,
                        error=core.tasks[t.task_id].error)
            for t in transitions if t.new in TERMINAL
        ]
        counters = {  # a hedge's race settled: the task's site is the winner's
            t: (t, core.tasks[t].tries, core.tasks[t].attempts, core.tasks[t].last_site)
            for t in [*(a.task_id for a in self._new_attempts), *self._raced]
        }
        self._raced = []
        attempts = self._new_attempts + self._ended_attempts
        native_ids, self._native_ids = self._native_ids, {}
        moves, self._moves = self._moves, {}
        notes, self._notes = self._notes, []
        self._new_attempts, self._ended_attempts = [], []
        if not (new_tasks or transitions or attempts or functions or native_ids or replicas or evicted
                or moves or notes):
            return
        written = self.journal.write_step(
            functions=functions, new_tasks=new_tasks, attempts=attempts, transitions=transitions,
            finals=finals, counters=counters.values(), native_ids=native_ids, replicas=replicas,
            evicted=evicted, moves=[(t, c, g) for t, (c, g) in moves.items()], notes=notes,
        )
        core.forget_ended(attempts)  # in the journal now: not kept for the campaign's life
        for task_id in written:
            record = core.tasks[task_id]
            self.events.add(TaskEvent(task_id=task_id, state=record.state, result=record.result,
                                          error=record.error))

    # ------------------------------------------------------------------------------------ queries
    def events_since(self, cursor: int) -> tuple[int, list[TaskEvent]]:
        """Terminal events after `cursor`; events before it are acknowledged and dropped."""
        return self.events.since(cursor)

    def summary(self) -> list[SiteSummary]:
        """Per-site counts (every site; "-": tasks never placed), with each site's predicted wait now."""
        rows = {row.site: row for row in site_summary(self.core.tasks.values())}
        for name, load in self._loads().items():
            row = rows.get(name) or SiteSummary(site=name, queued=0, running=0, done=0, failed=0)
            rows[name] = dataclasses.replace(row, predicted_wait_s=load.wait_s(), problem=load.problem)
        return [rows[site] for site in sorted(rows)]

    def idle(self) -> bool:
        """True when no task is unfinished."""
        return self.core.unfinished() == 0

    def pause_hint(self) -> float:
        """How long the loop may sleep when a step changed nothing."""
        busy = any(a.load().inflight for a in self.agents.values())
        return 0.002 if busy or (self.data is not None and self.data.transfers.in_flight) else 0.02
