"""Task futures behave as concurrent.futures futures (wait, as_completed, result with a timeout,
callbacks, many waiters) with their lean condition, and weigh a third of one."""

from __future__ import annotations

import concurrent.futures
import threading
import time
import tracemalloc
from typing import Any

import pytest

from metasched.futures import TaskFuture
from metasched.records import TaskId


def futures(n: int) -> list[TaskFuture[Any]]:
    return [TaskFuture(None, TaskId(f"{i:016x}"), "noop") for i in range(n)]  # type: ignore[arg-type]


def later(future: TaskFuture[Any], value: object, delay: float) -> None:
    def finish() -> None:
        time.sleep(delay)
        future.set_result(value)

    threading.Thread(target=finish).start()


def test_wait_and_as_completed_see_results_set_from_other_threads() -> None:
    fs = futures(60)
    for i, f in enumerate(fs):
        later(f, i, 0.002 * (i % 7))
    done, not_done = concurrent.futures.wait(fs, timeout=10)
    assert (len(done), len(not_done)) == (60, 0)
    assert sorted(f.result() for f in concurrent.futures.as_completed(fs)) == list(range(60))
    rest = futures(5)
    later(rest[2], "first", 0.05)
    done, not_done = concurrent.futures.wait(rest, timeout=5, return_when="FIRST_COMPLETED")
    assert [f.result() for f in done] == ["first"]
    assert len(not_done) == 4


def test_result_times_out_and_many_threads_wait_on_one_future() -> None:
    f, g = futures(2)
    with pytest.raises(concurrent.futures.TimeoutError):
        f.result(timeout=0.05)
    with pytest.raises(concurrent.futures.TimeoutError):
        f.result(timeout=0)
    seen: list[object] = []
    waiters = [threading.Thread(target=lambda: seen.append(f.result(timeout=10))) for _ in range(16)]
    for thread in waiters:
        thread.start()
    time.sleep(0.05)
    f.set_result(42)
    for thread in waiters:
        thread.join()
    assert seen == [42] * 16
    called: list[object] = []
    g.add_done_callback(lambda done: called.append(done.exception()))
    g.set_exception(ValueError("boom"))
    assert isinstance(called[0], ValueError)
    with pytest.raises(ValueError, match="boom"):
        g.result()


def test_concurrent_waits_under_churn_lose_no_wake_up() -> None:
    fs = futures(400)
    results: list[int] = []

    def consume() -> None:
        results.append(sum(1 for _ in concurrent.futures.as_completed(fs, timeout=30)))

    consumers = [threading.Thread(target=consume) for _ in range(6)]
    for thread in consumers:
        thread.start()
    for i, f in enumerate(fs):
        f.set_result(i)
        if i % 50 == 0:
            time.sleep(0.001)
    for thread in consumers:
        thread.join()
    assert results == [400] * 6


def test_a_task_future_weighs_a_third_of_a_plain_future() -> None:
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        plain = [concurrent.futures.Future() for _ in range(2000)]  # type: ignore[var-annotated]
        middle = tracemalloc.take_snapshot()
        lean = futures(2000)
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    plain_size = sum(s.size_diff for s in middle.compare_to(before, "filename")) / len(plain)
    lean_size = sum(s.size_diff for s in after.compare_to(middle, "filename")) / len(lean)
    assert lean_size < plain_size / 2.5, (lean_size, plain_size)
