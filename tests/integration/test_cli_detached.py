"""`metasched submit` runs a campaign in the background; `watch`, `status` and `cancel` steer it."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.cli_helpers import METASCHED, cli, local_campaign_file
from tests.integration.processes import kill_tree

pytestmark = pytest.mark.ray


def _state(journal: Path, name: str) -> str | None:
    if not journal.exists():
        return None
    db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=5)
    try:
        row = db.execute("SELECT state FROM tasks WHERE name = ?", (name,)).fetchone()
    except sqlite3.OperationalError:
        return None
    finally:
        db.close()
    return row[0] if row else None


def test_submit_watch_cancel(tmp_path: Path) -> None:
    name = f"detached-{os.getpid()}"
    path = local_campaign_file(tmp_path, f"{name}", """
[[tasks]]
name = "quick-{i}"
command = ["echo", "{i}"]
sweep = { i = [1, 2, 3] }

[[tasks]]
name = "long"
command = ["sleep", "300"]

[[tasks]]
name = "after-long"
command = ["echo", "never"]
depends_on = ["long"]
""")
    journal = tmp_path / f"{name}.db"
    started = time.monotonic()
    submitted = cli("submit", str(path), timeout=60)
    assert submitted.returncode == 0, submitted.stderr
    assert time.monotonic() - started < 30, "submit must return without waiting for the campaign"
    assert f"metasched watch {journal}" in submitted.stdout

    deadline = time.monotonic() + 120
    while _state(journal, "long") not in ("submitted", "running"):
        assert time.monotonic() < deadline, (tmp_path / f"{name}.log").read_text()
        time.sleep(0.2)
    cancelled = cli("cancel", str(journal), "long", timeout=60)
    assert cancelled.returncode == 0, cancelled.stderr

    watched = cli("watch", str(journal), "--interval", "0.5", timeout=120)
    assert watched.returncode == 1  # cancelled and dependency-failed tasks count as failures
    status = cli("status", str(journal), "--json", timeout=60)
    counts = json.loads(status.stdout)["sites"]
    assert counts["local"] == {"done": 3, "cancelled": 1}
    assert counts["-"] == {"failed": 1}  # after-long never ran: its dependency was cancelled
    deadline = time.monotonic() + 60
    log = tmp_path / f"{name}.log"
    while "per-site summary" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert "per-site summary" in log.read_text(), "the background campaign did not finish"


@pytest.mark.parametrize("how", ["resume JOURNAL", "run FILE again"])
def test_resume_from_the_command_line_after_a_crash(tmp_path: Path, how: str) -> None:
    name = f"cliresume-{os.getpid()}-{how.split()[0]}"
    path = local_campaign_file(tmp_path, f"{name}", """
[[tasks]]
name = "nap-{i}"
command = ["sleep", "1"]
sweep = { i = { range = [0, 8] } }
""")
    journal = tmp_path / f"{name}.db"
    run = subprocess.Popen([*METASCHED, "run", "--headless", str(path)], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while _state(journal, "nap-0") != "done":
            assert time.monotonic() < deadline, "the first task never finished"
            time.sleep(0.2)
    finally:
        kill_tree(run.pid)
    again = ["resume", str(journal)] if how == "resume JOURNAL" else ["run", str(path)]
    resumed = cli(*again, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "│ -  " not in resumed.stdout, "tasks finished before the crash must keep their site"
    status = cli("status", str(journal), "--json", timeout=60)
    assert json.loads(status.stdout)["sites"] == {"local": {"done": 8}}


def test_commands_accept_a_campaign_name(tmp_path: Path) -> None:
    name = f"named-{os.getpid()}"
    path = local_campaign_file(tmp_path, name, '\n[[tasks]]\nname = "hello"\ncommand = ["echo", "hello"]\n')
    ran = cli("run", str(path), timeout=120)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    by_name = cli("status", name, "--json", timeout=60)
    assert json.loads(by_name.stdout)["sites"] == {"local": {"done": 1}}
    listing = cli("status", "--json", timeout=60)
    entry = next(row for row in json.loads(listing.stdout) if row["campaign"] == name)
    assert entry["journal"] == str((tmp_path / f"{name}.db").resolve())
    assert entry["tasks"] == {"done": 1}
    logs = cli("logs", name, "hello", timeout=60)
    assert "hello" in logs.stdout
    unknown = cli("status", "no-such-campaign", timeout=60)
    assert unknown.returncode == 2
    assert name in unknown.stderr  # the error lists the known campaigns


def test_retry_runs_failed_tasks_and_their_dependents_again(tmp_path: Path) -> None:
    name = f"retry-{os.getpid()}"
    marker = tmp_path / "second-time"
    path = local_campaign_file(tmp_path, f"{name}", """
[[tasks]]
name = "ok"
command = ["echo", "fine"]

[[tasks]]
name = "flaky"
command = ["sh", "-c", "if [ -e MARKER ]; then echo recovered; else touch MARKER; exit 3; fi"]

[[tasks]]
name = "downstream"
command = ["echo", "after flaky"]
depends_on = ["flaky", "ok"]
""".replace("MARKER", str(marker)))
    first = cli("run", str(path), timeout=120)
    assert first.returncode == 1
    retried = cli("retry", name, timeout=120)
    assert retried.returncode == 0, retried.stdout + retried.stderr
    status = cli("status", name, "--json", timeout=60)
    assert status.returncode == 0
    assert json.loads(status.stdout)["sites"] == {"local": {"done": 3}}
    db = sqlite3.connect(tmp_path / f"{name}.db")
    rows = db.execute("SELECT name, state, superseded_by IS NOT NULL FROM tasks ORDER BY seq").fetchall()
    db.close()
    assert rows == [("ok", "done", 0), ("flaky", "failed", 1), ("downstream", "failed", 1),
                    ("flaky", "done", 0), ("downstream", "done", 0)]
    logs = cli("logs", name, "ok", timeout=60)
    assert "fine" in logs.stdout
