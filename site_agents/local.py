"""The local site: attempts run as Ray tasks on the campaign's Ray cluster.

Each attempt asks for the custom resource ``site:<name>`` (as many units as the task has cores), so the
site runs at most ``cores`` cores' worth of tasks at once, on whichever Ray nodes offer that resource:
the embedded ``ray.init()`` of a campaign adds it for every LocalSite; on an existing cluster, start
nodes with ``--resources '{"site:<name>": N}'``.
"""

from __future__ import annotations

import os
import pickle
import sys
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from metasched.catalog import metasched_home
from metasched.errors import ConfigurationError, SiteAgentError
from metasched.outcomes import Cancelled, LossReason, Lost, TaskOutcome
from metasched.records import AttemptId, Capability, ContainerRuntime, SiteLoad, SiteName, TaskKind
from metasched.sites.base import AttemptUpdate, Submission
from metasched.sites.kind import Check, MatrixRow, SiteKind
from metasched.sites.schema import FORBID_EXTRA, NonNegativeInt, PositiveInt, StoreOption, check_fields
from metasched.testmatrix import FAULT_COLUMNS as NO_FAULT_TESTS
from metasched.worker import run_packed
from site_agents.containers import container_name, remove_containers, run_in_docker
from site_agents.staging import stage_worker

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
        max_pack: the most short function attempts that may share one Ray task (1 turns packing off).
        store: where results bigger than the campaign's data threshold go; default the campaign's
            own store (``Campaign(store=...)``), which the driver on this machine reads directly.
        container_runtimes: the container runtimes the site offers to tasks with ``container=``:
            ``("docker",)`` runs them on this machine's Docker engine (see docs/containers.md).
        work_dir: where container attempts keep their directory and logs; default
            ``$METASCHED_HOME/sites/<name>``.
        container_binds: more directories mounted (read-write, at the same path) into every container,
            e.g. a data directory the tasks read; the attempt's directory, its working directory and
            the file stores are always mounted.
    """

    __pydantic_config__ = FORBID_EXTRA
    kind: ClassVar[str] = "local"
    name: str
    _: KW_ONLY
    cores: NonNegativeInt = 0
    gpus: NonNegativeInt = 0
    memory_mb: NonNegativeInt = 0
    max_inflight: NonNegativeInt = 0
    max_pack: PositiveInt = 32
    store: StoreOption = None
    container_runtimes: tuple[Literal["docker"], ...] = ()
    work_dir: str = ""
    container_binds: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "container_runtimes", tuple(self.container_runtimes))
        check_fields(self)
        if self.work_dir and not os.path.isabs(self.work_dir):
            raise ConfigurationError(f"local site {self.name}: work_dir must be an absolute path, got "
                                     f"{self.work_dir!r}.")
        binds = tuple(os.fspath(b) for b in self.container_binds)
        relative = [b for b in binds if not os.path.isabs(b)]
        if relative:
            raise ConfigurationError(f"local site {self.name}: container_binds must be absolute paths, got "
                                     f"{relative}.")
        object.__setattr__(self, "container_binds", binds)
        if not self.work_dir:
            object.__setattr__(self, "work_dir", str(metasched_home() / "sites" / self.name))
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

    def ray_resources(self) -> dict[str, float]:
        """What the embedded Ray offers for this site: its cores, as CPUs and as its own resource."""
        return {"CPU": float(self.cores), self.ray_resource: float(self.cores)}


@dataclass(slots=True, kw_only=True)
class _Pack:
    """One Ray task running one or more attempts in sequence."""

    attempt_ids: list[AttemptId]
    submitted_at: float
    cancelled: set[AttemptId] = field(default_factory=set)
    container: bool = False  # one attempt run by run_in_docker (its answer is one pickled outcome)


class LocalAgent:
    """Runs attempts as Ray tasks; cancel uses ``ray.cancel(force=True)``.

    Short function tasks are packed: once the mean run time of recent attempts is below
    ``PACK_BELOW_S``, up to ``LocalSite.max_pack`` attempts with the same resource request share one Ray task
    (run one after the other), which amortizes Ray's per-task overhead. Commands and longer tasks get
    one Ray task each. Cancelling one attempt of a pack kills the pack; its other attempts come back
    as lost without using up a retry, and are resubmitted.
    """

    PACK_BELOW_S = 0.02

    def __init__(self, config: LocalSite) -> None:
        self.config = config
        self._packs: dict[Any, _Pack] = {}
        self._by_attempt: dict[AttemptId, Any] = {}
        self._remote: Any = None
        self._remotes: dict[tuple[int, int], Any] = {}
        self._ray: Any = None
        self._docker_remote: Any = None
        self._pythonpath = ""
        self._mean_run_s: float | None = None

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
        self._remote = ray.remote(max_retries=0, num_cpus=0)(run_packed)
        if self.config.container_runtimes:
            self._start_docker()

    def _start_docker(self) -> None:
        import docker

        try:
            client = docker.from_env(timeout=30)
            client.ping()
            client.close()
        except docker.errors.DockerException as exc:
            raise SiteAgentError(
                f"local site {self.config.name!r} offers container runtime docker, but the Docker engine "
                f"does not answer ({exc}). Start it (make engine) or drop container_runtimes.",
                site=self.config.name) from exc
        Path(self.config.work_dir).mkdir(parents=True, exist_ok=True)
        self._pythonpath = str(stage_worker(self.config.work_dir))
        self._docker_remote = self._ray.remote(max_retries=0, num_cpus=0)(run_in_docker)

    def submit(self, submissions: Sequence[Submission]) -> None:
        """Start Ray tasks for these attempts, packing short function tasks."""
        groups: dict[tuple[int, int, bool], list[Submission]] = defaultdict(list)
        for sub in submissions:
            if sub.spec.container is not None:
                self._submit_container(sub)
                continue
            res = sub.spec.resources
            groups[(res.cores, res.gpus, sub.spec.kind is TaskKind.FUNCTION)].append(sub)
        now = time.monotonic()
        for (cores, gpus, is_function), subs in groups.items():
            size = self._pack_size(len(subs)) if is_function else 1
            remote = self._remote_for(cores, gpus)
            for i in range(0, len(subs), size):
                chunk = subs[i:i + size]
                functions = {s.spec.function_digest: s.function for s in chunk
                             if s.spec.function_digest and s.function is not None}
                items = [(s.attempt_id, s.spec, s.dependency_results, s.data) for s in chunk]
                ref = remote.remote(pickle.dumps((functions, items), protocol=pickle.HIGHEST_PROTOCOL))
                self._packs[ref] = _Pack(attempt_ids=[s.attempt_id for s in chunk], submitted_at=now)
                for s in chunk:
                    self._by_attempt[s.attempt_id] = ref

    def _submit_container(self, sub: Submission) -> None:
        res = sub.spec.resources
        remote = self._docker_remote.options(resources={self.config.ray_resource: float(res.cores)})
        ref = remote.remote(pickle.dumps(
            (self.config.name, sub.attempt_id, sub.spec, sub.function, sub.dependency_results, sub.data,
             self.config.work_dir, self._pythonpath, self.config.container_binds),
            protocol=pickle.HIGHEST_PROTOCOL))
        self._packs[ref] = _Pack(attempt_ids=[sub.attempt_id], submitted_at=time.monotonic(), container=True)
        self._by_attempt[sub.attempt_id] = ref

    def _pack_size(self, count: int) -> int:
        if self._mean_run_s is None or self._mean_run_s >= self.PACK_BELOW_S:
            return 1
        return max(1, min(self.config.max_pack, count // (2 * self.config.cores)))

    def _remote_for(self, cores: int, gpus: int) -> Any:
        """The Ray remote function with this resource request (``.options`` is costly: build it once)."""
        key = (cores, gpus)
        remote = self._remotes.get(key)
        if remote is None:
            options: dict[str, Any] = {"resources": {self.config.ray_resource: float(cores)}}
            if gpus:
                options["num_gpus"] = gpus
            remote = self._remotes[key] = self._remote.options(**options)
        return remote

    def poll(self) -> list[AttemptUpdate]:
        """Collect every finished pack with one ray.wait over all live refs."""
        if not self._packs:
            return []
        ray = self._ray
        refs = list(self._packs)
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        updates: list[AttemptUpdate] = []
        for ref in ready:
            pack = self._packs.pop(ref)
            for attempt_id in pack.attempt_ids:
                self._by_attempt.pop(attempt_id, None)
            updates.extend(self._collect(ref, pack))
        return updates

    def _collect(self, ref: Any, pack: _Pack) -> list[AttemptUpdate]:
        ray = self._ray
        try:
            if pack.container:
                outcome: TaskOutcome = pickle.loads(ray.get(ref))  # noqa: S301  (our own worker's answer)
                return [AttemptUpdate(attempt_id=pack.attempt_ids[0], outcome=outcome)]
            results: list[tuple[AttemptId, TaskOutcome, float]] = pickle.loads(ray.get(ref))
        except ray.exceptions.TaskCancelledError:
            self._remove_orphan(pack)
            return [self._interrupted(a, pack, "cancelled") for a in pack.attempt_ids]
        except ray.exceptions.RayError as exc:  # worker died, node lost, object lost
            self._remove_orphan(pack)
            reason = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
            return [self._interrupted(a, pack, reason) for a in pack.attempt_ids]
        for _, _, run_s in results:
            if self._mean_run_s is None:
                self._mean_run_s = run_s
            else:
                self._mean_run_s += _DURATION_SMOOTHING * (run_s - self._mean_run_s)
        return [AttemptUpdate(attempt_id=a, outcome=outcome) for a, outcome, _ in results]

    def _remove_orphan(self, pack: _Pack) -> None:
        """A container whose worker died (cancel is asynchronous: it may have started it meanwhile)."""
        if pack.container:
            remove_containers([container_name(self.config.name, a) for a in pack.attempt_ids])

    @staticmethod
    def _interrupted(attempt_id: AttemptId, pack: _Pack, reason: str) -> AttemptUpdate:
        if attempt_id in pack.cancelled:
            return AttemptUpdate(attempt_id=attempt_id, outcome=Cancelled(detail=reason))
        # A neighbour in the pack was cancelled, or the worker died: not this task's fault if it
        # shared the pack; a lone attempt whose worker died is charged a retry.
        charge = len(pack.attempt_ids) == 1 and not pack.cancelled
        why = LossReason.NEIGHBOUR_STOPPED if pack.cancelled else LossReason.WORKER_DIED
        lost = Lost(reason=why, detail=reason, charge_retry=charge)
        return AttemptUpdate(attempt_id=attempt_id, outcome=lost)

    def cancel(self, attempt_ids: Sequence[AttemptId]) -> None:
        """Force-cancel the Ray tasks of these attempts (kills their worker processes if running).

        A container outlives its killed worker: it is removed by name.
        """
        containers = []
        for attempt_id in attempt_ids:
            ref = self._by_attempt.get(attempt_id)
            if ref is not None:
                self._packs[ref].cancelled.add(attempt_id)
                self._ray.cancel(ref, force=True)
                if self._packs[ref].container:
                    containers.append(container_name(self.config.name, attempt_id))
        remove_containers(containers)

    def load(self) -> SiteLoad:
        """Capacity from the configuration; wait estimated from recent attempt run times."""
        inflight = len(self._by_attempt)
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
            est_wait_s=backlog * (self._mean_run_s or 0.0) / self.config.cores,
            capabilities=frozenset(Capability.container(ContainerRuntime(r))
                                   for r in self.config.container_runtimes),
        )

    def close(self) -> None:
        """Cancel every attempt still in flight."""
        if self._ray is not None:
            for ref in list(self._packs):
                self._ray.cancel(ref, force=True)
        remove_containers([container_name(self.config.name, a) for ref, pack in self._packs.items()
                           if pack.container for a in pack.attempt_ids])
        self._packs.clear()
        self._by_attempt.clear()


def preflight(site: LocalSite) -> Iterator[Check]:
    """Ray importable here (the local site runs on the campaign's Ray), and this Python."""
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    try:
        import ray

        yield Check(site=site.name, check="ray", passed=True, detail=f"ray {ray.__version__} importable")
    except ImportError as exc:
        yield Check(site=site.name, check="ray", passed=False, detail=str(exc),
                    fix="install metasched's dependencies in this environment (pip install metasched)")
    yield Check(site=site.name, check="python", passed=True, detail=f"Python {here} (this process)")


KIND = SiteKind(name="local", config=LocalSite, agent=LocalAgent, preflight=preflight, matrix_rows=(
    MatrixRow("local", "Ray (local site)", "2.60", "local", "local", not_applicable=NO_FAULT_TESTS),
    MatrixRow("local-docker", "Ray + Docker", "docker.io 20.10", "local", "local-docker",
              not_applicable=NO_FAULT_TESTS),
))
