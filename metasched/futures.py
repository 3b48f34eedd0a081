"""Task futures and task functions: what calling a task returns, and what ``@c.task`` returns."""

from __future__ import annotations

import _thread
import concurrent.futures
import functools
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

from metasched.records import TaskId

if TYPE_CHECKING:
    from metasched.api import Campaign

P = ParamSpec("P")
R = TypeVar("R")


class _LeanCondition:
    """What ``concurrent.futures.Future`` needs of its condition, in ~100 bytes instead of ~1 KB.

    A campaign holds a future per task, a million of them in a big one: ``threading.Condition`` (an RLock,
    a waiter deque, bound methods) was two thirds of each future's size. Future uses its condition as a
    context manager, ``acquire``/``release`` (``concurrent.futures.wait``), ``wait(timeout)`` and
    ``notify_all()``, never re-entrantly, so a plain lock and a waiter list made on first wait suffice.
    The waiting is ``threading.Condition.wait``'s: a lock per waiter, released by ``notify_all``.
    """

    __slots__ = ("_lock", "_waiters")

    def __init__(self) -> None:
        self._lock = _thread.allocate_lock()
        self._waiters: list[_thread.LockType] | None = None

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """Take the lock."""
        return self._lock.acquire(blocking, timeout)

    def release(self) -> None:
        """Give the lock back."""
        self._lock.release()

    def __enter__(self) -> bool:
        return self._lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self._lock.release()

    def wait(self, timeout: float | None = None) -> bool:
        """Release the lock, wait for notify_all (or the timeout), take the lock again."""
        waiter = _thread.allocate_lock()
        waiter.acquire()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        self._lock.release()
        notified = False
        try:
            if timeout is None:
                notified = waiter.acquire()
            elif timeout > 0:
                notified = waiter.acquire(True, timeout)
            else:
                notified = waiter.acquire(False)
            return notified
        finally:
            self._lock.acquire()
            if not notified and self._waiters is not None and waiter in self._waiters:
                self._waiters.remove(waiter)

    def notify_all(self) -> None:
        """Wake every waiter (called with the lock held)."""
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            waiter.release()


class TaskFuture(concurrent.futures.Future[R]):
    """The future result of one task; works with ``ms.wait`` and ``ms.as_completed``.

    ``cancel()`` asks the scheduler to cancel the task (it then fails with TaskCancelledError) and
    returns False if the task had already finished.
    """

    def __init__(self, campaign: Campaign, task_id: TaskId, name: str) -> None:
        # concurrent.futures.Future.__init__'s fields, with a lean condition instead of threading.Condition
        self._condition = _LeanCondition()  # type: ignore[assignment]
        self._state = "PENDING"
        self._result: R | None = None
        self._exception: BaseException | None = None
        self._waiters: list[Any] = []
        self._done_callbacks: list[Callable[[concurrent.futures.Future[R]], object]] = []
        self.campaign = campaign
        self.task_id = task_id
        self.name = name

    def cancel(self) -> bool:
        """Ask the scheduler to cancel this task."""
        if self.done():
            return False
        self.campaign.cancel(self)
        return True

    def __repr__(self) -> str:
        return f"<TaskFuture {self.name} ({self.task_id}) {self._state.lower()}>"


class TaskFunction(Generic[P, R]):
    """A function registered with a campaign: calling it submits a task and returns its future."""

    def __init__(self, campaign: Campaign, fn: Callable[P, R], options: dict[str, Any]) -> None:
        self.campaign = campaign
        self.fn = fn
        self.options = options
        self.__wrapped__ = fn
        functools.update_wrapper(self, fn)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> TaskFuture[R]:
        """Submit one task calling the function with these arguments."""
        return self.campaign._submit_function(self.fn, args, kwargs, self.options)


def wait(
    futures: Sequence[TaskFuture[Any]], timeout: float | None = None, return_when: str = "ALL_COMPLETED"
) -> concurrent.futures._base.DoneAndNotDoneFutures[Any]:
    """``concurrent.futures.wait`` for task futures."""
    return concurrent.futures.wait(futures, timeout=timeout, return_when=return_when)


def as_completed(futures: Sequence[TaskFuture[Any]], timeout: float | None = None) -> Iterator[Any]:
    """``concurrent.futures.as_completed`` for task futures."""
    return concurrent.futures.as_completed(futures, timeout=timeout)
