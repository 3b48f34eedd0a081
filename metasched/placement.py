"""Where a task runs: feasibility first, then a policy's choice among the sites with room.

A task no site can *ever* run fails at once with a ``PlacementError`` naming the requirement nobody meets
(Ray would otherwise keep an unsatisfiable task pending forever). A feasible task waits while every
feasible site is full.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from metasched.errors import PlacementError
from metasched.records import SiteLoad, SiteName, TaskSpec


def infeasibility(spec: TaskSpec, site: SiteLoad) -> str | None:
    """Why `site` can never run `spec` ("needs X, site offers Y"), or None if it can."""
    res = spec.resources
    if spec.sites and site.site not in spec.sites:
        return f"not among the task's allowed sites ({', '.join(spec.sites)})"
    if res.cores > site.max_cores_per_task:
        return f"needs cores={res.cores}, offers at most {site.max_cores_per_task}"
    if res.memory_mb > site.max_memory_mb:
        return f"needs memory={res.memory_mb} MB, offers at most {site.max_memory_mb} MB"
    if res.gpus > site.gpus:
        return f"needs gpus={res.gpus}, offers {site.gpus}"
    if res.nodes > site.nodes:
        return f"needs nodes={res.nodes}, offers {site.nodes}"
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

    def choose(self, spec: TaskSpec, candidates: Sequence[SiteLoad]) -> SiteName | None:
        """Pick one of `candidates` (feasible for `spec`, in campaign order) for the next attempt."""
        ...


class RoundRobinPolicy:
    """The baseline: the next feasible site with room, in turn."""

    def __init__(self) -> None:
        self._turn = 0

    def choose(self, spec: TaskSpec, candidates: Sequence[SiteLoad]) -> SiteName | None:
        """Rotate through the candidates that have free slots."""
        open_sites = [c for c in candidates if c.free_slots > 0]
        if not open_sites:
            return None
        self._turn += 1
        return open_sites[self._turn % len(open_sites)].site


class DefaultPolicy:
    """Scores sites with room by free capacity and estimated wait; the highest score wins.

    score = free fraction of the site's in-flight window - estimated wait (s) / wait_scale_s.
    Data locality and failure history join the score when the data layer and fault tracking land.
    """

    def __init__(self, *, wait_scale_s: float = 60.0) -> None:
        self.wait_scale_s = wait_scale_s

    def score(self, load: SiteLoad) -> float:
        """Higher is better."""
        free = load.free_slots / max(1, load.max_inflight)
        return free - load.est_wait_s / self.wait_scale_s

    def choose(self, spec: TaskSpec, candidates: Sequence[SiteLoad]) -> SiteName | None:
        """The candidate with room and the best score (the first one on ties)."""
        best: SiteLoad | None = None
        for load in candidates:
            if load.free_slots > 0 and (best is None or self.score(load) > self.score(best)):
                best = load
        return best.site if best is not None else None


def policy_named(name: str) -> PlacementPolicy:
    """Build a policy by name: "default" or "round-robin"."""
    if name == "default":
        return DefaultPolicy()
    if name in ("round-robin", "roundrobin"):
        return RoundRobinPolicy()
    raise ValueError(f"unknown placement policy {name!r}; use 'default' or 'round-robin'.")
