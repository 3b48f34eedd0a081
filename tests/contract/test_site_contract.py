"""One suite, every site kind: results, failures, cancel, walltime, retries, many tasks."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import psutil
import pytest

import metasched as ms
from tests.contract.conftest import SiteUnderTest

pytestmark = pytest.mark.ray


def test_function_and_command_results(site: SiteUnderTest) -> None:
    c = site.campaign

    @c.task(walltime=120)
    def power(x: int, e: int = 2) -> int:
        return x**e

    futures = [power(i, e=3) for i in range(5)]
    total = c.task()(sum)(futures)
    cmd = c.command(["python3", "-c", "import sys; print(sys.argv[1])", "a b;c"])
    assert total.result(timeout=120) == sum(i**3 for i in range(5))
    assert cmd.result(timeout=120).stdout == "a b;c\n"  # argv passed as is: no shell


def test_failure_carries_the_remote_traceback(site: SiteUnderTest) -> None:
    """And what the failed attempt printed: a Python task's prints, a command's stdout and stderr."""
    @site.campaign.task
    def divide(x: int) -> float:
        print(f"dividing {x}")
        print("about to fail", file=sys.stderr)
        return x / 0

    failing = site.campaign.command(["sh", "-c", "echo partial result; echo cannot go on >&2; exit 3"])
    error = divide(1).exception(timeout=120)
    assert isinstance(error, ms.RemoteTaskError)
    assert error.error_type == "builtins.ZeroDivisionError"
    assert "in divide" in error.remote_traceback
    assert error.site == site.campaign.sites[0].name
    assert "dividing 1" in error.stdout
    assert "about to fail" in error.stderr
    command_error = failing.exception(timeout=120)
    assert isinstance(command_error, ms.RemoteTaskError)
    assert "exited with status 3" in str(command_error)
    assert command_error.stdout == "partial result\n"
    assert command_error.stderr == "cannot go on\n"
    assert "--- stdout (the end of it):\npartial result" in str(command_error)
    if getattr(site.campaign.sites[0], "mode", None) == "batch":  # and where the whole output is
        [out] = [f for f in command_error.files if f.endswith("cmd.out")]
        assert Path(out).read_text() == "partial result\n"
        assert f"--- the whole output: {command_error.files[0]}" in str(command_error)


def test_cancel_stops_a_running_task(site: SiteUnderTest) -> None:
    marker = site.workdir / "started"
    argv = ["python3", "-c", f"import time, pathlib; pathlib.Path({str(marker)!r}).touch(); time.sleep(300)"]
    future = site.campaign.command(argv)
    deadline = time.monotonic() + 60
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert marker.exists(), "the task never started"
    assert future.cancel()
    assert isinstance(future.exception(timeout=60), ms.TaskCancelledError)
    if site.kind.startswith(("globus-compute", "globus_compute")):
        # Globus Compute cannot stop a function once it runs: metasched stops following it (the future
        # is cancelled at once) and the endpoint runs it to the end; here we end it ourselves.
        running = [p for p in psutil.process_iter(["cmdline"])
                   if str(marker) in " ".join(p.info["cmdline"] or [])]
        assert running, "the endpoint stopped the task: update docs/sites/globus-compute.md"
        for proc in running:
            proc.kill()
        return

    def still_running() -> list[psutil.Process]:
        return [p for p in psutil.process_iter(["cmdline"])
                if str(marker) in " ".join(p.info["cmdline"] or [])]

    deadline = time.monotonic() + 30
    while still_running() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not still_running(), "the cancelled task is still running"


def test_walltime_stops_tasks_and_says_so(site: SiteUnderTest) -> None:
    c = site.campaign

    @c.task(walltime=2)
    def sleepy() -> None:
        time.sleep(120)

    for future in (sleepy(), c.command(["sleep", "120"], walltime=2)):
        error = future.exception(timeout=90)
        assert isinstance(error, ms.WalltimeExceededError), error
        assert "walltime of 2 s exceeded" in str(error)


def test_retry_after_a_failure(site: SiteUnderTest) -> None:
    marker = site.workdir / "first-attempt"

    @site.campaign.task(retries=1)
    def flaky(path: str) -> str:
        if not os.path.exists(path):
            Path(path).touch()
            raise RuntimeError("first attempt fails")
        return "second attempt"

    assert flaky(str(marker)).result(timeout=120) == "second attempt"


def test_many_tasks(site: SiteUnderTest) -> None:
    @site.campaign.task
    def ident(i: int) -> int:
        return i

    futures = [ident(i) for i in range(60)]
    assert [f.result(timeout=300) for f in futures] == list(range(60))
