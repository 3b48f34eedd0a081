"""Hedged submission: a task whose attempt waits past its prediction is also queued at a second site.

A mixin of ``SchedulerService``. About once a second the queued (not yet started) attempts are offered
to the policy (a ``HedgingPolicy``), which may name another site with room where the task would start
soon. The core keeps the second attempt as the task's hedge; the first of the two to start wins
(``SchedulerCore._race``), and the other is cancelled here at its site, before it starts where the site
allows it, or killed with its result discarded if both started: either way the task's outcome is
recorded once. A site that does not say when an attempt starts (the local site) starts what it accepts
at once: a hedge there wins as it is submitted. Both attempts are journaled, so a resumed campaign
re-attaches both and the race goes on. A campaign makes at most ``hedge_budget`` hedges; the count is
journaled. A move to a site that starts the task at once (a free core of the local site) queues nothing
twice and is not counted: it takes the attempt that would still wait longest (the last of ours at the
site with the longest backlog), which is work stolen from the back of a queue, not from its head.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence

from metasched.data.plane import DataPlane, MissingInput
from metasched.errors import PlacementError
from metasched.journal import Journal
from metasched.journal_schema import Note
from metasched.placement import HedgingPolicy, PlacementPolicy, feasible_sites, predicted_start
from metasched.records import AttemptId, SiteLoad, SiteName, TaskId, attempt_id_of
from metasched.scheduler.core import SchedulerCore
from metasched.scheduler.states import AttemptState, TaskState
from metasched.scheduler.task_records import Attempt, TaskRecord
from metasched.sites.base import SiteAgent, Submission

_SCAN_S = 1.0  # how often queued attempts are looked at
# ... and how soon again once a site that starts at once has a free core while overdue attempts wait for
# one (the last scan ran out of room): a core idle until the next full second is work not done
_QUICK_SCAN_S = 0.1
HEDGES_MADE = "hedges"  # the journal's meta key: hedges made so far (the budget survives a resume)


class Hedging:
    """The hedging part of the scheduler service (see the module docstring)."""

    core: SchedulerCore
    agents: dict[SiteName, SiteAgent]
    data: DataPlane | None
    journal: Journal
    policy: PlacementPolicy
    _new_attempts: list[Attempt]
    _ended_attempts: list[Attempt]
    _notes: list[Note]
    _raced: list[TaskId]  # tasks whose race settled (their site is journaled again)
    _last_hedge_scan: float = 0.0
    _out_of_room: bool = False  # the last scan left overdue attempts for want of a free slot
    hedges_made: int = 0

    def _loads(self) -> dict[SiteName, SiteLoad]:
        raise NotImplementedError  # the service's

    def _cancel_at(self, site: SiteName, attempts: Sequence[Attempt]) -> None:
        raise NotImplementedError  # the steering mixin's (checkpoints.py)

    def _input_ids(self, record: TaskRecord) -> list[str]:
        raise NotImplementedError  # the data steps'

    def _submission(self, record: TaskRecord, attempt: Attempt) -> Submission:
        raise NotImplementedError  # the service's

    def _submit_batches(self, batches: dict[SiteName, list[Submission]], *, point: str = "after-submit"
                        ) -> None:
        raise NotImplementedError  # the service's

    def _hedge(self) -> bool:
        """Queue a second attempt of tasks whose attempt waits past its prediction, within the budget."""
        policy = self.policy
        now = time.monotonic()
        if not isinstance(policy, HedgingPolicy) or not self._scan_due(now):
            return False
        self._last_hedge_scan, self._out_of_room = now, False
        budget = policy.hedge_budget(len(self.core.tasks))
        queued = self._queued() if budget > 0 else []  # (a budget of 0 turns moves off too)
        wall = time.time()
        overdue = [a for a in queued if policy.overdue(wall - a.submitted_at, a.predicted_s or 0.0)]
        if not overdue:
            return False
        loads = self._loads()
        batches: dict[SiteName, list[Submission]] = defaultdict(list)
        made = 0
        moved = 0

        def takes(site: SiteLoad) -> bool:  # a move there now, or a hedge while the budget lasts
            return site.free_slots > 0 and (site.starts_when_accepted or self.hedges_made + made < budget)

        for attempt in longest_waits_first(overdue, queued, loads):
            if not any(takes(c) for c in loads.values()):
                break  # no room left anywhere an attempt could go
            if not (loads[attempt.site].reports_start and loads[attempt.site].status_current):
                continue  # it may be running already: the site does not say, or not now (its server is down)
            record = self.core.tasks[attempt.task_id]
            waited, predicted = wall - attempt.submitted_at, attempt.predicted_s or 0.0
            try:
                feasible = feasible_sites(record.spec, list(loads.values()))
            except PlacementError:
                continue
            candidates = [c for c in feasible if c.site != attempt.site and takes(c)
                          and self._inputs_at(record, c.site)]
            target = policy.hedge(record.spec, waited, predicted, candidates, {})
            if target is None:
                continue
            expected = predicted_start(record.spec, loads[target], {})
            loads[target].inflight += 1
            hedge = self.core.start_hedge(record.spec.task_id, target,
                                          attempt_id_of(record.spec.task_id, record.attempts + 1),
                                          predicted_s=expected)
            self._new_attempts.append(hedge)
            moving = loads[target].starts_when_accepted  # a slot is free: it starts now, so it won
            why = (f"attempt {attempt.number} at {attempt.site} has waited {waited:.0f} s "
                   f"(predicted {predicted:.1f} s)")
            said = (f"moved: {why}; started at a free core of {target}, its queued job is cancelled" if moving
                    else f"hedged: {why}; also queued at {target}, predicted start {expected:.1f} s; the "
                         "first to start runs, the other is cancelled")
            self._notes.append(Note(task_id=hedge.task_id, attempt_id=hedge.attempt_id, site=target,
                                    at=time.time(), note=said))
            batches[target].append(self._submission(record, hedge))
            if moving:
                self.core.attempt_running(hedge.attempt_id)
                moved += 1
            else:
                made += 1
        self._out_of_room = made + moved < len(overdue) and not any(c.starts_one_now for c in loads.values())
        if made:
            self.hedges_made += made
            self.journal.set_meta(HEDGES_MADE, self.hedges_made)
        if batches:
            self._submit_batches(batches, point="after-hedge")
        return bool(batches)

    def _scan_due(self, now: float) -> bool:
        """Once a second; sooner once a core that starts at once is free and the last scan ran out of them."""
        since = now - self._last_hedge_scan
        if since >= _SCAN_S:
            return True
        return (since >= _QUICK_SCAN_S and self._out_of_room
                and any(c.starts_one_now for c in self._loads().values()))

    def _queued(self) -> list[Attempt]:
        """Attempts not started yet that could be hedged (not restoring a checkpoint, not moving)."""
        out = []
        for attempt in self.core.attempts.values():
            if attempt.state is not AttemptState.SUBMITTED:  # (an attempt that ended is not SUBMITTED)
                continue
            record = self.core.tasks[attempt.task_id]
            if (record.state is TaskState.SUBMITTED and record.current is attempt and record.hedge is None
                    and record.checkpoint is None and record.migrate_to is None):
                out.append(attempt)
        return out

    def _inputs_at(self, record: TaskRecord, site: SiteName) -> bool:
        """Whether the task's stored inputs are already at `site` (a hedge does not wait for copies)."""
        inputs = self._input_ids(record)
        if not inputs or self.data is None:
            return True
        try:
            return not self.data.missing(inputs, site)
        except MissingInput:
            return False

    def _settle(self) -> bool:
        """Cancel the attempts that lost a race at their sites, and note how each race ended."""
        by_site: dict[SiteName, list[Attempt]] = defaultdict(list)
        settled = self.core.take_settled()
        for race in settled:
            winner, loser = race.winner, race.loser
            self._raced.append(winner.task_id)
            if loser.state is AttemptState.CANCELLED:
                by_site[loser.site].append(loser)
                self._ended_attempts.append(loser)
                how = (f"attempt {winner.number} at {winner.site} started first; attempt {loser.number} at "
                       f"{loser.site} is cancelled")
            else:
                how = (f"attempt {loser.number} at {loser.site} was lost; attempt {winner.number} at "
                       f"{winner.site} goes on")
            self._notes.append(Note(task_id=winner.task_id, attempt_id=winner.attempt_id, site=winner.site,
                                    at=time.time(), note=f"hedge settled: {how}"))
        for site, losers in by_site.items():
            self._cancel_at(site, losers)
        return bool(settled)


def longest_waits_first(overdue: list[Attempt], queued: list[Attempt], loads: dict[SiteName, SiteLoad]
                        ) -> list[Attempt]:
    """`overdue` (some of `queued`), the one predicted to wait longest still first.

    A batch queue starts our attempts in the order they were submitted: an attempt's remaining wait is one
    ``cycle_s`` per open core for each attempt of ours ahead of it (running or queued). Other users' jobs
    submitted since are behind it, so the site's wait for a new job (``est_wait_s``) is not its wait.
    Taking the last one of the longest backlog shortens that backlog; taking a head of a queue only lets
    the attempt behind it start sooner.
    """
    ahead: dict[AttemptId, float] = {}
    by_site: dict[SiteName, list[Attempt]] = defaultdict(list)
    for attempt in queued:  # (in the order they were made: a batch of them shares its submission time)
        by_site[attempt.site].append(attempt)
    for site, here in by_site.items():
        load = loads[site]
        running = max(0, load.inflight - len(here))
        cores = load.cores_for_us
        per_attempt = load.cycle_s / max(1, cores)
        for rank, attempt in enumerate(sorted(here, key=lambda a: a.submitted_at)):
            beyond = running + rank + 1 - cores
            ahead[attempt.attempt_id] = max(0, beyond) * per_attempt
    return sorted(overdue, key=lambda a: -ahead[a.attempt_id])
