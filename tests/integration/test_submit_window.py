"""The scheduler dies after a batch site accepted its jobs and before it journaled their ids (issue 20).

The attempts (so their unique job names) are journaled before the submit call; the scheduler is SIGKILLed
right after it (the fault point ``after-submit``, metasched/faults.py) and its driver with it. The resumed
campaign finds each job by its name (Slurm: still listed) or by the outcome it left (Grid Engine: gone from
qstat once finished) and follows it: one job per task, each task run once, its result recorded once;
nothing is submitted again.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.processes import kill_tree, wait_for

pytestmark = pytest.mark.ray
SCRIPT = Path(__file__).parent / "scripts" / "submit_window_campaign.py"


def _attempts(journal: Path) -> list[tuple[str, str, str | None]]:
    if not journal.exists():
        return []
    db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=5)
    try:
        return list(db.execute("SELECT attempt_id, state, native_id FROM attempts ORDER BY attempt_id"))
    except sqlite3.OperationalError:  # not created yet
        return []
    finally:
        db.close()


def _listing(argv: list[str]) -> str:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True).stdout


@pytest.mark.parametrize("kind", [pytest.param("slurm", marks=pytest.mark.slurm),
                                  pytest.param("gridengine", marks=pytest.mark.docker)])
def test_killed_between_submit_and_journal_one_job_and_one_result_per_task(
        kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    if kind == "slurm":
        info = request.getfixturevalue("alpha")
        site = {"kind": "slurm", "name": "alpha", "slurm_conf": info.slurm_conf,
                "shared_dir": info.shared_dir, "poll_interval": 0.3}
        listed = ["env", f"SLURM_CONF={info.slurm_conf}", "squeue", "--noheader", "--states=all",
                  "--format=%j %i"]
    else:
        info = request.getfixturevalue("epsilon")
        site = {"kind": "gridengine", "name": "epsilon", "shared_dir": info.shared_dir, "login": info.login,
                "poll_interval": 0.3}
        listed = [*info.login, "qstat", "-u", "*"]
    markers = Path(info.shared_dir) / f"window-{time.time_ns()}"
    markers.mkdir()
    journal = tmp_path / "w.db"
    args = [sys.executable, str(SCRIPT), str(journal), json.dumps(site), str(markers)]
    run = subprocess.Popen([*args, "run"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           start_new_session=True,
                           env={**os.environ, "METASCHED_FAULT": f"after-submit:{site['name']}"})
    try:
        # the scheduler is gone once its jobs are queued (the driver's futures fail and it may exit on its
        # own); nothing journals the jobs' ids any more
        wait_for(lambda: len(_attempts(journal)) == 3 and len(list(markers.iterdir())) == 3, 90,
                 "the three jobs to start at the site")
    finally:
        kill_tree(run.pid)
    before = _attempts(journal)
    assert [native for *_, native in before] == [None, None, None], before  # the window was hit
    if kind == "gridengine":  # resume once the jobs have left qstat: only the outcomes they left remain
        wait_for(lambda: not _listing(listed).strip(), 60, "the jobs to leave qstat")
    resumed = subprocess.run([*args, "resume"], capture_output=True, text=True, timeout=300, check=False)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "RESUMED 0 1 2" in resumed.stdout
    after = _attempts(journal)
    assert [(a, state) for a, state, _ in after] == [(a, "succeeded") for a, *_ in before], after
    assert sorted(p.read_text() for p in markers.iterdir()) == ["ran\n"] * 3  # each task ran once
    if kind == "gridengine":  # gone from qstat: followed by the outcome each left
        assert all(native is None for *_, native in after), after
    else:  # finished jobs stay in squeue (MinJobAge): each found by its name; none submitted again
        assert all(native for *_, native in after), after
        names = _listing(listed).split()
        for attempt_id, _, native in after:
            assert names.count(f"ms-alpha-{attempt_id}") == 1, names
            assert native in names
