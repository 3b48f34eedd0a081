"""The driver's side of a campaign's scheduler actor: Ray start-up, the actor, the flush and event threads.

``SchedulerClient.start`` starts the embedded Ray (or joins ``address``), creates the campaign's named
scheduler actor and two threads: the **flush** thread sends submitted tasks to the actor in batches (a
burst of submissions gathers into one call), the **event** thread long-polls the actor for tasks that
reached a terminal state and hands each to ``on_event``. ``Campaign`` is the facade users see.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from metasched.data import DataSettings
from metasched.errors import ConfigurationError, MetaschedError
from metasched.journal import Journal
from metasched.placement import PlacementPolicy
from metasched.prestart import prestart
from metasched.records import TaskId, TaskSpec
from metasched.runtime import connect_ray, init_embedded_ray
from metasched.scheduler.actor import NAMESPACE, SchedulerActor, actor_name
from metasched.scheduler.events import TaskEvent
from metasched.sites.base import AdoptedBlocks, EmbeddedRaySite

FLUSH_BATCH = 1000
FLUSH_INTERVAL_S = 0.002
EVENT_POLL_S = 0.5


@dataclass(slots=True)
class _Outbox:
    """Tasks and functions submitted but not yet sent, and the flush tickets (under the client's lock)."""

    specs: list[TaskSpec] = field(default_factory=list)
    functions: dict[str, bytes] = field(default_factory=dict)
    requested: int = 0
    done: int = 0


class SchedulerClient:
    """Starts and talks to one campaign's scheduler actor (see the module docstring)."""

    def __init__(self, *, name: str, journal: Path, sites: Sequence[Any], address: str | None,
                 ray_node_ip: str | None, policy: str | PlacementPolicy, object_store_mb: int,
                 data: DataSettings, resume: bool, on_event: Callable[[TaskEvent], None],
                 on_refused: Callable[[TaskId, str], None],
                 on_failure: Callable[[BaseException], None], finished: Callable[[], bool]) -> None:
        self.name = name
        self.journal = journal
        self.sites = list(sites)
        self.address = address
        self.ray_node_ip = ray_node_ip
        self.policy = policy
        self.object_store_mb = object_store_mb
        self.data = data
        self.resume = resume
        self._on_event, self._on_refused, self._on_failure = on_event, on_refused, on_failure
        self._finished = finished  # every future the driver holds is resolved (the event thread may stop)
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._flushed = threading.Condition(self._lock)
        self._outbox = _Outbox()
        self._closing = False
        self._owns_ray = False
        self._actor: Any = None
        self._threads: list[threading.Thread] = []
        self.error: BaseException | None = None

    # ------------------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Claim the journal (new campaigns), start Ray if needed, the actor and the threads."""
        if not self.resume:
            journal = Journal(self.journal).open()
            try:
                journal.claim(self.name)
            finally:
                journal.close()
        starts_ray = "ray" not in sys.modules or not sys.modules["ray"].is_initialized()
        # a new embedded head's pilot sites submit their first blocks while it starts
        early = prestart(self.sites, self.ray_node_ip) if starts_ray and self.address is None else None
        try:
            if starts_ray:
                self._init_ray(gcs_port=early.port if early else None)
            self._start_actor(early.blocks() if early else {})
        except BaseException:
            if early:
                early.abandon()
            if self._owns_ray:
                import ray

                ray.shutdown()
                self._owns_ray = False
            raise
        if early:
            early.release()
        for target, label in ((self._flush_loop, "flush"), (self._event_loop, "events")):
            thread = threading.Thread(target=target, name=f"metasched-{self.name}-{label}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _start_actor(self, adopted: AdoptedBlocks) -> None:
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        try:
            ray.get_actor(actor_name(self.name), namespace=NAMESPACE)
        except ValueError:
            pass
        else:
            raise ConfigurationError(f"campaign {self.name!r} is already running (Ray actor "
                                     f"{actor_name(self.name)!r}); close it first or use another name.")
        actor_cls = ray.remote(num_cpus=0, max_restarts=0, max_concurrency=64)(SchedulerActor)
        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        self._actor = actor_cls.options(
            name=actor_name(self.name), namespace=NAMESPACE, lifetime="non_detached",
            scheduling_strategy=here,
        ).remote(journal_path=str(self.journal), sites=self.sites, policy=self.policy, resume=self.resume,
                 data=self.data, adopted=adopted)
        try:
            self.call("start")
        except (MetaschedError, ray.exceptions.RayTaskError):
            ray.kill(self._actor)
            raise

    def _init_ray(self, *, gcs_port: int | None) -> None:
        """Start a new head (its GCS on `gcs_port` if given: ``prestart`` chose it), or join `address`."""
        if self.address is None:
            resources: dict[str, float] = {}
            cpus = 1.0
            for site in self.sites:
                if isinstance(site, EmbeddedRaySite):
                    offered = site.ray_resources()
                    cpus = max(cpus, offered.pop("CPU", 0.0))
                    resources.update(offered)
            init_embedded_ray(num_cpus=int(cpus), resources=resources,
                              object_store_mb=self.object_store_mb, namespace=NAMESPACE,
                              node_ip=self.ray_node_ip, gcs_port=gcs_port)
        else:
            connect_ray(self.address, namespace=NAMESPACE)
        self._owns_ray = True

    def close(self) -> None:
        """Stop the threads, close the actor (its agents cancel what runs) and the Ray this client started."""
        import ray

        self._closing = True
        with self._lock:
            self._wake.notify_all()
        try:
            ray.get(self._actor.close.remote(), timeout=60)
        finally:
            ray.kill(self._actor)
            for thread in self._threads:
                thread.join(timeout=5)
            if self._owns_ray:
                ray.shutdown()

    # ------------------------------------------------------------------------------ calls
    def call(self, method: str, *args: Any) -> Any:
        """Call a scheduler actor method and wait; its own MetaschedError comes out as is."""
        import ray

        try:
            return ray.get(getattr(self._actor, method).remote(*args))
        except ray.exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, MetaschedError):
                raise cause from None
            raise

    def enqueue(self, spec: TaskSpec, function: tuple[str, bytes] | None = None) -> None:
        """Queue a task (and its function, the first time) for the next batch."""
        with self._lock:
            if function is not None:
                self._outbox.functions[function[0]] = function[1]
            self._outbox.specs.append(spec)
            if len(self._outbox.specs) in (1, FLUSH_BATCH):
                self._wake.notify()

    def flush(self) -> None:
        """Return once every task queued so far is accepted and journaled by the scheduler."""
        with self._lock:
            self._outbox.requested += 1
            ticket = self._outbox.requested
            self._wake.notify()
            while self._outbox.done < ticket and self.error is None:
                self._flushed.wait(timeout=1.0)
        if self.error is not None:
            raise MetaschedError(f"campaign {self.name!r} stopped: {self.error}")

    # ------------------------------------------------------------------------------ threads
    def _flush_loop(self) -> None:
        box = self._outbox
        while True:
            with self._lock:
                while not box.specs and box.done >= box.requested and not self._closing:
                    self._wake.wait()
                if self._closing and not box.specs and box.done >= box.requested:
                    return
                gather = len(box.specs) < FLUSH_BATCH and box.done >= box.requested
            if gather:  # let a burst of submissions gather into one batch
                time.sleep(FLUSH_INTERVAL_S)
            with self._lock:
                specs, box.specs = box.specs, []
                functions, box.functions = box.functions, {}
                ticket = box.requested
            if specs or functions:
                try:
                    refused: dict[TaskId, str] = self.call("submit", specs, functions)
                except Exception as exc:
                    self._fail(exc)
                    return
                for task_id, why in refused.items():
                    self._on_refused(task_id, why)
                del specs, functions  # the actor has them: not held here until the next batch
            with self._lock:
                box.done = max(box.done, ticket)
                self._flushed.notify_all()

    def _event_loop(self) -> None:
        cursor = 0
        while not (self._closing and self._finished()):
            try:
                cursor, events = self.call("events", cursor, EVENT_POLL_S)
            except Exception as exc:
                if not self._closing:
                    self._fail(exc)
                return
            for event in events:
                self._on_event(event)

    def _fail(self, exc: BaseException) -> None:
        with self._lock:
            self.error = exc
            self._flushed.notify_all()
        self._on_failure(exc)
