"""A batch job the scheduler runs twice runs its task once (issue 16: OpenPBS requeued jobs still starting
when its server stopped, and ran them again although they were submitted with ``-r n``).

The job script claims its attempt (``mkdir`` of a marker) before anything else; here the same attempt's job
script is started a second time by hand on a compute node while the first run is still going. The second
run must be refused at once, leave the attempt's records alone, and show up in the attempt's record (the
journal's notes, `metasched logs`).
"""

from __future__ import annotations

import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import slurmsite
from typer.testing import CliRunner

import metasched as ms
from metasched.attempt_dir import AttemptDir
from metasched.cli import app
from tests.integration.batch_faults import attempts
from tests.integration.pbs_sites import torque_site

pytestmark = [pytest.mark.slurm, pytest.mark.ray]

TASK = ("import pathlib, sys, time; pathlib.Path(sys.argv[1]).open('a').write('run\\n'); time.sleep(6); "
        "print('done')")


def run_twice(site: Any, info: slurmsite.SiteInfo, tmp_path: Path, name: str) -> None:
    counter = Path(info.shared_dir) / f"runs-{name}-{time.monotonic_ns()}"
    journal = tmp_path / f"{name}.db"
    compute = f"metasched-slurm-{info.nodes[0]}"
    with ms.Campaign(name, sites=[site], journal=journal) as c:
        future = c.command(["python3", "-c", TASK, str(counter)], name="once")
        deadline = time.monotonic() + 120
        while not counter.exists():
            assert time.monotonic() < deadline, f"the job never ran: {attempts(journal)}"
            time.sleep(0.1)
        c.flush()
        [(task_id, _, _, _)] = attempts(journal)
        attempt = AttemptDir.of(info.shared_dir, f"{task_id}.1")
        again = subprocess.run(["docker", "exec", compute, "bash", str(attempt.script)], capture_output=True,
                               text=True, timeout=60, check=False)
        assert again.returncode == 0, again.stderr
        assert future.result(timeout=120).stdout == "done\n"
    assert counter.read_text() == "run\n", "the task ran twice"
    [refused] = attempt.refused_runs()
    _, job_id, _ = refused.split()  # epoch, job id, host
    assert job_id == "unknown"  # started by hand: no scheduler's job id in its environment
    assert attempt.exit_status() is not None
    db = sqlite3.connect(journal)
    notes = [note for (note,) in db.execute("SELECT note FROM notes WHERE attempt_id = ?", (f"{task_id}.1",))]
    states = [state for (state,) in db.execute("SELECT state FROM attempts")]
    db.close()
    assert states == ["succeeded"]
    assert len(notes) == 1
    assert "run refused by the attempt's claim" in notes[0]
    shown = CliRunner().invoke(app, ["logs", str(journal), "once"])
    assert "run refused by the attempt's claim" in shown.output


def test_a_slurm_job_started_twice_runs_its_task_once(alpha: slurmsite.SiteInfo, ray_local: None,
                                                      tmp_path: Path) -> None:
    site = ms.SlurmSite("alpha", slurm_conf=alpha.slurm_conf, shared_dir=alpha.shared_dir, poll_interval=0.3)
    run_twice(site, alpha, tmp_path, "once-slurm")


def test_a_torque_job_started_twice_runs_its_task_once(zeta: slurmsite.SiteInfo, ray_local: None,
                                                       tmp_path: Path) -> None:
    run_twice(torque_site(zeta, poll_interval=0.3), zeta, tmp_path, "once-torque")
