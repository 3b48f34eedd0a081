"""The Python workflow API: campaigns, task functions, command tasks and their futures.

    with ms.Campaign("sweep", sites=[ms.LocalSite("local", cores=2)], journal="sweep.db") as c:
        @c.task(cores=1, walltime="00:10:00", retries=2)
        def square(x: int) -> int:
            return x * x

        total = c.task()(sum)([square(i) for i in range(100)])
        print(total.result())

Calling a task function returns a ``TaskFuture`` at once; a future anywhere in the arguments (also
inside lists, tuples and dicts) is a dependency. Submissions are sent to the scheduler in batches by a
background thread; ``Campaign.flush()`` returns once everything submitted so far is in the journal.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import os
import re
import sys
import sysconfig
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import cloudpickle

from metasched.catalog import remember
from metasched.data import DEFAULT_THRESHOLD, DataRef, DataSettings, StoreSpec, home_store
from metasched.data.driver import externalize_arguments, load_result
from metasched.data.pickling import dumps
from metasched.errors import ConfigurationError, MetaschedError, TaskError
from metasched.futures import P, R, TaskFunction, TaskFuture, as_completed, wait
from metasched.journal import Journal
from metasched.options import check_options, resources_from
from metasched.records import (
    CommandResult,
    CommandSpec,
    SiteName,
    TaskId,
    TaskKind,
    TaskRef,
    TaskSpec,
    parse_walltime,
    replace_nested,
)
from metasched.runtime import connect_ray, init_embedded_ray
from metasched.scheduler.actor import NAMESPACE, SchedulerActor, actor_name
from metasched.scheduler.service import SiteSummary, TaskEvent
from metasched.scheduler.states import TaskState
from site_agents.local import LocalSite

__all__ = ["Campaign", "TaskFunction", "TaskFuture", "as_completed", "wait"]


_FLUSH_BATCH = 1000
_FLUSH_INTERVAL_S = 0.002
_EVENT_POLL_S = 0.5
_LIBRARY_PATHS = tuple(
    p for p in {sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["purelib"],
                sysconfig.get_paths()["platlib"]} if p
)


def _is_library_module(module_name: str) -> bool:
    module = sys.modules.get(module_name)
    path = getattr(module, "__file__", None)
    if module is None or path is None or module_name in ("__main__", "builtins"):
        return module_name == "builtins"
    return bool(os.path.abspath(path).startswith(_LIBRARY_PATHS))


class Campaign:
    """A set of tasks scheduled across sites, journaled so it can be resumed after a crash.

    Args:
        name: the campaign's name (also names its scheduler actor: ``metasched.<name>``).
        sites: where tasks may run; default one LocalSite named "local" with every core.
        journal: the SQLite journal path; default ``<name>.db`` in the current directory.
        address: None starts an embedded Ray on this machine (127.0.0.1, small footprint); "auto" or
            "ray://host:port" joins an existing Ray cluster.
        policy: placement policy, "default" or "round-robin".
        object_store_mb: object store size of the embedded Ray.
        store: the driver's data store (also the default of local sites); default a file store in
            ``$METASCHED_HOME/data/<name>``.
        data_threshold: arguments and results bigger than this many bytes (pickled) are stored in a
            site's store and travel as proxies.
        evict_intermediates: evict a stored result once all tasks consuming it are done (unless the
            task has ``keep=True``); off by default because a future's result would then stop
            resolving. Copies made for consumers at other sites are always evicted after use.
        defaults: task options every task and command of this campaign gets unless it sets them
            itself, e.g. ``{"retries": 2, "container": ms.Image("app:1.0")}`` (not ``name``).
    """

    def __init__(
        self,
        name: str,
        *,
        sites: Sequence[Any] | None = None,
        journal: str | os.PathLike[str] | None = None,
        address: str | None = None,
        policy: str = "default",
        object_store_mb: int = 256,
        store: StoreSpec | None = None,
        data_threshold: int = DEFAULT_THRESHOLD,
        evict_intermediates: bool = False,
        defaults: Mapping[str, Any] | None = None,
        _resume: bool = False,
    ) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            raise ConfigurationError(f"campaign name {name!r} may hold only letters, digits, '_', '.', '-'.")
        self.name = name
        self.sites = list(sites) if sites is not None else [LocalSite(name="local")]
        names = [s.name for s in self.sites]
        if len(set(names)) != len(names):
            raise ConfigurationError(f"campaign {name!r}: site names must be unique, got {names}.")
        self.journal_path = Path(journal if journal is not None else f"{name}.db").resolve()
        self.address = address
        self.policy = policy
        self.object_store_mb = object_store_mb
        if data_threshold < 0:
            raise ConfigurationError(f"campaign {name!r}: data_threshold must not be negative.")
        self.data = DataSettings(home=store or home_store(name), threshold=data_threshold,
                                 evict_intermediates=evict_intermediates)
        self.defaults = dict(defaults or {})
        check_options(self.defaults, f"campaign {name!r} defaults")
        if "name" in self.defaults:
            raise ConfigurationError(f"campaign {name!r} defaults: 'name' names one task, not all of them.")
        self._resume = _resume
        self._futures: dict[TaskId, TaskFuture[Any]] = {}
        self._superseded: set[TaskId] = set()  # failed tasks that `retry` replaced
        self._functions: dict[Any, tuple[str, bytes]] = {}
        self._sent_digests: set[str] = set()
        self._buffer: list[TaskSpec] = []
        self._buffer_functions: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._flushed = threading.Condition(self._lock)
        self._flush_requested = 0
        self._flush_done = 0
        self._started = False
        self._closing = False
        self._owns_ray = False
        self._actor: Any = None
        self._threads: list[threading.Thread] = []
        self._background_error: BaseException | None = None

    # -------------------------------------------------------------------------------- lifecycle
    @classmethod
    def resume(
        cls,
        journal: str | os.PathLike[str],
        *,
        sites: Sequence[Any] | None = None,
        address: str | None = None,
        policy: str = "default",
    ) -> Campaign:
        """Reopen a campaign from its journal and start it.

        Finished tasks keep their results, lost attempts are resubmitted, pending tasks are scheduled.
        Sites default to the journaled ones.
        """
        path = Path(journal)
        if not path.exists():
            raise ConfigurationError(f"cannot resume: journal {path} does not exist.")
        stored = Journal(path).open()
        try:
            name = stored.get_meta("campaign")
            journaled_sites = stored.get_meta("sites")
            data: DataSettings | None = stored.get_meta("data")
            tasks = stored.task_index()
        finally:
            stored.close()
        if name is None:
            raise ConfigurationError(f"cannot resume: {path} is not a metasched campaign journal.")
        data = data or DataSettings(home=home_store(name))
        campaign = cls(name, sites=sites or journaled_sites, journal=path, address=address, policy=policy,
                       store=data.home, data_threshold=data.threshold,
                       evict_intermediates=data.evict_intermediates, _resume=True)
        for task_id, task_name, superseded in tasks:
            campaign._futures[task_id] = TaskFuture(campaign, task_id, task_name)
            if superseded:
                campaign._superseded.add(task_id)
        campaign.start()
        return campaign

    def start(self) -> Campaign:
        """Start Ray (embedded unless `address`), the scheduler actor and the driver threads."""
        if self._started:
            return self
        if not self._resume:
            self._claim_journal()
        if "ray" not in sys.modules or not sys.modules["ray"].is_initialized():
            self._init_ray()
        import ray

        existing = self._existing_actor(ray)
        if existing is not None:
            raise ConfigurationError(
                f"campaign {self.name!r} is already running (Ray actor {actor_name(self.name)!r}); "
                "close it first or use another name."
            )
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        actor_cls = ray.remote(num_cpus=0, max_restarts=0, max_concurrency=64)(SchedulerActor)
        self._actor = actor_cls.options(
            name=actor_name(self.name), namespace=NAMESPACE, lifetime="non_detached",
            scheduling_strategy=NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(),
                                                               soft=False),
        ).remote(journal_path=str(self.journal_path), sites=self.sites, policy=self.policy,
                 resume=self._resume, data=self.data)
        try:
            ray.get(self._actor.start.remote())
        except ray.exceptions.RayTaskError as exc:  # show our own error, not Ray's wrapping of it
            ray.kill(self._actor)
            if self._owns_ray:
                ray.shutdown()
            cause = exc.cause if isinstance(getattr(exc, "cause", None), MetaschedError) else None
            if cause is not None:
                raise cause from None
            raise
        self._started = True
        remember(self.name, self.journal_path)
        for target, label in ((self._flush_loop, "flush"), (self._event_loop, "events")):
            thread = threading.Thread(target=target, name=f"metasched-{self.name}-{label}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def _claim_journal(self) -> None:
        journal = Journal(self.journal_path).open()
        try:
            owner = journal.get_meta("campaign")
            count = len(journal.task_index())
            if owner is not None and count:
                raise ConfigurationError(
                    f"journal {self.journal_path} already holds campaign {owner!r} with {count} task(s); "
                    f"use Campaign.resume({str(self.journal_path)!r}) or another journal path."
                )
            journal.set_meta("campaign", self.name)
        finally:
            journal.close()

    def _init_ray(self) -> None:
        if self.address is None:
            local = [s for s in self.sites if isinstance(s, LocalSite)]
            init_embedded_ray(
                num_cpus=max([1, *(s.cores for s in local)]),
                resources={s.ray_resource: float(s.cores) for s in local},
                object_store_mb=self.object_store_mb,
                namespace=NAMESPACE,
            )
        else:
            connect_ray(self.address, namespace=NAMESPACE)
        self._owns_ray = True

    def _existing_actor(self, ray: Any) -> Any:
        try:
            return ray.get_actor(actor_name(self.name), namespace=NAMESPACE)
        except ValueError:
            return None

    def __enter__(self) -> Campaign:
        return self.start()

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.close(wait=exc_type is None)

    def close(self, *, wait: bool = True, timeout: float | None = None) -> None:
        """Stop the campaign.

        With wait, first wait for every task to finish; without, cancel what runs (unfinished tasks
        stay in the journal for ``Campaign.resume``).
        """
        if not self._started or self._closing:
            return
        try:
            self.flush()
            if wait:
                concurrent.futures.wait(list(self._futures.values()), timeout=timeout)
        finally:
            self._closing = True
            with self._lock:
                self._wake.notify_all()
            import ray

            try:
                ray.get(self._actor.close.remote(), timeout=60)
            finally:
                ray.kill(self._actor)
                for thread in self._threads:
                    thread.join(timeout=5)
                if self._owns_ray:
                    ray.shutdown()
                for future in self._futures.values():
                    if not future.done():
                        future.set_exception(MetaschedError(
                            f"campaign {self.name!r} was closed before task {future.name!r} "
                            f"({future.task_id}) finished; it stays in the journal: resume with "
                            f"Campaign.resume({str(self.journal_path)!r})."))

    # ------------------------------------------------------------------------------- submitting
    def task(self, fn: Callable[P, R] | None = None, **options: Any) -> Any:
        """Register a function as a task: ``@c.task`` or ``@c.task(cores=2)``.

        Options: cores, memory, gpus, walltime, nodes, retries, sites (allowed site names), tags
        (dict), name, keep, checkpoint, container (an ``ms.Image``: the function runs in the image's
        Python, which must have this Python's major.minor version).
        """
        check_options(options, "task options")

        def register(f: Callable[P, R]) -> TaskFunction[P, R]:
            return TaskFunction(self, f, options)

        return register(fn) if fn is not None else register

    def command(
        self,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        check: bool = True,
        after: Sequence[TaskFuture[Any]] = (),
        **options: Any,
    ) -> TaskFuture[CommandResult]:
        """Submit a command task (an argv list, never a shell string); its result is a CommandResult.

        With check (the default) a non-zero exit status fails the task. `after` adds dependencies.
        ``container=ms.Image(...)`` runs the argv inside that image (see docs/containers.md).
        """
        if isinstance(argv, str) or not argv or not all(isinstance(a, str) for a in argv):
            raise ConfigurationError(
                f"command argv must be a non-empty list of strings (no shell string), got {argv!r}."
            )
        check_options(options, f"command {argv[0]!r}")
        deps = [self._ref(f) for f in after]
        spec_cmd = CommandSpec(argv=tuple(argv), env=tuple(sorted((env or {}).items())),
                               cwd=os.fspath(cwd) if cwd is not None else None, check=check)
        name = str(options.get("name") or os.path.basename(argv[0]))
        return self._enqueue(name, TaskKind.COMMAND, options, deps=[d.task_id for d in deps],
                             command=spec_cmd)

    def _submit_function(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
                         options: dict[str, Any]) -> TaskFuture[Any]:
        deps: list[TaskId] = []
        args = self._replace_futures(args, deps)
        kwargs = self._replace_futures(kwargs, deps)
        digest, blob = self._pickled_function(fn)
        name = str(options.get("name") or getattr(fn, "__name__", "task"))
        task_id = TaskId(uuid.uuid4().hex[:16])
        inputs: tuple[DataRef, ...] = ()
        try:
            payload = dumps((args, kwargs))
            if len(payload) > self.data.threshold:
                args, kwargs, inputs = externalize_arguments(args, kwargs, task_id=task_id,
                                                             settings=self.data)
                payload = dumps((args, kwargs))
        except Exception as exc:
            raise ConfigurationError(f"the arguments of task {name!r} cannot be pickled or stored: "
                                     f"{exc}") from exc
        return self._enqueue(name, TaskKind.FUNCTION, options, deps=deps, digest=digest, blob=blob,
                             payload=payload, task_id=task_id, inputs=inputs)

    def _enqueue(self, name: str, kind: TaskKind, options: dict[str, Any], *, deps: list[TaskId],
                 digest: str | None = None, blob: bytes | None = None, payload: bytes = b"",
                 command: CommandSpec | None = None, task_id: TaskId | None = None,
                 inputs: tuple[DataRef, ...] = ()) -> TaskFuture[Any]:
        self._check_running()
        options = {**self.defaults, **options}
        wanted = options.get("checkpoint")
        if wanted == "criu" and kind is not TaskKind.COMMAND:
            raise ConfigurationError(f"task {name!r}: checkpoint='criu' is for command tasks; a Python task "
                                     "uses checkpoint='cooperative' and a ckpt handle.")
        if wanted == "cooperative" and kind is not TaskKind.FUNCTION:
            raise ConfigurationError(f"command {name!r}: checkpoint='cooperative' is for Python tasks (they "
                                     "get a ckpt handle); commands use checkpoint='criu'.")
        spec = TaskSpec(
            task_id=task_id or TaskId(uuid.uuid4().hex[:16]), name=name, kind=kind,
            resources=resources_from(options),
            retries=int(options.get("retries", 0)),
            sites=tuple(SiteName(s) for s in options.get("sites", ()) or ()),
            tags=tuple(sorted((str(k), str(v)) for k, v in (options.get("tags") or {}).items())),
            depends_on=tuple(dict.fromkeys(deps)), function_digest=digest, payload=payload, command=command,
            inputs=inputs, keep=bool(options.get("keep", False)), checkpoint=options.get("checkpoint"),
            checkpoint_every_s=parse_walltime(options.get("checkpoint_every")),
            container=options.get("container"),
        )
        return self._enqueue_spec(spec, blob)

    def _enqueue_spec(self, spec: TaskSpec, blob: bytes | None = None) -> TaskFuture[Any]:
        future: TaskFuture[Any] = TaskFuture(self, spec.task_id, spec.name)
        digest = spec.function_digest
        with self._lock:
            self._futures[spec.task_id] = future
            if digest is not None and blob is not None and digest not in self._sent_digests:
                self._buffer_functions[digest] = blob
                self._sent_digests.add(digest)
            self._buffer.append(spec)
            if len(self._buffer) in (1, _FLUSH_BATCH):
                self._wake.notify()
        return future

    def retry(self, names: Sequence[str] | None = None) -> list[TaskFuture[Any]]:
        """Run failed or cancelled tasks again, as new tasks; returns their futures.

        With names, only those tasks (by name) are retried, together with the failed tasks they depend
        on and the ones that failed because of them. The old tasks stay in the journal, marked as
        superseded. Finished results are reused.
        """
        self._check_running()
        self.flush()
        journal = Journal(self.journal_path).open()
        try:
            stored = [t for t in journal.tasks() if t.superseded_by is None]
            chosen = _retry_selection(stored, names)
            replacements = {t.spec.task_id: TaskId(uuid.uuid4().hex[:16])
                            for t in stored if t.spec.task_id in chosen}
            copies = [_retried(t.spec, replacements) for t in stored if t.spec.task_id in chosen]
            journal.supersede(replacements)
            self._superseded.update(replacements)
        finally:
            journal.close()
        return [self._enqueue_spec(copy) for copy in copies]

    def _ref(self, future: Any) -> TaskRef:
        if not isinstance(future, TaskFuture) or future.campaign is not self:
            raise ConfigurationError(f"{future!r} is not a future of campaign {self.name!r}.")
        return TaskRef(future.task_id)

    def _replace_futures(self, value: Any, deps: list[TaskId]) -> Any:
        def to_ref(future: TaskFuture[Any]) -> TaskRef:
            ref = self._ref(future)
            deps.append(ref.task_id)
            return ref

        return replace_nested(value, TaskFuture, to_ref)

    def _pickled_function(self, fn: Callable[..., Any]) -> tuple[str, bytes]:
        cached = self._functions.get(fn)
        if cached is not None:
            return cached
        module = getattr(fn, "__module__", None)
        if module and not _is_library_module(module) and module != "__main__":
            # Store the user's own code by value, so a resumed process can run it as it was submitted.
            cloudpickle.register_pickle_by_value(sys.modules[module])
        try:
            blob = cloudpickle.dumps(fn)
        except Exception as exc:
            raise ConfigurationError(f"task function {fn!r} cannot be pickled: {exc}") from exc
        entry = (hashlib.sha256(blob).hexdigest()[:20], blob)
        self._functions[fn] = entry
        return entry

    def _check_running(self) -> None:
        if not self._started or self._closing:
            raise ConfigurationError(f"campaign {self.name!r} is not running; use it inside `with` or "
                                     "call start() first.")
        if self._background_error is not None:
            raise MetaschedError(f"campaign {self.name!r} stopped: {self._background_error}")

    # ------------------------------------------------------------------------------ background
    def flush(self) -> None:
        """Return once every task submitted so far is accepted and journaled by the scheduler."""
        if not self._started:
            return
        with self._lock:
            self._flush_requested += 1
            ticket = self._flush_requested
            self._wake.notify()
            while self._flush_done < ticket and self._background_error is None:
                self._flushed.wait(timeout=1.0)
        if self._background_error is not None:
            raise MetaschedError(f"campaign {self.name!r} stopped: {self._background_error}")

    def _flush_loop(self) -> None:
        import ray

        while True:
            with self._lock:
                while not self._buffer and self._flush_done >= self._flush_requested and not self._closing:
                    self._wake.wait()
                if self._closing and not self._buffer and self._flush_done >= self._flush_requested:
                    return
                accumulate = len(self._buffer) < _FLUSH_BATCH and self._flush_done >= self._flush_requested
            if accumulate:  # let a burst of submissions gather into one batch
                time.sleep(_FLUSH_INTERVAL_S)
            with self._lock:
                specs, self._buffer = self._buffer, []
                functions, self._buffer_functions = self._buffer_functions, {}
                ticket = self._flush_requested
            if specs or functions:
                try:
                    refused = ray.get(self._actor.submit.remote(specs, functions))
                except Exception as exc:
                    self._fail_background(exc)
                    return
                for task_id, why in refused.items():
                    self._futures[task_id].set_exception(
                        ConfigurationError(f"task {self._futures[task_id].name!r} was refused: {why}"))
            with self._lock:
                self._flush_done = max(self._flush_done, ticket)
                self._flushed.notify_all()

    def _event_loop(self) -> None:
        import ray

        cursor = 0
        while not (self._closing and all(f.done() for f in self._futures.values())):
            try:
                cursor, events = ray.get(self._actor.events.remote(cursor, _EVENT_POLL_S))
            except Exception as exc:
                if not self._closing:
                    self._fail_background(exc)
                return
            for event in events:
                self._resolve(event)

    def _resolve(self, event: TaskEvent) -> None:
        future = self._futures.get(event.task_id)
        if future is None or future.done():
            return
        if event.state is TaskState.DONE and event.result is not None:
            try:
                future.set_result(load_result(event.result))
            except Exception as exc:
                future.set_exception(TaskError(
                    f"the result of task {future.name!r} ({future.task_id}) cannot be unpickled here: {exc}",
                    task_id=future.task_id, task_name=future.name))
        else:
            future.set_exception(event.error or TaskError(
                f"task {future.name!r} ({future.task_id}) ended {event.state.value} without an error.",
                task_id=future.task_id, task_name=future.name))

    def _fail_background(self, exc: BaseException) -> None:
        with self._lock:
            self._background_error = exc
            self._flushed.notify_all()
        for future in list(self._futures.values()):
            if not future.done():
                future.set_exception(MetaschedError(
                    f"campaign {self.name!r} lost its scheduler: {exc}. Resume it with "
                    f"Campaign.resume({str(self.journal_path)!r})."))

    # --------------------------------------------------------------------------------- queries
    def futures(self) -> list[TaskFuture[Any]]:
        """Every task's future, in submission order (also after a resume).

        Tasks that `retry` replaced are left out; their replacements are in.
        """
        return [f for tid, f in self._futures.items() if tid not in self._superseded]

    def cancel(self, *futures: TaskFuture[Any]) -> int:
        """Cancel tasks (their dependents fail with DependencyError). Returns how many were unfinished."""
        import ray

        self.flush()
        count: int = ray.get(self._actor.cancel.remote([self._ref(f).task_id for f in futures]))
        return count

    def drain(self, site: str, *, undo: bool = False) -> str:
        """Stop placing tasks at `site` and move its running checkpointable tasks to other sites.

        Tasks that cannot be checkpointed finish there. ``undo=True`` lets the site take work again.
        Returns what was done.
        """
        return self._ask("drain", site, undo)

    def checkpoint(self, future: TaskFuture[Any]) -> str:
        """Take a restart point of a running ``checkpoint="criu"`` task now; it keeps running.

        If its attempt is later lost (node failure, job killed), the next attempt restores from the
        newest restart point instead of starting over. Raises ConfigurationError saying why if not now.
        """
        return self._ask("checkpoint", self._ref(future).task_id)

    def migrate(self, future: TaskFuture[Any], *, to: str) -> str:
        """Checkpoint a running task (submitted with ``checkpoint="criu"``) and continue it at site `to`.

        Returns at once with what was asked; the task goes on at `to` from where it stopped (see
        docs/checkpointing.md). Raises ConfigurationError saying why if it cannot migrate now.
        """
        return self._ask("migrate", self._ref(future).task_id, to)

    def _ask(self, method: str, *args: Any) -> str:
        """Call a scheduler actor method; its own MetaschedError comes out as is."""
        import ray

        self.flush()
        try:
            message: str = ray.get(getattr(self._actor, method).remote(*args))
        except ray.exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, MetaschedError):
                raise cause from None
            raise
        return message

    def status(self) -> list[SiteSummary]:
        """Per-site counts of queued, running, done and failed tasks."""
        import ray

        self.flush()
        rows: list[SiteSummary] = ray.get(self._actor.summary.remote())
        return rows

    def __iter__(self) -> Iterator[TaskFuture[Any]]:
        return iter(self.futures())


def _retry_selection(stored: Sequence[Any], names: Sequence[str] | None) -> set[TaskId]:
    """Failed/cancelled tasks to retry.

    The named ones (all if none), their failed ancestors, and the failed tasks downstream of them.
    """
    failed = {t.spec.task_id for t in stored if t.state in (TaskState.FAILED, TaskState.CANCELLED)}
    by_id = {t.spec.task_id: t for t in stored}
    chosen = {tid for tid in failed if names is None or by_id[tid].spec.name in names}
    stack = list(chosen)
    while stack:
        for dep in by_id[stack.pop()].spec.depends_on:
            if dep in failed and dep not in chosen:
                chosen.add(dep)
                stack.append(dep)
    for task in stored:  # in submission order, so chains of dependents are covered
        if task.spec.task_id in failed and any(d in chosen for d in task.spec.depends_on):
            chosen.add(task.spec.task_id)
    return chosen


def _retried(spec: TaskSpec, replacements: dict[TaskId, TaskId]) -> TaskSpec:
    """A copy of `spec` under its new id, depending on the new copies of its retried dependencies."""
    deps = tuple(replacements.get(d, d) for d in spec.depends_on)
    payload = spec.payload
    if spec.kind is TaskKind.FUNCTION and deps != spec.depends_on:
        args, kwargs = cloudpickle.loads(payload)
        remap = lambda ref: TaskRef(replacements.get(ref.task_id, ref.task_id))  # noqa: E731
        payload = cloudpickle.dumps((replace_nested(args, TaskRef, remap),
                                     replace_nested(kwargs, TaskRef, remap)))
    return dataclasses.replace(spec, task_id=replacements[spec.task_id], depends_on=deps, payload=payload)
