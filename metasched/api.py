"""The Python workflow API: campaigns, task functions, command tasks and their futures.

    with ms.Campaign("sweep", sites=[ms.LocalSite("local", cores=2)], journal="sweep.db") as c:
        @c.task(cores=1, walltime="00:10:00", retries=2)
        def square(x: int) -> int:
            return x * x

        total = c.task()(sum)([square(i) for i in range(100)])
        print(total.result())

Calling a task function returns a ``TaskFuture`` at once; a future anywhere in the arguments (also
inside lists, tuples and dicts) is a dependency. ``Campaign`` is a facade: it turns calls into typed task
specs and futures; ``metasched.client.SchedulerClient`` owns Ray, the scheduler actor and the threads that
send submissions in batches and resolve futures (``Campaign.flush()`` returns once everything submitted so
far is in the journal).
"""

from __future__ import annotations

import concurrent.futures
import os
import re
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from metasched.catalog import remember
from metasched.client import SchedulerClient
from metasched.data import DEFAULT_THRESHOLD, DataRef, DataSettings, StoreSpec, home_store
from metasched.data.driver import load_result, pack_arguments
from metasched.data.serializers import DEFAULT_SERIALIZER
from metasched.errors import ConfigurationError, MetaschedError, TaskError
from metasched.functions import FunctionCache
from metasched.futures import P, R, TaskFunction, TaskFuture, as_completed, wait
from metasched.journal import Journal
from metasched.options import check_options, task_spec
from metasched.placement import PlacementPolicy, as_policy
from metasched.records import CommandResult, CommandSpec, TaskId, TaskKind, TaskRef, TaskSpec, replace_nested
from metasched.retry import retried, retry_selection
from metasched.scheduler.events import SiteSummary, TaskEvent
from metasched.scheduler.states import TaskState
from metasched.sites.registry import default_sites
from metasched.ssh import close_shared

__all__ = ["Campaign", "TaskFunction", "TaskFuture", "as_completed", "wait"]


class Campaign:
    """A set of tasks scheduled across sites, journaled so it can be resumed after a crash.

    Args:
        name: the campaign's name (also names its scheduler actor: ``metasched.<name>``).
        sites: where tasks may run; default one LocalSite named "local" with every core.
        journal: the SQLite journal path; default ``<name>.db`` in the current directory.
        address: None starts an embedded Ray on this machine (127.0.0.1, small footprint); "auto" or
            "ray://host:port" joins an existing Ray cluster.
        ray_node_ip: the address other nodes reach the embedded Ray head at, for pilot blocks to join it
            (``"auto"``: the address Ray detects). Ray then listens on every interface of this machine
            (see docs/pilots.md); None keeps it on 127.0.0.1 (no pilots can join).
        policy: placement policy: "default", "round-robin", the name an installed package gives one
            (entry point group ``metasched.placement_policies``), or an object with a
            ``choose(spec, candidates, transfer_s)`` method (``metasched.placement.PlacementPolicy``).
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
        serializer: how Python tasks' arguments and results travel: "cloudpickle" (default), "pickle",
            "dill", or one an installed package declares (docs/workflows.md); a task may set its own.
    """

    def __init__(
        self,
        name: str,
        *,
        sites: Sequence[Any] | None = None,
        journal: str | os.PathLike[str] | None = None,
        address: str | None = None,
        ray_node_ip: str | None = None,
        policy: str | PlacementPolicy = "default",
        object_store_mb: int = 256,
        store: StoreSpec | None = None,
        data_threshold: int = DEFAULT_THRESHOLD,
        evict_intermediates: bool = False,
        defaults: Mapping[str, Any] | None = None,
        serializer: str | None = None,
        _resume: bool = False,
    ) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            raise ConfigurationError(f"campaign name {name!r} may hold only letters, digits, '_', '.', '-'.")
        self.name = name
        self.sites = list(sites) if sites is not None else default_sites()
        names = [s.name for s in self.sites]
        if len(set(names)) != len(names):
            raise ConfigurationError(f"campaign {name!r}: site names must be unique, got {names}.")
        self.journal_path = Path(journal if journal is not None else f"{name}.db").resolve()
        self.address = address
        try:
            as_policy(policy)  # an unknown name or an object without choose() fails here, not in the actor
        except ValueError as exc:
            raise ConfigurationError(f"campaign {name!r}: {exc}") from None
        self.policy = policy
        self.object_store_mb = object_store_mb
        if data_threshold < 0:
            raise ConfigurationError(f"campaign {name!r}: data_threshold must not be negative.")
        self.data = DataSettings(home=store or home_store(name), threshold=data_threshold,
                                 evict_intermediates=evict_intermediates)
        self.defaults = {**(defaults or {}), **({"serializer": serializer} if serializer else {})}
        check_options(self.defaults, f"campaign {name!r} defaults")
        if "name" in self.defaults:
            raise ConfigurationError(f"campaign {name!r} defaults: 'name' names one task, not all of them.")
        self._futures: dict[TaskId, TaskFuture[Any]] = {}
        self._superseded: set[TaskId] = set()  # failed tasks that `retry` replaced
        self._functions = FunctionCache()
        self._sent_digests: set[str] = set()
        self._lock = threading.Lock()
        self._started = False
        self._closing = False
        self._client = SchedulerClient(
            name=name, journal=self.journal_path, sites=self.sites, address=address, ray_node_ip=ray_node_ip,
            policy=policy,
            object_store_mb=object_store_mb, data=self.data, resume=_resume, on_event=self._resolve,
            on_refused=self._refused, on_failure=self._fail_all,
            finished=lambda: all(f.done() for f in self._futures.values()))

    # -------------------------------------------------------------------------------- lifecycle
    @classmethod
    def resume(
        cls,
        journal: str | os.PathLike[str],
        *,
        sites: Sequence[Any] | None = None,
        address: str | None = None,
        ray_node_ip: str | None = None,
        policy: str | PlacementPolicy | None = None,
    ) -> Campaign:
        """Reopen a campaign from its journal and start it.

        Finished tasks keep their results, lost attempts are resubmitted, pending tasks are scheduled.
        Sites, and a policy given by name, default to the journaled ones.
        """
        path = Path(journal)
        if not path.exists():
            raise ConfigurationError(f"cannot resume: journal {path} does not exist.")
        stored = Journal(path).open()
        try:
            name = stored.get_meta("campaign")
            journaled_sites = stored.get_meta("sites")
            data: DataSettings | None = stored.get_meta("data")
            policy = policy if policy is not None else stored.get_meta("policy") or "default"
            tasks = stored.task_index()
        finally:
            stored.close()
        if name is None:
            raise ConfigurationError(f"cannot resume: {path} is not a metasched campaign journal.")
        data = data or DataSettings(home=home_store(name))
        campaign = cls(name, sites=sites or journaled_sites, journal=path, address=address,
                       ray_node_ip=ray_node_ip, policy=policy, store=data.home, data_threshold=data.threshold,
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
        self._client.start()
        self._started = True
        remember(self.name, self.journal_path)
        return self

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
            try:
                self._client.close()
            finally:
                close_shared()  # SSH connections this process opened to read stored results
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
        digest, blob = self._functions.pickled(fn)
        name = str(options.get("name") or getattr(fn, "__name__", "task"))
        task_id = TaskId(uuid.uuid4().hex[:16])
        serializer = str(options.get("serializer") or self.defaults.get("serializer") or DEFAULT_SERIALIZER)
        payload, inputs = pack_arguments(args, kwargs, task_name=name, task_id=task_id, settings=self.data,
                                         serializer=serializer)
        return self._enqueue(name, TaskKind.FUNCTION, options, deps=deps, digest=digest, blob=blob,
                             payload=payload, task_id=task_id, inputs=inputs)

    def _enqueue(self, name: str, kind: TaskKind, options: dict[str, Any], *, deps: list[TaskId],
                 digest: str | None = None, blob: bytes | None = None, payload: bytes = b"",
                 command: CommandSpec | None = None, task_id: TaskId | None = None,
                 inputs: tuple[DataRef, ...] = ()) -> TaskFuture[Any]:
        self._check_running()
        spec = task_spec(name, kind, {**self.defaults, **options},
                         task_id=task_id or TaskId(uuid.uuid4().hex[:16]),
                         deps=deps, digest=digest, payload=payload, command=command, inputs=inputs)
        return self._enqueue_spec(spec, blob)

    def _enqueue_spec(self, spec: TaskSpec, blob: bytes | None = None) -> TaskFuture[Any]:
        future: TaskFuture[Any] = TaskFuture(self, spec.task_id, spec.name)
        digest = spec.function_digest
        function = None
        with self._lock:
            self._futures[spec.task_id] = future
            if digest is not None and blob is not None and digest not in self._sent_digests:
                function = (digest, blob)
                self._sent_digests.add(digest)
        self._client.enqueue(spec, function)
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
            chosen = retry_selection(stored, names)
            replacements = {t.spec.task_id: TaskId(uuid.uuid4().hex[:16])
                            for t in stored if t.spec.task_id in chosen}
            copies = [retried(t.spec, replacements) for t in stored if t.spec.task_id in chosen]
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

    def _check_running(self) -> None:
        if not self._started or self._closing:
            raise ConfigurationError(f"campaign {self.name!r} is not running; use it inside `with` or "
                                     "call start() first.")
        if self._client.error is not None:
            raise MetaschedError(f"campaign {self.name!r} stopped: {self._client.error}")

    # ------------------------------------------------------------------------------ background
    def flush(self) -> None:
        """Return once every task submitted so far is accepted and journaled by the scheduler."""
        if self._started:
            self._client.flush()

    def _refused(self, task_id: TaskId, why: str) -> None:
        future = self._futures[task_id]
        future.set_exception(ConfigurationError(f"task {future.name!r} was refused: {why}"))

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

    def _fail_all(self, exc: BaseException) -> None:
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
        self.flush()
        count: int = self._client.call("cancel", [self._ref(f).task_id for f in futures])
        return count

    def drain(self, site: str, *, undo: bool = False) -> str:
        """Stop placing tasks at `site` and move its running checkpointable tasks to other sites.

        Tasks that cannot be checkpointed finish there (so do the rest while it does not answer: drain
        again). ``undo=True`` lets the site take work again. Returns what was done.
        """
        return self._ask("drain", site, undo)

    def checkpoint(self, future: TaskFuture[Any]) -> str:
        """Take a restart point of a running ``checkpoint="criu"`` task now; it keeps running.

        If its attempt is later lost (node failure, job killed), the next attempt restores from the
        newest restart point instead of starting over. Raises ConfigurationError saying why if not now
        (SiteAgentError if its site does not answer or its command failed: ask again).
        """
        return self._ask("checkpoint", self._ref(future).task_id)

    def migrate(self, future: TaskFuture[Any], *, to: str) -> str:
        """Checkpoint a running task (``checkpoint="criu"`` or ``"cooperative"``) and continue it at `to`.

        Returns at once with what was asked; the task goes on at `to` from where it stopped (see
        docs/checkpointing.md). Raises ConfigurationError saying why if it cannot migrate now
        (SiteAgentError if its site does not answer or its command failed: it runs on there; ask again).
        """
        return self._ask("migrate", self._ref(future).task_id, to)

    def _ask(self, method: str, *args: Any) -> str:
        """Call a scheduler actor method; its own MetaschedError comes out as is."""
        self.flush()
        message: str = self._client.call(method, *args)
        return message

    def status(self) -> list[SiteSummary]:
        """Per-site counts of queued, running, done and failed tasks."""
        self.flush()
        rows: list[SiteSummary] = self._client.call("summary")
        return rows

    def __iter__(self) -> Iterator[TaskFuture[Any]]:
        return iter(self.futures())
