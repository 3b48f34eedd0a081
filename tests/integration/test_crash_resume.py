"""Crash test: SIGKILL the scheduler process and its Ray mid-campaign, resume from the journal."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.processes import kill_tree

pytestmark = pytest.mark.ray
SCRIPT = Path(__file__).parent / "scripts" / "crash_campaign.py"


def _done_ids(journal: Path) -> list[str]:
    if not journal.exists():
        return []
    db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=5)
    try:
        return [row[0] for row in db.execute("SELECT task_id FROM tasks WHERE state = 'done'")]
    except sqlite3.OperationalError:  # not created yet
        return []
    finally:
        db.close()


def test_sigkill_mid_campaign_then_resume_records_every_result_once(tmp_path: Path) -> None:
    journal, log = tmp_path / "crash.db", tmp_path / "ran.log"
    run = subprocess.Popen([sys.executable, str(SCRIPT), str(journal), str(log), "run"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while len(_done_ids(journal)) < 60:
            assert run.poll() is None, f"driver exited early:\n{run.stdout.read() if run.stdout else ''}"
            assert time.monotonic() < deadline, "fewer than 60 tasks finished in 120 s"
            time.sleep(0.05)
    finally:
        killed = kill_tree(run.pid)
    assert killed >= 3, "expected the driver plus Ray's processes"
    output = run.stdout.read() if run.stdout else ""
    assert "FINISHED BEFORE THE KILL" not in output

    db = sqlite3.connect(journal)
    order = [row[0] for row in db.execute("SELECT task_id FROM tasks ORDER BY seq")]
    db.close()
    assert len(order) == 200
    done_at_crash = set(_done_ids(journal))
    assert 60 <= len(done_at_crash) < 200
    lines_at_crash = len(log.read_text().splitlines())

    resumed = subprocess.run([sys.executable, str(SCRIPT), str(journal), str(log), "resume"],
                             capture_output=True, text=True, timeout=300, check=False)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"RESUMED 200 {sum(i * 10 for i in range(200))}" in resumed.stdout

    ran_after = [int(x) for x in log.read_text().splitlines()[lines_at_crash:]]
    rerun_finished = {order[i] for i in ran_after} & done_at_crash
    assert not rerun_finished, f"tasks recorded finished before the crash ran again: {rerun_finished}"
    assert set(_done_ids(journal)) == set(order)
    db = sqlite3.connect(journal)
    terminal = dict(db.execute("SELECT task_id, COUNT(*) FROM transitions "
                               "WHERE new IN ('done', 'failed', 'cancelled') GROUP BY task_id"))
    lost = db.execute("SELECT COUNT(*) FROM attempts WHERE state = 'lost'").fetchone()[0]
    db.close()
    assert terminal == dict.fromkeys(order, 1), "every task must be recorded finished exactly once"
    assert lost >= 1, "attempts running at the crash are recorded as lost"
