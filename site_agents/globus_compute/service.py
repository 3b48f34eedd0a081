"""The narrow seam between the Globus Compute agent and whatever runs its tasks.

The agent hands over ``Call``s (an attempt's key and metasched's packed attempt) and gets back
``CallResult``s; everything it knows about attempts, data, errors and the journal stays on its side.
Two services sit behind the seam:

* ``CloudService``: the Globus cloud through ``globus_compute_sdk.Executor`` (batching, the SDK's rate
  limit, task groups for re-attaching). It needs Globus credentials and network access to Globus.
* ``OfflineService``: an offline endpoint process on 127.0.0.1 (``site_agents.globus_compute.offline``)
  running a real ``GlobusComputeEngine``; this side serializes the call with ``ComputeSerializer`` and
  packs it as a ``Task`` message, as the SDK and the cloud do, and unpacks the ``Result`` messages.

The function the endpoint runs is ``metasched.worker.run_packed`` (by reference; its one argument is
bytes), so the endpoint's Python environment needs metasched.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from metasched.errors import SiteAgentError
from metasched.worker import run_packed
from site_agents.globus_compute import offline
from site_agents.globus_compute.config import GlobusComputeSite


@dataclass(frozen=True, slots=True)
class Call:
    """One attempt to run: `payload` is ``metasched.worker.run_packed``'s argument."""

    key: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class CallResult:
    """How a call ended: `value` is run_packed's answer, or `error` is the endpoint's exception text."""

    key: str
    value: bytes | None = None
    error: str = ""
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EndpointLoad:
    """What an endpoint says of its load: every client's tasks, ours among them."""

    workers: int  # live workers (0: none yet, e.g. its blocks are still queued)
    idle_workers: int
    outstanding: int  # tasks it holds, queued or running


LOAD_FIELDS = ("total_workers", "idle_workers", "outstanding_tasks")


def endpoint_load(report: Mapping[str, Any]) -> EndpointLoad | None:
    """Read an endpoint's status report; None where it holds no load.

    Takes the cloud's ``GET /v2/endpoints/<id>/status`` document (``{"status": "online", "details":
    {...}}``) or an engine's own ``get_status_report().global_state`` (the same fields, flat).
    """
    if report.get("status", "online") != "online":
        return None
    details = report.get("details", report)
    if not isinstance(details, Mapping):
        return None
    values = [details.get(name) for name in LOAD_FIELDS]
    counts = [v for v in values if isinstance(v, int) and not isinstance(v, bool) and v >= 0]
    if len(counts) != len(LOAD_FIELDS):
        return None
    workers, idle, outstanding = counts
    return EndpointLoad(workers=workers, idle_workers=idle, outstanding=outstanding)


class ComputeService(Protocol):
    """Runs calls at one endpoint. Native ids identify a call to the service across client restarts."""

    def start(self) -> None:
        """Connect; raise SiteAgentError with the fix if the endpoint cannot be reached."""
        ...

    def reserve(self, key: str) -> str | None:
        """The native id the call will have, chosen before it is sent; None if the service chooses."""
        ...

    def submit(self, calls: Sequence[Call]) -> None:
        """Send one batch of calls (one request)."""
        ...

    def native_ids(self) -> dict[str, str]:
        """Native ids learned since the last call, by key."""
        ...

    def results(self) -> list[CallResult]:
        """Calls that ended since the last call."""
        ...

    def reattach(self, key: str, native_id: str) -> bool:
        """Follow a call an earlier client sent; False if the service does not know it."""
        ...

    def forget(self, keys: Sequence[str]) -> None:
        """Stop following these calls (cancelled: the endpoint may still run them)."""
        ...

    def load(self) -> EndpointLoad | None:
        """The endpoint's own report of its load (one request); None if it gives none."""
        ...

    def close(self) -> None:
        """Release connections (calls keep running at the endpoint)."""
        ...


def serializer(config: GlobusComputeSite) -> Any:
    """The site's ComputeSerializer."""
    from globus_compute_sdk.serialize import ComputeSerializer

    return ComputeSerializer(strategy_code=f"globus_compute_sdk.serialize.{config.code_strategy}",
                             strategy_data=f"globus_compute_sdk.serialize.{config.data_strategy}")


def pack_task(serde: Any, task_id: uuid.UUID, payload: bytes) -> bytes:
    """A packed ``Task`` message calling ``run_packed(payload)``, as the cloud hands it to an endpoint."""
    from globus_compute_common import messagepack
    from globus_compute_common.messagepack.message_types import Task

    buffers = [serde.serialize(run_packed), serde.serialize((payload,)), serde.serialize({})]
    buffer = serde.pack_buffers(buffers)
    return bytes(messagepack.pack(Task(task_id=task_id, task_buffer=buffer)))


def unpack_result(serde: Any, key: str, packed: bytes) -> CallResult:
    """A packed ``Result`` message as a CallResult (an endpoint-side error keeps its text)."""
    from globus_compute_common import messagepack
    from globus_compute_common.messagepack.message_types import Result

    result = messagepack.unpack(packed)
    if not isinstance(result, Result):
        kind = type(result).__name__
        return CallResult(key=key, error=f"the endpoint answered a {kind} message, not a Result")
    details = dict(result.details or {})
    if result.is_error:
        return CallResult(key=key, error=str(result.data), details=details)
    value = serde.deserialize(result.data)
    if not isinstance(value, bytes):
        return CallResult(key=key, error=f"the endpoint answered {type(value).__name__}, not metasched's "
                                         "bytes",
                          details=details)
    return CallResult(key=key, value=value, details=details)


class OfflineService:
    """Calls run by an offline endpoint process (a real GlobusComputeEngine) on 127.0.0.1."""

    def __init__(self, config: GlobusComputeSite) -> None:
        assert config.offline_endpoint is not None  # noqa: S101  (checked by GlobusComputeSite)
        assert config.authkey_file is not None  # noqa: S101
        self.config = config
        self._serde = serializer(config)
        self._endpoint: Any = None
        self._task_ids: dict[str, str] = {}  # key -> task id, until the result arrives
        self._reserved: dict[str, str] = {}

    def start(self) -> None:
        """Connect; raise SiteAgentError with the fix if the endpoint cannot be used."""
        try:
            authkey = Path(str(self.config.authkey_file)).read_bytes().strip()
        except OSError as exc:
            raise SiteAgentError(f"site {self.config.name}: cannot read authkey_file "
                                 f"{self.config.authkey_file}: {exc.strerror}",
                                 site=self.config.name) from None
        try:
            self._endpoint = offline.connect(str(self.config.offline_endpoint), authkey)
        except OSError as exc:
            raise SiteAgentError(
                f"site {self.config.name}: no offline endpoint answers at {self.config.offline_endpoint} "
                f"({exc}); start one with `python -m site_agents.globus_compute.offline` (see "
                "docs/sites/globus-compute.md)", site=self.config.name, transient=True) from None
        except Exception as exc:  # multiprocessing.AuthenticationError: say which, never the key
            raise SiteAgentError(f"site {self.config.name}: the offline endpoint at "
                                 f"{self.config.offline_endpoint} refused the key in "
                                 f"{self.config.authkey_file} "
                                 f"({type(exc).__name__})", site=self.config.name) from None

    def reserve(self, key: str) -> str | None:
        """Task ids are chosen here (the endpoint takes them as given), so they are journaled first."""
        return self._reserved.setdefault(key, str(uuid.uuid4()))

    def submit(self, calls: Sequence[Call]) -> None:
        """Send one batch of calls."""
        tasks = []
        for call in calls:
            task_id = uuid.UUID(self.reserve(call.key))
            tasks.append((str(task_id), pack_task(self._serde, task_id, call.payload)))
        self._endpoint.submit(tasks)  # the endpoint ignores a task id it already has
        for call in calls:
            self._task_ids[call.key] = self._reserved.pop(call.key)

    def native_ids(self) -> dict[str, str]:
        """Task ids learned since the last call, by key."""
        return {}  # all reserved

    def results(self) -> list[CallResult]:
        """Calls that ended since the last call."""
        if not self._task_ids:
            return []
        by_task = {t: k for k, t in self._task_ids.items()}
        done = self._endpoint.results(list(by_task))
        out = []
        for task_id, packed in done.items():
            key = by_task[task_id]
            del self._task_ids[key]
            out.append(unpack_result(self._serde, key, packed))
        return out

    def reattach(self, key: str, native_id: str) -> bool:
        """Follow a call an earlier client sent; False if the service does not know it."""
        if not self._endpoint.known([native_id]):
            return False
        self._task_ids[key] = native_id
        return True

    def forget(self, keys: Sequence[str]) -> None:
        """Stop following these calls."""
        for key in keys:
            self._task_ids.pop(key, None)
            self._reserved.pop(key, None)

    def load(self) -> EndpointLoad | None:
        """The engine's status report, as the endpoint process reads it."""
        return endpoint_load(self._endpoint.status().get("engine", {}))

    def close(self) -> None:
        """Release the connection (calls keep running at the endpoint)."""
        self._endpoint = None


class CloudService:
    """Calls sent through the Globus cloud with the SDK's Executor.

    Credentials come from the SDK's own mechanisms (``GLOBUS_COMPUTE_CLIENT_ID``/``_SECRET`` or
    stored tokens); metasched never reads or logs them.

    Native ids are ``<task group id>:<task id>``: a resumed campaign reloads the task group and finds
    its calls again instead of sending them twice.
    """

    def __init__(self, config: GlobusComputeSite) -> None:
        self.config = config
        self._executor: Any = None
        self._futures: dict[str, Any] = {}
        self._reported: set[str] = set()
        self._reloaded: dict[str, Any] | None = None

    def start(self) -> None:
        """Connect; raise SiteAgentError with the fix if the endpoint cannot be used."""
        from globus_compute_sdk import Executor

        try:
            self._executor = Executor(
                endpoint_id=self.config.endpoint_id,
                user_endpoint_config=self.config.user_endpoint_config or None,
                batch_size=self.config.batch_size, serializer=serializer(self.config),
                api_burst_limit=max(1, int(self.config.requests_per_s * 4)), api_burst_window_s=4,
                label=f"metasched-{self.config.name}")
        except Exception as exc:
            raise SiteAgentError(f"site {self.config.name}: cannot reach Globus Compute for endpoint "
                                 f"{self.config.endpoint_id}: {type(exc).__name__}: {exc}",
                                 site=self.config.name, transient=True) from None

    def reserve(self, key: str) -> str | None:
        """The call's task id before it is sent, or None."""
        return None  # the service gives task ids once a batch is sent

    def submit(self, calls: Sequence[Call]) -> None:
        """Send one batch of calls."""
        for call in calls:
            self._futures[call.key] = self._executor.submit(run_packed, call.payload)

    def native_ids(self) -> dict[str, str]:
        """Task ids learned since the last call, by key."""
        new = {}
        group = self._executor.task_group_id
        for key, future in self._futures.items():
            if key not in self._reported and getattr(future, "task_id", None):
                new[key] = f"{group}:{future.task_id}"
                self._reported.add(key)
        return new

    def results(self) -> list[CallResult]:
        """Calls that ended since the last call."""
        out = []
        for key, future in list(self._futures.items()):
            if not future.done():
                continue
            del self._futures[key]
            self._reported.discard(key)
            error = future.exception()
            if error is not None:
                out.append(CallResult(key=key, error=f"{type(error).__name__}: {error}"))
            else:
                out.append(CallResult(key=key, value=future.result()))
        return out

    def reattach(self, key: str, native_id: str) -> bool:
        """Follow a call an earlier client sent; False if the service does not know it."""
        group, _, task_id = native_id.partition(":")
        if self._reloaded is None:
            self._executor.task_group_id = group
            self._reloaded = {str(f.task_id): f for f in self._executor.reload_tasks(group)}
        future = self._reloaded.get(task_id)
        if future is None:
            return False
        self._futures[key] = future
        self._reported.add(key)
        return True

    def forget(self, keys: Sequence[str]) -> None:
        """Stop following these calls."""
        for key in keys:
            future = self._futures.pop(key, None)
            if future is not None:
                future.cancel()  # only a call not yet sent is really withdrawn

    def load(self) -> EndpointLoad | None:
        """What the endpoint last reported to the cloud (its status; read by this client's own login)."""
        return endpoint_load(self._executor.client.get_endpoint_status(self.config.endpoint_id))

    def close(self) -> None:
        """Release the connection (calls keep running at the endpoint)."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
