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
from collections.abc import Iterator, Sequence
from dataclasses import KW_ONLY, dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from metasched.catalog import metasched_home
from metasched.errors import ConfigurationError, SiteAgentError
from metasched.records import AttemptId, Capability, ContainerRuntime, SiteLoad, SiteName
from metasched.sites.base import AttemptUpdate, Submission
from metasched.sites.kind import Check, MatrixRow, SiteKind
from metasched.sites.schema import FORBID_EXTRA, NonNegativeInt, PositiveInt, StoreOption, check_fields
from metasched.testmatrix import FAULT_COLUMNS as NO_FAULT_TESTS
from site_agents.containers import container_name, remove_containers, run_in_docker
from site_agents.ray_tasks import PACK_BELOW_S, Pack, RayTasks, depth
from site_agents.staging import stage_worker

BACKLOG_S = 0.5  # work per core handed to Ray ahead of free cores, at the recent mean run time


@dataclass(frozen=True, slots=True)
class LocalSite:
    """A site made of Ray workers on the campaign's Ray cluster (this machine by default).

    Args:
        name: the site's name; the Ray resource it uses is ``site:<name>``.
        cores: how many cores' worth of tasks run at once.
        gpus: GPUs the site offers (tasks asking for more are infeasible here).
        memory_mb: the most memory one task may ask for (default: this machine's memory).
        max_inflight: the most attempts handed to Ray at once (default 64 x cores, at least 256). Fewer
            are: one per core, and more only for very short tasks (``BACKLOG_S`` of work per core), so
            the rest wait in the scheduler's queue where placement can still send them elsewhere.
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


class LocalAgent:
    """Runs attempts as Ray tasks; cancel uses ``ray.cancel(force=True)``.

    Short function tasks are packed: once the mean run time of recent attempts is below
    ``PACK_BELOW_S``, up to ``LocalSite.max_pack`` attempts with the same resource request share one Ray task
    (run one after the other), which amortizes Ray's per-task overhead. Commands and longer tasks get
    one Ray task each. Cancelling one attempt of a pack kills the pack; its other attempts come back
    as lost without using up a retry, and are resubmitted.
    """

    PACK_BELOW_S = PACK_BELOW_S

    def __init__(self, config: LocalSite) -> None:
        self.config = config
        self._tasks: RayTasks | None = None
        self._ray: Any = None
        self._docker_remote: Any = None
        self._pythonpath = ""

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
        self._tasks = RayTasks(ray, on_orphan=self._remove_orphan, site=self.config.name)
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

    @property
    def tasks(self) -> RayTasks:
        """The Ray tasks in flight (after start)."""
        if self._tasks is None:
            raise SiteAgentError(f"local site {self.config.name}: agent not started.", site=self.config.name)
        return self._tasks

    def submit(self, submissions: Sequence[Submission]) -> None:
        """Start Ray tasks for these attempts, packing short function tasks."""
        plain = []
        for sub in submissions:
            if sub.spec.container is not None:
                self._submit_container(sub)
            else:
                plain.append(sub)
        self.tasks.start(plain, self.config.ray_resource, cores=self.config.cores,
                         max_pack=self.config.max_pack)

    def _submit_container(self, sub: Submission) -> None:
        res = sub.spec.resources
        remote = self._docker_remote.options(resources={self.config.ray_resource: float(res.cores)})
        ref = remote.remote(pickle.dumps(
            (self.config.name, sub.attempt_id, sub.spec, sub.function, sub.dependency_results, sub.data,
             self.config.work_dir, self._pythonpath, self.config.container_binds),
            protocol=pickle.HIGHEST_PROTOCOL))
        self.tasks.track(ref, [sub.attempt_id], container=True)

    def poll(self) -> list[AttemptUpdate]:
        """Collect every finished pack with one ray.wait over all live refs."""
        return self.tasks.poll() if self._tasks is not None else []

    def _remove_orphan(self, pack: Pack) -> None:
        """A container whose worker died (cancel is asynchronous: it may have started it meanwhile)."""
        if pack.container:
            remove_containers([container_name(self.config.name, a) for a in pack.attempt_ids])

    def cancel(self, attempt_ids: Sequence[AttemptId]) -> None:
        """Force-cancel the Ray tasks of these attempts (kills their worker processes if running).

        A container outlives its killed worker: it is removed by name.
        """
        if self._tasks is None:
            return
        packs = self._tasks.cancel(attempt_ids)
        remove_containers([container_name(self.config.name, a) for p in packs if p.container
                           for a in p.cancelled])

    def checkpoint(self, attempt_ids: Sequence[AttemptId], *, stop: bool = True) -> list[AttemptId]:
        """Ask running cooperative attempts to stop at their next save (a restart point alone: none)."""
        return self.tasks.ask_stop(attempt_ids) if stop and self._tasks is not None else []

    def load(self) -> SiteLoad:
        """Room for an attempt per core, plus ``BACKLOG_S`` of very short ones; each holds a core a mean run.

        Attempts beyond that stay in the scheduler's queue, where placement can still send them to
        another site (and their wait there is the task's wait, not hidden inside Ray).
        """
        inflight = len(self._tasks) if self._tasks is not None else 0
        mean = self._tasks.mean_run_s if self._tasks is not None else None
        cores = self.config.cores
        per_core = depth(mean, backlog_s=BACKLOG_S, least=1, most=self.config.max_inflight / cores)
        return SiteLoad(
            site=self.name,
            total_cores=cores,
            max_cores_per_task=cores,
            max_memory_mb=self.config.memory_mb,
            gpus=self.config.gpus,
            nodes=1,
            inflight=inflight,
            max_inflight=int(per_core * cores),
            cycle_s=mean or 0.0,
            capabilities=frozenset({Capability.CHECKPOINT_COOPERATIVE, *(
                Capability.container(ContainerRuntime(r)) for r in self.config.container_runtimes)}),
        )

    def close(self) -> None:
        """Cancel every attempt still in flight."""
        if self._tasks is not None:
            remove_containers([container_name(self.config.name, a) for pack in self._tasks.close()
                               if pack.container for a in pack.attempt_ids])


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
