"""The local site: attempts run as Ray tasks on the campaign's Ray cluster.

Each attempt asks for the custom resource ``site:<name>`` (as many units as the task has cores), so the
site runs at most ``cores`` cores' worth of tasks at once, on whichever Ray nodes offer that resource:
the embedded ``ray.init()`` of a campaign adds it for every LocalSite; on an existing cluster, start
nodes with ``--resources '{"site:<name>": N}'``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import KW_ONLY, dataclass
from typing import Any, ClassVar

from metasched.errors import SiteAgentError
from metasched.records import AttemptId, SiteLoad, SiteName, TaskKind, TaskOutcome
from metasched.worker import run_attempt
from site_agents.base import AttemptUpdate, Submission

_DURATION_SMOOTHING = 0.2


@dataclass(frozen=True, slots=True)
class LocalSite:
    """A site made of Ray workers on the campaign's Ray cluster (this machine by default).

    Args:
        name: the site's name; the Ray resource it uses is ``site:<name>``.
        cores: how many cores' worth of tasks run at once.
        gpus: GPUs the site offers (tasks asking for more are infeasible here).
        memory_mb: the most memory one task may ask for (default: this machine's memory).
        max_inflight: attempts handed to Ray ahead of free cores (default 64 x cores, at least 256),
            which keeps Ray's pipeline full without flooding it.
    """

    kind: ClassVar[str] = "local"
    name: str
    _: KW_ONLY
    cores: int = 0
    gpus: int = 0
    memory_mb: int = 0
    max_inflight: int = 0

    def __post_init__(self) -> None:
        if self.cores == 0:
            object.__setattr__(self, "cores", os.cpu_count() or 1)
        if self.memory_mb == 0:
            pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
            object.__setattr__(self, "memory_mb", pages * page_size // 2**20)
        if self.max_inflight == 0:
            object.__setattr__(self, "max_inflight", max(64 * self.cores, 256))

    @property
    def ray_resource(self) -> str:
        """The custom Ray resource that stands for this site's cores."""
        return f"site:{self.name}"


@dataclass(slots=True, kw_only=True)
class _Live:
    attempt_id: AttemptId
    ref: Any
    submitted_at: float


class LocalAgent:
    """Runs attempts as Ray tasks; cancel uses ``ray.cancel(force=True)``."""

    def __init__(self, config: LocalSite) -> None:
        self.config = config
        self._live: dict[Any, _Live] = {}
        self._by_attempt: dict[AttemptId, Any] = {}
        self._remote: Any = None
        self._ray: Any = None
        self._mean_duration_s = 0.0

    @property
    def name(self) -> SiteName:
        """The site this agent serves."""
        return SiteName(self.config.name)

    def start(self) -> None:
        """Check that the Ray cluster offers this site's resource."""
        import ray

        self._ray = ray
        available = ray.cluster_resources().get(self.config.ray_resource, 0)
        if available < 1:
            raise SiteAgentError(
                f"local site {self.config.name!r}: the Ray cluster has no resource "
                f"{self.config.ray_resource!r}; start its nodes with "
                f"--resources '{{\"{self.config.ray_resource}\": {self.config.cores}}}'.",
                site=self.config.name,
            )
        self._remote = ray.remote(max_retries=0, num_cpus=0)(run_attempt)

    def submit(self, submissions: Sequence[Submission]) -> None:
        """Start one Ray task per attempt."""
        now = time.monotonic()
        for sub in submissions:
            resources = {self.config.ray_resource: float(sub.spec.resources.cores)}
            options: dict[str, Any] = {"resources": resources, "name": f"{sub.spec.name}:{sub.attempt_id}"}
            if sub.spec.resources.gpus:
                options["num_gpus"] = sub.spec.resources.gpus
            function = sub.function if sub.spec.kind is TaskKind.FUNCTION else None
            ref = self._remote.options(**options).remote(sub.spec, function, sub.dependency_results)
            self._live[ref] = _Live(attempt_id=sub.attempt_id, ref=ref, submitted_at=now)
            self._by_attempt[sub.attempt_id] = ref

    def poll(self) -> list[AttemptUpdate]:
        """Collect every finished attempt with one ray.wait over all live refs."""
        if not self._live:
            return []
        ray = self._ray
        refs = list(self._live)
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        if not ready:
            return []
        try:
            outcomes: list[Any] = ray.get(ready)
        except Exception:  # one of them failed at the Ray level: take them one by one
            outcomes = [self._get_one(ref) for ref in ready]
        now = time.monotonic()
        updates = []
        for ref, outcome in zip(ready, outcomes, strict=True):
            live = self._live.pop(ref)
            self._by_attempt.pop(live.attempt_id, None)
            duration = now - live.submitted_at
            self._mean_duration_s += _DURATION_SMOOTHING * (duration - self._mean_duration_s)
            updates.append(AttemptUpdate(attempt_id=live.attempt_id, outcome=outcome))
        return updates

    def _get_one(self, ref: Any) -> TaskOutcome:
        ray = self._ray
        try:
            outcome: TaskOutcome = ray.get(ref)
            return outcome
        except ray.exceptions.TaskCancelledError:
            return TaskOutcome(cancelled=True, detail="cancelled")
        except ray.exceptions.RayError as exc:  # worker died, node lost, object lost
            return TaskOutcome(lost=True, detail=f"{type(exc).__name__}: {str(exc).splitlines()[0]}")

    def cancel(self, attempt_ids: Sequence[AttemptId]) -> None:
        """Force-cancel the Ray tasks of these attempts (kills their worker processes if running)."""
        for attempt_id in attempt_ids:
            ref = self._by_attempt.get(attempt_id)
            if ref is not None:
                self._ray.cancel(ref, force=True)

    def load(self) -> SiteLoad:
        """Capacity from the configuration; wait estimated from recent attempt durations."""
        inflight = len(self._live)
        backlog = max(0, inflight - self.config.cores)
        return SiteLoad(
            site=self.name,
            total_cores=self.config.cores,
            max_cores_per_task=self.config.cores,
            max_memory_mb=self.config.memory_mb,
            gpus=self.config.gpus,
            nodes=1,
            inflight=inflight,
            max_inflight=self.config.max_inflight,
            est_wait_s=backlog * self._mean_duration_s / self.config.cores,
        )

    def close(self) -> None:
        """Cancel every attempt still in flight."""
        if self._ray is not None:
            for ref in list(self._live):
                self._ray.cancel(ref, force=True)
        self._live.clear()
        self._by_attempt.clear()
