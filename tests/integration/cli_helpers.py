"""Helpers for CLI tests: campaign files on the local site, and running `python -m metasched`."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import metasched as ms
from metasched.journal import Journal

METASCHED = [sys.executable, "-m", "metasched"]
TICKER = ["sh", "-c", "for i in 1 2 3 4 5 6; do echo tick $i; echo warn $i >&2; sleep 1; done"]

LOCAL_HEADER = """
[campaign]
name = "{name}"

[[sites]]
kind = "local"
name = "local"
cores = 2
"""


def local_campaign_file(directory: Path, name: str, tasks: str) -> Path:
    """Write a campaign file with one 2-core local site and the given [[tasks]] TOML; return its path."""
    path = directory / f"{name}.toml"
    path.write_text(LOCAL_HEADER.format(name=name) + tasks)
    return path


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run `metasched ARGS...` in a subprocess and capture its output."""
    return subprocess.run([*METASCHED, *args], capture_output=True, text=True, timeout=timeout, check=False)


def _task_state(journal: Path, name: str) -> str:
    """A task's state in the journal, by name ("-" if it is not there)."""
    stored = Journal(journal).open(read_only=True)
    try:
        found = stored.task_named(name)
        return found.state.value if found is not None else "-"
    finally:
        stored.close()


def assert_follow_streams(site: Any, journal: Path, *, checkpoint: str | None = None) -> None:
    """`metasched logs TICKER --follow` from another process prints the running task's output at `site`
    (a batch site) as it is written, once, then how it ended."""
    with ms.Campaign("follow", sites=[site], journal=journal) as c, \
            tempfile.TemporaryFile("w+") as stderr:
        future = c.command(TICKER, name="ticker", checkpoint=checkpoint)
        c.flush()
        follower = subprocess.Popen([*METASCHED, "logs", str(journal), "ticker", "--follow"],
                                    stdout=subprocess.PIPE, stderr=stderr, text=True)
        assert follower.stdout is not None
        first = follower.stdout.readline()
        state_at_first_line = _task_state(journal, "ticker")
        assert future.result(timeout=120).returncode == 0
        follower.wait(timeout=60)  # (its output is far smaller than a pipe's buffer)
        # through the same buffered stream: readline may have read the next lines too (communicate()
        # would read the pipe underneath and miss them)
        rest = follower.stdout.read()
        follower.stdout.close()
        stderr.seek(0)
        errors = stderr.read()
    assert first == "tick 1\n"
    # (the job may print before the scheduler's next poll has seen it running)
    assert state_at_first_line in ("submitted", "running"), "the first line came only after the task ended"
    streamed, _, after = (first + rest).partition("task 'ticker'")
    assert [line for line in streamed.splitlines() if line.startswith("tick")] == [
        f"tick {i}" for i in range(1, 7)], f"stdout:\n{first + rest}\nstderr:\n{errors}"
    assert "tick" not in after  # what was streamed is not printed again
    assert "warn 6" in errors
    assert "--- attempt " in errors
    assert f" at {site.name} (job " in errors
    assert follower.returncode == 0
    assert after.startswith(" (")
    assert ": done" in after
