"""Cooperative checkpoints of tasks that run as Ray tasks (a local site; pilot blocks share the code).

Real Ray (the board is a real actor), a real Slurm site as the other end of a move, the campaign's real
stores.
"""

from __future__ import annotations

import itertools
import os
import sqlite3
import time
from pathlib import Path

import pytest
import slurmsite

import metasched as ms
from site_agents.slurm import SlurmSite
from tests.integration.cooperative import accumulate

pytestmark = [pytest.mark.ray]
_names = itertools.count()


def attempts(journal: Path, task_id: str) -> list[tuple[str, str]]:
    with sqlite3.connect(journal) as db:
        rows = db.execute("SELECT site, state FROM attempts WHERE task_id = ? ORDER BY number",
                          (task_id,)).fetchall()
    return [(str(site), str(state)) for site, state in rows]


def task_row(journal: Path, task_id: str) -> tuple[str, str, str | None]:
    """The task's state, site and current restart point (object id), as journaled."""
    with sqlite3.connect(journal) as db:
        row = db.execute("SELECT state, site, checkpoint FROM tasks WHERE task_id = ?", (task_id,)).fetchone()
    return (str(row[0]), str(row[1]), row[2]) if row else ("", "", None)


def wait_until(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_a_task_stops_at_a_save_before_its_walltime_and_goes_on_from_there(
        ray_local: None, tmp_path: Path) -> None:
    journal = tmp_path / "c.db"
    with ms.Campaign(f"coop-local-{os.getpid()}-{next(_names)}", sites=[ms.LocalSite("local", cores=2)],
                     journal=journal) as c:
        task = c.task(checkpoint="cooperative", walltime=3.0)(accumulate)
        future = task(120, 0.05)  # 6 s of work; each attempt stops at its first save past 1.5 s
        total, steps, began, _ = future.result(timeout=120)
    assert (total, steps) == (sum(i * i for i in range(120)), 120)
    assert len(began) >= 3, began  # a save every 0.5 s, a stop at the first past 1.5 s of an attempt
    assert began[0] == 0, began
    assert all(b % 10 == 0 for b in began), began  # each went on from a save
    assert began == sorted(set(began)), began  # ... the one before it stopped, never from an older one
    states = [state for _, state in attempts(journal, future.task_id)]
    assert states == ["checkpointed"] * (len(began) - 1) + ["succeeded"], states


@pytest.mark.slurm
def test_draining_a_local_site_moves_a_cooperative_task_to_slurm_from_its_last_save(
        alpha: slurmsite.SiteInfo, ray_local: None, tmp_path: Path) -> None:
    journal = tmp_path / "c.db"
    slurm = SlurmSite("alpha", slurm_conf=alpha.slurm_conf, shared_dir=alpha.shared_dir, poll_interval=0.3)
    sites = [ms.LocalSite("local", cores=2), slurm]
    with ms.Campaign(f"coop-drain-{os.getpid()}-{next(_names)}", sites=sites, journal=journal) as c:
        c.drain("alpha")  # so the task starts at the local site
        future = c.task(checkpoint="cooperative")(accumulate)(400, 0.05)
        # a save while it runs reaches the journal through the board: a restart point if the attempt is lost
        wait_until(lambda: task_row(journal, future.task_id)[2], 60, "a restart point from the running task")
        assert task_row(journal, future.task_id)[1] == "local"
        c.drain("alpha", undo=True)
        said = c.drain("local")
        total, steps, began, _ = future.result(timeout=180)
    assert (total, steps) == (sum(i * i for i in range(400)), 400)
    assert len(began) == 2, (began, said)
    assert began[0] == 0, began
    assert 0 < began[1] < 400, began  # went on from the local attempt's last save
    assert attempts(journal, future.task_id) == [("local", "checkpointed"), ("alpha", "succeeded")]


@pytest.mark.slurm
def test_a_request_for_tasks_of_one_name_says_what_was_done_and_what_was_refused(
        alpha: slurmsite.SiteInfo, ray_local: None, tmp_path: Path) -> None:
    """`metasched migrate` names tasks by name; of two running tasks called "sim" one can move and one
    cannot. The one that can is moved and the answer says so, with why the other was not (before, the
    first refusal was the whole answer: "refused", exit 1, although a task had been asked to move)."""
    from typer.testing import CliRunner

    from metasched.cli import app

    journal = tmp_path / "c.db"
    slurm = SlurmSite("alpha", slurm_conf=alpha.slurm_conf, shared_dir=alpha.shared_dir, poll_interval=0.3)
    sites = [ms.LocalSite("local", cores=2), slurm]
    with ms.Campaign(f"coop-mixed-{os.getpid()}-{next(_names)}", sites=sites, journal=journal) as c:
        c.drain("alpha")  # so both start at the local site
        plain = c.command(["sleep", "8"], name="sim")
        moving = c.task(checkpoint="cooperative", name="sim")(accumulate)(200, 0.05)
        wait_until(lambda: task_row(journal, moving.task_id)[2], 60, "a save of the cooperative task")
        assert task_row(journal, plain.task_id)[:2] == ("submitted", "local")  # sleeping meanwhile
        c.drain("alpha", undo=True)
        answer = CliRunner().invoke(app, ["migrate", str(journal), "sim", "--to", "alpha"])
        total, steps, _, _ = moving.result(timeout=120)
        assert plain.result(timeout=60).returncode == 0
    assert answer.exit_code == 0, answer.output
    assert "continuing at alpha" in answer.output
    assert f"refused: task 'sim' ({plain.task_id}) was not submitted with checkpoint=" in answer.output
    assert (total, steps) == (sum(i * i for i in range(200)), 200)
    assert attempts(journal, moving.task_id) == [("local", "checkpointed"), ("alpha", "succeeded")]
    assert attempts(journal, plain.task_id) == [("local", "succeeded")]
