"""Campaigns on the local site, through the real Ray-backed scheduler (embedded Ray, no mocks)."""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import metasched as ms

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_local")]
_names = itertools.count()


@pytest.fixture
def campaign(tmp_path: Path) -> Iterator[ms.Campaign]:
    name = f"test-{os.getpid()}-{next(_names)}"
    with ms.Campaign(name, sites=[ms.LocalSite("local", cores=2)], journal=tmp_path / "c.db") as c:
        yield c


def test_issue_example_sum_of_squares_and_command(campaign: ms.Campaign) -> None:
    c = campaign

    @c.task(cores=1, walltime="00:10:00", retries=2)
    def square(x: int) -> int:
        return x * x

    squares = [square(i) for i in range(100)]
    total = c.task()(sum)(squares)
    sim = c.command(["python3", "-c", "print(42)"], cores=1)
    assert total.result(timeout=60) == sum(i * i for i in range(100))
    result = sim.result(timeout=60)
    assert isinstance(result, ms.CommandResult)
    assert result.returncode == 0
    assert result.stdout == "42\n"
    done = {row.site: row.done for row in c.status()}
    assert done == {"local": 102}


def test_dag_of_1000_tasks_with_fan_out_and_fan_in(campaign: ms.Campaign) -> None:
    c = campaign

    @c.task
    def seed() -> int:
        return 3

    @c.task
    def scale(base: int, i: int) -> int:
        return base * i

    @c.task
    def add_all(values: list[int]) -> int:
        return sum(values)

    root = seed()
    mids = [scale(root, i) for i in range(950)]  # fan-out from one task
    groups = [add_all(mids[k:k + 20]) for k in range(0, 950, 20)]  # fan-in by 20
    final = add_all(groups)  # and into one
    assert len(c.futures()) == 1 + 950 + len(groups) + 1 == 1000
    assert final.result(timeout=120) == 3 * sum(range(950))


def test_failing_task_succeeds_on_retry_and_fails_without(campaign: ms.Campaign, tmp_path: Path) -> None:
    c = campaign
    marker = tmp_path / "tried"

    @c.task(retries=1)
    def flaky(path: str) -> str:
        if not os.path.exists(path):
            open(path, "w").close()
            raise RuntimeError("first attempt fails")
        return "second attempt"

    assert flaky(str(marker)).result(timeout=60) == "second attempt"

    @c.task(retries=0)
    def broken() -> None:
        raise ValueError("no luck")

    future = broken()
    error = future.exception(timeout=60)
    assert isinstance(error, ms.RemoteTaskError)
    assert error.error_type == "builtins.ValueError"
    assert "no luck" in str(error)
    assert ", in broken\nValueError: no luck" in error.remote_traceback


def test_dependency_failure_names_the_root_cause(campaign: ms.Campaign) -> None:
    c = campaign

    @c.task
    def explode() -> int:
        raise KeyError("missing input")

    @c.task
    def double(x: int) -> int:
        return 2 * x

    first = explode()
    second = double(first)
    third = double({"nested": [second]})
    for future in (second, third):
        error = future.exception(timeout=60)
        assert isinstance(error, ms.DependencyError)
        assert error.root_task_id == first.task_id
        assert "'explode'" in str(error)


def test_unsatisfiable_task_fails_fast_with_placement_error(campaign: ms.Campaign) -> None:
    start = time.monotonic()
    future = campaign.command(["true"], gpus=1)
    error = future.exception(timeout=30)
    assert isinstance(error, ms.PlacementError)
    assert "needs gpus=1, offers 0" in str(error)
    assert time.monotonic() - start < 10
    too_big = campaign.command(["true"], cores=64)
    assert "needs cores=64" in str(too_big.exception(timeout=30))


def test_command_exit_status_and_bad_argv(campaign: ms.Campaign) -> None:
    failed = campaign.command(["python3", "-c", "import sys; sys.exit(3)"])
    error = failed.exception(timeout=60)
    assert isinstance(error, ms.RemoteTaskError)
    assert "exited with status 3" in str(error)
    unchecked = campaign.command(["python3", "-c", "import sys; sys.exit(3)"], check=False)
    assert unchecked.result(timeout=60).returncode == 3
    with pytest.raises(ms.ConfigurationError, match="no shell string"):
        campaign.command("echo hi")  # type: ignore[arg-type]
    with pytest.raises(ms.ConfigurationError, match="unknown option"):
        campaign.command(["true"], core=2)


def test_futures_work_with_wait_as_completed_and_callbacks(campaign: ms.Campaign) -> None:
    c = campaign

    @c.task
    def ident(x: int) -> int:
        return x

    futures = [ident(i) for i in range(20)]
    seen: list[int] = []
    futures[0].add_done_callback(lambda f: seen.append(f.result()))
    done, not_done = ms.wait(futures, timeout=60)
    assert len(done) == 20
    assert not not_done
    assert sorted(f.result() for f in ms.as_completed(futures, timeout=10)) == list(range(20))
    assert seen == [0]
    assert c.futures()[:20] == futures


def test_allowed_sites_must_exist(campaign: ms.Campaign) -> None:
    future = campaign.command(["true"], sites=["nowhere"])
    error = future.exception(timeout=30)
    assert isinstance(error, ms.PlacementError)
    assert "not among the task's allowed sites (nowhere)" in str(error)


def test_command_env_and_cwd(campaign: ms.Campaign, tmp_path: Path) -> None:
    future = campaign.command(
        ["python3", "-c", "import os; print(os.getcwd(), os.environ['METASCHED_TEST_VALUE'])"],
        env={"METASCHED_TEST_VALUE": "hello"}, cwd=tmp_path,
    )
    assert future.result(timeout=60).stdout.split() == [str(tmp_path), "hello"]


def test_scheduler_actor_is_found_by_name(campaign: ms.Campaign) -> None:
    import ray

    from metasched.scheduler.actor import NAMESPACE, actor_name

    campaign.command(["true"]).result(timeout=60)
    actor = ray.get_actor(actor_name(campaign.name), namespace=NAMESPACE)
    rows = ray.get(actor.summary.remote())
    assert [(r.site, r.done) for r in rows] == [("local", 1)]
    with pytest.raises(ms.ConfigurationError, match="already running"):
        ms.Campaign(campaign.name, journal=campaign.journal_path.with_name("other.db")).start()


def test_retry_rewires_function_arguments_to_the_new_tasks(tmp_path: Path) -> None:
    marker = tmp_path / "attempted"
    with ms.Campaign(f"retry-api-{os.getpid()}", sites=[ms.LocalSite("local", cores=2)],
                     journal=tmp_path / "r.db") as c:
        @c.task
        def first(path: str) -> int:
            if not os.path.exists(path):
                open(path, "w").close()
                raise RuntimeError("not yet")
            return 20

        @c.task
        def add(values: list[int]) -> int:
            return sum(values)

        base = first(str(marker))
        total = add([base, 22])
        assert isinstance(total.exception(timeout=60), ms.DependencyError)
        new_first, new_total = c.retry()
        assert new_total.result(timeout=60) == 42
        assert new_first.result(timeout=60) == 20
        assert c.futures()[-2:] == [new_first, new_total]
        assert c.retry() == []  # nothing failed any more
