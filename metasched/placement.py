"""Where a task runs: feasibility first, then a policy's choice among the sites with room.

A task no site can *ever* run fails at once with a ``PlacementError`` naming the requirement nobody meets
(Ray would otherwise keep an unsatisfiable task pending forever). A feasible task waits while every
feasible site is full.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

from metasched.errors import PlacementError
from metasched.records import Capability, SiteLoad, SiteName, TaskSpec


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
    if site.max_walltime_s is not None and (res.walltime_s or 0.0) > site.max_walltime_s:
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
    reasons = {load.site: infeasibility(spec, load) for load in loads}
    feasible = [load for load in loads if reasons[load.site] is None]
    if feasible:
        return feasible
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
    """Chooses a site among feasible ones that have room; None means wait."""

    def choose(self, spec: TaskSpec, candidates: Sequence[SiteLoad],
               transfer_s: Mapping[SiteName, float] | None = None) -> SiteName | None:
        """Pick one of `candidates` (feasible for `spec`, in campaign order) for the next attempt.

        `transfer_s` holds, per candidate, the predicted seconds to bring the task's stored inputs there
        (absent or 0 where they already are).
        """
        ...


class RoundRobinPolicy:
    """The baseline: the next feasible site with room, in turn."""

    def __init__(self) -> None:
        self._turn = 0

    def choose(self, spec: TaskSpec, candidates: Sequence[SiteLoad],
               transfer_s: Mapping[SiteName, float] | None = None) -> SiteName | None:
        """Rotate through the candidates that have free slots (data location is ignored)."""
        open_sites = [c for c in candidates if c.free_slots > 0]
        if not open_sites:
            return None
        self._turn += 1
        return open_sites[self._turn % len(open_sites)].site


class DefaultPolicy:
    """Picks the site with room where the task is predicted to start soonest; spreads load on ties.

    predicted start (s) = the site's estimated queue wait + the time to move the task's stored inputs
    there (learned bandwidth per store pair). Sites within ``tie_s`` of the best are tied; among them
    the one needing the least data movement wins, then the largest free fraction of its in-flight
    window, so equal sites share the work. With room at the site that holds a task's data, the task
    goes there; when that site is full (no free slots) or its wait exceeds the transfer time, the task
    goes elsewhere and its data moves.
    """

    def __init__(self, *, tie_s: float = 1.0) -> None:
        self.tie_s = tie_s

    def choose(self, spec: TaskSpec, candidates: Sequence[SiteLoad],
               transfer_s: Mapping[SiteName, float] | None = None) -> SiteName | None:
        """The candidate with room and the earliest predicted start (see the class docstring on ties)."""
        costs = transfer_s or {}
        open_sites = [c for c in candidates if c.free_slots > 0]
        if not open_sites:
            return None
        start = {c.site: c.est_wait_s + costs.get(c.site, 0.0) for c in open_sites}
        soonest = min(start.values())
        tied = [c for c in open_sites if start[c.site] <= soonest + self.tie_s]
        best = max(tied, key=lambda c: (-costs.get(c.site, 0.0), c.free_slots / max(1, c.max_inflight)))
        return best.site


def policy_named(name: str) -> PlacementPolicy:
    """Build a policy by name: "default" or "round-robin"."""
    if name == "default":
        return DefaultPolicy()
    if name in ("round-robin", "roundrobin"):
        return RoundRobinPolicy()
    raise ValueError(f"unknown placement policy {name!r}; use 'default' or 'round-robin'.")
