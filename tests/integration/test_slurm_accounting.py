"""Slurm 24.11 with slurmdbd (site eta): sacct explains jobs that left squeue without an outcome file."""

from __future__ import annotations

import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
import slurmsite

import metasched as ms
from tests.integration.batch_faults import job_of_first_attempt, rerun_argv

pytestmark = [pytest.mark.docker, pytest.mark.ray]


def test_sacct_explains_a_job_purged_from_squeue(eta: slurmsite.SiteInfo, ray_local: None,
                                                 tmp_path: Path) -> None:
    """A job cancelled by hand is purged from squeue (MinJobAge 2 s) before the agent's next squeue
    (poll_interval 25 s): sacct says CANCELLED, so the attempt is lost to an outside cancel and the task
    runs again - without accounting it could only be declared VANISHED."""
    marker = Path(eta.shared_dir) / f"purged-{time.time_ns()}"
    journal = tmp_path / "acct.db"
    site = ms.SlurmSite("eta", slurm_conf=eta.slurm_conf, shared_dir=eta.shared_dir, login=tuple(eta.login),
                        python="python3.11", poll_interval=25.0)
    with ms.Campaign("acct", sites=[site], journal=journal) as c:
        future = c.command(rerun_argv(marker, python="python3.11"), retries=1)
        job_id = job_of_first_attempt(c, journal, marker)
        subprocess.run([*eta.login, "env", f"SLURM_CONF={eta.slurm_conf}", "scancel", job_id], check=True)
        assert future.result(timeout=240).stdout == "attempt 2\n"
    db = sqlite3.connect(journal)
    states = [state for (state,) in db.execute("SELECT state FROM attempts ORDER BY submitted_at")]
    details = [detail for (detail,) in db.execute("SELECT detail FROM transitions WHERE detail != ''")]
    db.close()
    assert states == ["lost", "succeeded"], states
    expected = f"job {job_id} at site eta was cancelled outside metasched (CANCELLED by 0)"
    assert any(expected in detail for detail in details), details
