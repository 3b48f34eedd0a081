"""`metasched submit` runs a campaign in the background; `watch`, `status` and `cancel` steer it."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.processes import kill_tree

pytestmark = pytest.mark.ray
METASCHED = [sys.executable, "-m", "metasched"]


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
    path = tmp_path / "c.toml"
    path.write_text(f"""
[campaign]
name = "{name}"

[[sites]]
kind = "local"
name = "local"
cores = 2

[[tasks]]
name = "quick-{{i}}"
command = ["echo", "{{i}}"]
sweep = {{ i = [1, 2, 3] }}

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
    submitted = subprocess.run([*METASCHED, "submit", str(path)], capture_output=True, text=True, timeout=60,
                               check=False)
    assert submitted.returncode == 0, submitted.stderr
    assert time.monotonic() - started < 30, "submit must return without waiting for the campaign"
    assert f"metasched watch {journal}" in submitted.stdout

    deadline = time.monotonic() + 120
    while _state(journal, "long") not in ("submitted", "running"):
        assert time.monotonic() < deadline, (tmp_path / f"{name}.log").read_text()
        time.sleep(0.2)
    cancelled = subprocess.run([*METASCHED, "cancel", str(journal), "long"], capture_output=True, text=True,
                               timeout=60, check=False)
    assert cancelled.returncode == 0, cancelled.stderr

    watched = subprocess.run([*METASCHED, "watch", str(journal), "--interval", "0.5"], capture_output=True,
                             text=True, timeout=120, check=False)
    assert watched.returncode == 1  # cancelled and dependency-failed tasks count as failures
    status = subprocess.run([*METASCHED, "status", str(journal), "--json"], capture_output=True, text=True,
                            timeout=60, check=False)
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
    path = tmp_path / "c.toml"
    path.write_text(f"""
[campaign]
name = "{name}"

[[sites]]
kind = "local"
name = "local"
cores = 2

[[tasks]]
name = "nap-{{i}}"
command = ["sleep", "1"]
sweep = {{ i = {{ range = [0, 8] }} }}
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
    resumed = subprocess.run([*METASCHED, *again], capture_output=True, text=True, timeout=300, check=False)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "│ -  " not in resumed.stdout, "tasks finished before the crash must keep their site"
    status = subprocess.run([*METASCHED, "status", str(journal), "--json"], capture_output=True, text=True,
                            timeout=60, check=False)
    assert json.loads(status.stdout)["sites"] == {"local": {"done": 8}}


def test_commands_accept_a_campaign_name(tmp_path: Path) -> None:
    name = f"named-{os.getpid()}"
    path = tmp_path / "n.toml"
    path.write_text(f'[campaign]\nname = "{name}"\n\n[[sites]]\nkind = "local"\nname = "local"\ncores = 2\n\n'
                    '[[tasks]]\nname = "hello"\ncommand = ["echo", "hello"]\n')
    ran = subprocess.run([*METASCHED, "run", str(path)], capture_output=True, text=True, timeout=120,
                         check=False)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    by_name = subprocess.run([*METASCHED, "status", name, "--json"], capture_output=True, text=True,
                             timeout=60, check=False)
    assert json.loads(by_name.stdout)["sites"] == {"local": {"done": 1}}
    listing = subprocess.run([*METASCHED, "status", "--json"], capture_output=True, text=True, timeout=60,
                             check=False)
    entry = next(row for row in json.loads(listing.stdout) if row["campaign"] == name)
    assert entry["journal"] == str((tmp_path / f"{name}.db").resolve())
    assert entry["tasks"] == {"done": 1}
    logs = subprocess.run([*METASCHED, "logs", name, "hello"], capture_output=True, text=True, timeout=60,
                          check=False)
    assert "hello" in logs.stdout
    unknown = subprocess.run([*METASCHED, "status", "no-such-campaign"], capture_output=True, text=True,
                             timeout=60, check=False)
    assert unknown.returncode == 2
    assert name in unknown.stderr  # the error lists the known campaigns


def test_retry_runs_failed_tasks_and_their_dependents_again(tmp_path: Path) -> None:
    name = f"retry-{os.getpid()}"
    marker = tmp_path / "second-time"
    path = tmp_path / "r.toml"
    path.write_text(f"""
[campaign]
name = "{name}"

[[sites]]
kind = "local"
name = "local"
cores = 2

[[tasks]]
name = "ok"
command = ["echo", "fine"]

[[tasks]]
name = "flaky"
command = ["sh", "-c", "if [ -e {marker} ]; then echo recovered; else touch {marker}; exit 3; fi"]

[[tasks]]
name = "downstream"
command = ["echo", "after flaky"]
depends_on = ["flaky", "ok"]
""")
    first = subprocess.run([*METASCHED, "run", str(path)], capture_output=True, text=True, timeout=120,
                           check=False)
    assert first.returncode == 1
    retried = subprocess.run([*METASCHED, "retry", name], capture_output=True, text=True, timeout=120,
                             check=False)
    assert retried.returncode == 0, retried.stdout + retried.stderr
    status = subprocess.run([*METASCHED, "status", name, "--json"], capture_output=True, text=True,
                            timeout=60, check=False)
    assert status.returncode == 0
    assert json.loads(status.stdout)["sites"] == {"local": {"done": 3}}
    db = sqlite3.connect(tmp_path / f"{name}.db")
    rows = db.execute("SELECT name, state, superseded_by IS NOT NULL FROM tasks ORDER BY seq").fetchall()
    db.close()
    assert rows == [("ok", "done", 0), ("flaky", "failed", 1), ("downstream", "failed", 1),
                    ("flaky", "done", 0), ("downstream", "done", 0)]
    logs = subprocess.run([*METASCHED, "logs", name, "ok"], capture_output=True, text=True, timeout=60,
                          check=False)
    assert "fine" in logs.stdout
