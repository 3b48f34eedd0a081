"""Transfer steps: copies of objects between stores that tasks wait for, retried, then failed clearly.

The manager is driven by the scheduler loop (``request`` when a task is placed away from its inputs,
``poll`` every step). Copies run through a ``TransferRunner``: by default in a Ray actor (another
process, so no object ever passes through the scheduler's memory).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from metasched.data.objects import CopyResult, DataRef, copy_object
from metasched.data.stores import StoreSpec
from metasched.ssh import close_shared

_Key = tuple[str, str]  # (object id, target store id)


class TransferRunner(Protocol):
    """Runs copies somewhere other than the scheduler's thread."""

    def start(self, ref: DataRef, target: StoreSpec) -> Any:
        """Begin copying `ref` into `target`; returns a handle."""
        ...

    def finished(self, handles: list[Any]) -> list[tuple[Any, CopyResult]]:
        """The handles whose copy ended, with how it went (without blocking)."""
        ...

    def close(self) -> None:
        """Stop copying and let go of connections (copies in flight are abandoned)."""
        ...


class _TransferWorker:
    """A long-lived Ray actor that copies objects on a few threads (no worker start-up per copy)."""

    def copy(self, ref: DataRef, target: StoreSpec) -> CopyResult:
        """Copy one object (see copy_object)."""
        return copy_object(ref, target)

    def close(self) -> None:
        """Close the SSH connections copies opened (to stores at hosts over SSH)."""
        close_shared()


class RayTransferRunner:
    """Copies run in one Ray actor process on the scheduler's node, `concurrency` at a time.

    A Ray task per copy would start a fresh worker process for most copies (Ray kills idle workers
    beyond the CPU count after a second), which cost more than the copy itself in benchmarks.
    """

    def __init__(self, concurrency: int = 4) -> None:
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        self._ray = ray
        strategy = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=True)
        self._worker = ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0,
                                  max_concurrency=concurrency)(_TransferWorker).options(
            scheduling_strategy=strategy).remote()

    def start(self, ref: DataRef, target: StoreSpec) -> Any:
        """Hand the copy to the transfer actor."""
        return self._worker.copy.remote(ref, target)

    def finished(self, handles: list[Any]) -> list[tuple[Any, CopyResult]]:
        """Collect finished copies with one ray.wait."""
        if not handles:
            return []
        ready, _ = self._ray.wait(handles, num_returns=len(handles), timeout=0)
        out = []
        for handle in ready:
            try:
                out.append((handle, self._ray.get(handle)))
            except self._ray.exceptions.RayError as exc:
                out.append((handle, CopyResult(ref=None, error=f"transfer worker failed: {exc}")))
        return out

    def close(self) -> None:
        """Close the worker's connections, then the worker."""
        with contextlib.suppress(self._ray.exceptions.RayError):
            self._ray.get(self._worker.close.remote(), timeout=30)
        self._ray.kill(self._worker)


class ThreadTransferRunner:
    """Copies on a thread pool in this process (tests and Ray-less use; objects pass through memory)."""

    def __init__(self, workers: int = 4) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="metasched-transfer")

    def start(self, ref: DataRef, target: StoreSpec) -> Any:
        """Copy on a pool thread."""
        return self._pool.submit(copy_object, ref, target)

    def finished(self, handles: list[Any]) -> list[tuple[Any, CopyResult]]:
        """The futures that are done."""
        done: list[Future[CopyResult]] = [h for h in handles if h.done()]
        return [(h, h.result()) for h in done]

    def close(self) -> None:
        """Stop the pool and close the connections copies opened."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        close_shared()


@dataclass(slots=True, kw_only=True)
class _Copy:
    source: DataRef
    target: StoreSpec
    handle: Any
    tries: int = 1
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferReport:
    """What one poll learned."""

    arrived: list[tuple[DataRef, DataRef, float]]  # (source, new replica, seconds)
    ready: list[str]  # tasks whose inputs are all in place
    failed: list[tuple[str, DataRef, StoreSpec, str]]  # (task, source, target, why)


class TransferManager:
    """Tracks copies in flight and the tasks waiting for them."""

    def __init__(self, runner: TransferRunner, *, retries: int = 2) -> None:
        self._runner = runner
        self.retries = retries
        self._copies: dict[_Key, _Copy] = {}
        self._waiting: dict[str, set[_Key]] = {}

    def request(self, task_id: str, sources: Iterable[DataRef], target: StoreSpec) -> int:
        """Task `task_id` needs these objects in `target`; starts copies not already in flight."""
        keys = set()
        for ref in sources:
            key = (ref.object_id, target.store_id)
            keys.add(key)
            if key not in self._copies:
                self._copies[key] = _Copy(source=ref, target=target, handle=self._runner.start(ref, target))
        self._waiting[task_id] = keys
        return len(keys)

    def forget(self, task_id: str) -> None:
        """The task no longer waits (cancelled or failed); copies in flight still finish."""
        self._waiting.pop(task_id, None)

    def close(self) -> None:
        """Stop: copies in flight are abandoned (their consumers are not waited for any more)."""
        self._runner.close()

    @property
    def in_flight(self) -> int:
        """Copies not yet finished."""
        return len(self._copies)

    def poll(self) -> TransferReport:
        """Collect finished copies: retry failures, report arrivals, ready tasks and failed ones."""
        by_handle = {id(c.handle): (k, c) for k, c in self._copies.items()}
        arrived: list[tuple[DataRef, DataRef, float]] = []
        broken: dict[_Key, tuple[_Copy, str]] = {}
        for handle, result in self._runner.finished([c.handle for c in self._copies.values()]):
            key, copy = by_handle[id(handle)]
            if result.ref is not None:
                del self._copies[key]
                arrived.append((copy.source, result.ref, result.seconds))
                continue
            copy.errors.append(result.error)
            if copy.tries <= self.retries:
                copy.tries += 1
                copy.handle = self._runner.start(copy.source, copy.target)
            else:
                del self._copies[key]
                broken[key] = (copy, result.error)
        done_keys = {(new.object_id, new.store.store_id) for _, new, _ in arrived}
        ready: list[str] = []
        failed: list[tuple[str, DataRef, StoreSpec, str]] = []
        for task_id, keys in list(self._waiting.items()):
            bad = next((k for k in keys if k in broken), None)
            if bad is not None:
                copy, why = broken[bad]
                failed.append((task_id, copy.source, copy.target,
                               f"{why} (tried {copy.tries} time(s))"))
                del self._waiting[task_id]
                continue
            keys -= done_keys
            if not keys:
                ready.append(task_id)
                del self._waiting[task_id]
        return TransferReport(arrived=arrived, ready=ready, failed=failed)
