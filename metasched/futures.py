"""Task futures and task functions: what calling a task returns, and what ``@c.task`` returns."""

from __future__ import annotations

import concurrent.futures
import functools
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

from metasched.records import TaskId

if TYPE_CHECKING:
    from metasched.api import Campaign

P = ParamSpec("P")
R = TypeVar("R")


class TaskFuture(concurrent.futures.Future[R]):
    """The future result of one task; works with ``ms.wait`` and ``ms.as_completed``.

    ``cancel()`` asks the scheduler to cancel the task (it then fails with TaskCancelledError) and
    returns False if the task had already finished.
    """

    def __init__(self, campaign: Campaign, task_id: TaskId, name: str) -> None:
        super().__init__()
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
