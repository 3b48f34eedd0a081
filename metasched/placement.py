"""Where a task runs: feasibility first, then a policy's choice among the sites with room.

A task no site can *ever* run fails at once with a ``PlacementError`` naming the requirement nobody meets
(Ray would otherwise keep an unsatisfiable task pending forever). A feasible task waits while every
feasible site is full.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

from metasched.errors import PlacementError
from metasched.plugins import make_named
from metasched.records import Capability, SiteLoad, SiteName, TaskId, TaskSpec


def infeasibility(spec: TaskSpec, site: SiteLoad) -> str | None:
    """Why `site` can never run `spec` ("needs X, site offers Y"), or None if it can."""
    res = spec.resources
    if spec.sites and site.site not in spec.sites:
        return f"not among the task's allowed sites ({', '.join(spec.sites)})"
    if res.cores > site.max_cores_per_task:
        return f"needs cores={res.cores}, offers at most {site.max_cores_per_task}"
    if site.max_memory_mb is not None and res.memory_mb > site.max_memory_mb:
        return f"needs memory={res.memory_mb} MB, offers at most {site.max_memory_mb} MB"
    if res.gpus > site.gpus:
        return f"needs gpus={res.gpus}, offers {site.gpus}"
    if (site.max_walltime_s is not None and (res.walltime_s or 0.0) > site.max_walltime_s
            and spec.checkpoint is None):  # a checkpointable task saves and goes on in its next attempt
        return f"needs walltime={res.walltime_s:g} s, blocks there leave at most {site.max_walltime_s:g} s"
    if res.nodes > site.nodes:
        return f"needs nodes={res.nodes}, offers {site.nodes}"
    if spec.checkpoint and Capability.checkpoint(spec.checkpoint) not in site.capabilities:
        return f"needs checkpoint={spec.checkpoint.value}, which this site does not offer"
    if spec.container is not None:
        wanted = spec.container.runtimes()
        if not any(Capability.container(runtime) in site.capabilities for runtime in wanted):
            offered = sorted(c.runtime.value for c in site.capabilities if c.runtime is not None)
            return (f"needs a container runtime for image {spec.container.name!r} "
                    f"({' or '.join(r.value for r in wanted)}), offers {', '.join(offered) or 'none'}")
    return None


def feasible_sites(spec: TaskSpec, loads: Sequence[SiteLoad]) -> list[SiteLoad]:
    """The sites that can run `spec`; raises PlacementError naming each site's reason if none can."""
    feasible = [load for load in loads if infeasibility(spec, load) is None]
    if feasible:
        return feasible
    reasons = {load.site: infeasibility(spec, load) for load in loads}
    if not loads:
        detail = "the campaign has no sites"
    else:
        detail = "; ".join(f"{site}: {reason}" for site, reason in reasons.items())
    unknown = [s for s in spec.sites if s not in reasons]
    if unknown:
        detail += f"; unknown allowed site(s): {', '.join(unknown)}"
    requirement = next(iter(r for r in reasons.values() if r), detail)
    raise PlacementError(
        f"task {spec.name!r} ({spec.task_id}) cannot run on any site of this campaign: {detail}. "
        "Lower the request or add a site that offers it.",
        task_id=spec.task_id, task_name=spec.name, requirement=requirement,
    )


@runtime_checkable
class PlacementPolicy(Protocol):
    """Chooses a site among feasible ones; None, or a site without a free slot, means wait."""

    def choose(self, spec: TaskSpec, candidates: Sequence[SiteLoad],
               transfer_s: Mapping[SiteName, float] | None = None) -> SiteName | None:
        """Pick one of `candidates` (feasible for `spec`, in campaign order) for the next attempt.

        `transfer_s` holds, per candidate, the predicted seconds to bring the task's stored inputs there
        (absent or 0 where they already are). A candidate without a free slot is an answer too: the task
        waits in the scheduler's queue for that site (and is placed again at the next step).
        """
        ...


@runtime_checkable
class HedgingPolicy(Protocol):
    """A policy that may also queue a second attempt of a task whose first waits past its prediction.

    The scheduler asks about attempts still queued (not started) about once a second; the first of the
    two attempts to start runs and the other is cancelled (``metasched.scheduler.hedging``).
    """

    def hedge_budget(self, tasks: int) -> int:
        """How many hedges a campaign of `tasks` tasks may make in all."""
        ...

    def overdue(self, waited_s: float, predicted_s: float) -> bool:
        """Whether an attempt that waited `waited_s` (its placement predicted `predicted_s`) may be hedged."""
        ...

    def hedge(self, spec: TaskSpec, waited_s: float, predicted_s: float, candidates: Sequence[SiteLoad],
              transfer_s: Mapping[SiteName, float]) -> SiteName | None:
        """Where to queue a second attempt of `spec`, whose attempt is overdue; None: nowhere (yet).

        `candidates` are the other feasible sites with room.
        """
        ...


HELD_TURNS = 100_000  # the most tasks RoundRobinPolicy keeps a turn for (the longest not asked about go)


class RoundRobinPolicy:
    """The baseline: the next feasible site with room, in turn.

    Room is the site's slots (``max_inflight``): a batch site that takes only the submissions it is making
    (``SiteLoad.intake``) keeps the tasks given to it waiting in the scheduler's queue until it takes them,
    rather than the turn passing them to whichever site is taking work at that moment. At most
    ``HELD_TURNS`` such turns are kept: a task cancelled while it waited is never asked about again, and
    its turn is forgotten once that many others were held after it (a forgotten live one takes a new turn).
    """

    def __init__(self) -> None:
        self._turn = 0
        # given to a site that could not take them yet; the task asked about longest ago first
        self._waiting: dict[TaskId, SiteName] = {}

    def choose(self, spec: TaskSpec, candidates: Sequence[SiteLoad],
               transfer_s: Mapping[SiteName, float] | None = None) -> SiteName | None:
        """Rotate through the candidates with slots left (data location is ignored)."""
        open_sites = [c for c in candidates if c.slots_left > 0]
        given = self._waiting.pop(spec.task_id, None)
        chosen = next((c for c in open_sites if c.site == given), None)
        if chosen is None:
            if not open_sites:
                return None
            self._turn += 1
            chosen = open_sites[self._turn % len(open_sites)]
        if chosen.free_slots == 0:
            self._waiting[spec.task_id] = chosen.site
            if len(self._waiting) > HELD_TURNS:
                del self._waiting[next(iter(self._waiting))]
        return chosen.site


MOVE_AFTER_S = 10.0  # DefaultPolicy's move_after_s unless hedge_after_s is shorter


class DefaultPolicy:
    """Sends the task where it is predicted to start soonest, even if that means waiting for a full site.

    predicted start (s) = the site's predicted wait for one more attempt (``SiteLoad.wait_s``: other users'
    jobs ahead, then our attempts already there) + the time to move the task's stored inputs there (learned
    bandwidth per store pair). Sites within ``tie_s`` of the best are tied; among them a site with slots
    left wins, then the one needing the least data movement, then the largest free fraction of its slots,
    so equal sites share the work (``slots_left``: a batch site still submitting what it took, its
    ``intake`` full, keeps its turn; the task waits for it). When the soonest start is at a site with no
    free slot (a local site whose cores all run our tasks), the answer is that site all the same: the
    scheduler keeps the task in its queue until a slot frees, or until another site's prediction gets
    better.

    A task whose attempt has waited past its predicted start by ``hedge_after_s`` (or by as much again as
    predicted, if that is longer) is also queued at another site with room where it is predicted to start
    within ``hedge_after_s``: the first of the two to start runs, the other is cancelled. Past it by
    ``move_after_s`` already, it moves to a site that starts it at once (a free core of the local site):
    nothing is queued twice, the job waiting elsewhere is cancelled. At most ``hedge_budget`` of the
    campaign's tasks (a fraction) are hedged; moves are not counted; a budget of 0 turns both off.
    """

    def __init__(self, *, tie_s: float = 1.0, hedge_after_s: float = 60.0, move_after_s: float | None = None,
                 hedge_budget: float = 0.1) -> None:
        if move_after_s is None:  # 10 s, or hedge_after_s if that is shorter
            move_after_s = min(MOVE_AFTER_S, hedge_after_s)
        if not 0 < move_after_s <= hedge_after_s or not 0 <= hedge_budget <= 1:
            raise ValueError(f"hedge_after_s and move_after_s must be positive, move_after_s no longer (got "
                             f"{hedge_after_s}, {move_after_s}), and hedge_budget a fraction of the "
                             f"campaign's tasks between 0 and 1 (got {hedge_budget}).")
        self.tie_s = tie_s
        self.hedge_after_s = hedge_after_s
        self.move_after_s = move_after_s
        self.budget = hedge_budget

    def choose(self, spec: TaskSpec, candidates: Sequence[SiteLoad],
               transfer_s: Mapping[SiteName, float] | None = None) -> SiteName | None:
        """The candidate with the earliest predicted start (see the class docstring on ties)."""
        costs = transfer_s or {}
        starts = [(predicted_start(spec, c, costs), c) for c in candidates if c.accepting]
        if not any(c.free_slots > 0 for _, c in starts):
            return None
        soonest = min(start for start, _ in starts)
        tied = [c for start, c in starts if start <= soonest + self.tie_s]
        if len(tied) == 1:
            return tied[0].site
        best = max(tied, key=lambda c: (c.slots_left > 0, -costs.get(c.site, 0.0),
                                        c.slots_left / max(1, c.max_inflight)))
        return best.site

    def hedge_budget(self, tasks: int) -> int:
        """``hedge_budget`` of `tasks`, rounded up."""
        return math.ceil(self.budget * tasks)

    def overdue(self, waited_s: float, predicted_s: float) -> bool:
        """Past the prediction by ``move_after_s`` (a move to a free core is then possible)."""
        return waited_s > predicted_s + self.move_after_s

    def hedge(self, spec: TaskSpec, waited_s: float, predicted_s: float, candidates: Sequence[SiteLoad],
              transfer_s: Mapping[SiteName, float]) -> SiteName | None:
        """A site that starts it at once; past ``hedge_after_s``, the soonest with room within it."""
        now = [c for c in candidates if c.starts_one_now]
        if now:
            return self.choose(spec, now, transfer_s)
        if waited_s <= predicted_s + max(self.hedge_after_s, predicted_s):
            return None
        soon = [c for c in candidates if c.free_slots > 0
                and predicted_start(spec, c, transfer_s) < self.hedge_after_s]
        return self.choose(spec, soon, transfer_s) if soon else None


def assume_unknowns(loads: Sequence[SiteLoad], default_cycle_s: float = 1.0) -> None:
    """What sites the campaign has not used yet are assumed to be like: like the sites it has used.

    A site where no attempt of ours has ended gets the mean ``cycle_s`` of those where one has
    (`default_cycle_s` while none has: any positive value, as what matters then is that each site's wait
    grows with our attempts there in proportion to its open cores; without it, the first step of a
    campaign would put all of it at the first sites with room). A site where none has started gets the
    mean correction the others' waits taught (``learned_s``): otherwise every site the campaign has used
    would look slower than one it has not, for the moment any batch site takes to start a job.
    """
    known = [load.cycle_s for load in loads if load.cycle_s > 0]
    assumed = sum(known) / len(known) if known else default_cycle_s
    learned = [load.learned_s for load in loads if load.learns and load.learned_s is not None]
    correction = sum(learned) / len(learned) if learned else 0.0
    for load in loads:
        load.cycle_s = load.cycle_s or assumed
        if load.learns and load.learned_s is None:
            load.est_wait_s = max(0.0, load.est_wait_s + correction)


def predicted_start(spec: TaskSpec, site: SiteLoad, transfer_s: Mapping[SiteName, float]) -> float:
    """Seconds until `spec` would start at `site`: its wait there plus moving its inputs there."""
    return site.wait_s(spec.resources.cores, spec.resources) + transfer_s.get(site.site, 0.0)


_PREDICTED = re.compile(r"predicted start (\d+(?:\.\d+)?) s")


def explain(spec: TaskSpec, chosen: SiteLoad, candidates: Sequence[SiteLoad],
            transfer_s: Mapping[SiteName, float]) -> str:
    """What the placement of `spec` at `chosen` was weighed against, for the journal.

    E.g. ``predicted start 0.4 s at alpha; local 2.1 s (full), beta 235.0 s``. ``predicted_wait`` reads
    the first number back (reports compare it with the wait the attempt had).
    """
    others = [f"{c.site} {predicted_start(spec, c, transfer_s):.1f} s{'' if c.free_slots else ' (full)'}"
              for c in candidates if c.site != chosen.site]
    said = f"predicted start {predicted_start(spec, chosen, transfer_s):.1f} s at {chosen.site}"
    return f"{said}; {', '.join(others)}" if others else said


def predicted_wait(detail: str) -> float | None:
    """The predicted start an ``explain`` text gave (None if the text has none)."""
    match = _PREDICTED.search(detail)
    return float(match.group(1)) if match else None


POLICY_ENTRY_POINTS = "metasched.placement_policies"
BUILT_IN_POLICIES: dict[str, type[DefaultPolicy] | type[RoundRobinPolicy]] = {
    "default": DefaultPolicy, "round-robin": RoundRobinPolicy}


def policy_named(name: str) -> PlacementPolicy:
    """Build a policy by name: a built-in one, or one an installed package declares.

    A package declares it under the entry point group ``metasched.placement_policies``: a class, or a
    function of no arguments, that makes it.
    """
    policy, source = make_named(name, group=POLICY_ENTRY_POINTS, built_in=BUILT_IN_POLICIES,
                                what="placement policy")
    if not isinstance(policy, PlacementPolicy):
        raise ValueError(f"placement policy {name!r} ({source}) made a "
                         f"{type(policy).__name__}, which has no choose(spec, candidates, transfer_s) "
                         "method.")
    return policy


def as_policy(policy: str | PlacementPolicy) -> PlacementPolicy:
    """A policy given by name (see ``policy_named``) or as an object with a ``choose`` method."""
    if isinstance(policy, str):
        return policy_named(policy)
    if not isinstance(policy, PlacementPolicy):
        raise ValueError(f"policy must be a name or an object with a choose(spec, candidates, transfer_s) "
                         f"method, not {type(policy).__name__}.")
    return policy
