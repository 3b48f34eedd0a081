"""Fault injection on a dedicated Slurm site `gamma` with short MinJobAge and SlurmdTimeout."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import slurmsite

import metasched as ms
from tests.conftest import _slurm_unavailable_reason
from tests.integration.batch_faults import attempts, job_of_first_attempt, rerun_argv

pytestmark = [pytest.mark.slurm, pytest.mark.ray]


@pytest.fixture(scope="module")
def gamma() -> Iterator[slurmsite.SiteInfo]:
    reason = _slurm_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    info = slurmsite.up("gamma", fresh=True, min_job_age=2, slurmd_timeout=6)
    yield info
    slurmsite.down("gamma", purge=True)


def _squeue_ids(site: slurmsite.SiteInfo) -> set[str]:
    out = subprocess.run(["squeue", "--noheader", "--states=all", "--format=%i"], env=site.client_env(),
                         capture_output=True, text=True, timeout=30, check=True)
    return set(out.stdout.split())


def test_job_purged_from_squeue_is_resolved_from_its_own_files(
    gamma: slurmsite.SiteInfo, ray_local: None, tmp_path: Path
) -> None:
    site = ms.SlurmSite("gamma", slurm_conf=gamma.slurm_conf, shared_dir=gamma.shared_dir, poll_interval=8.0)
    with ms.Campaign(f"purge-{os.getpid()}", sites=[site], journal=tmp_path / "p.db") as c:
        command = c.command(["echo", "still here"])

        @c.task
        def answer() -> int:
            return 42

        function = answer()
        assert command.result(timeout=120).stdout == "still here\n"
        assert function.result(timeout=120) == 42
    db = sqlite3.connect(tmp_path / "p.db")
    job_ids = {native for (native,) in db.execute("SELECT native_id FROM attempts")}
    db.close()
    assert len(job_ids) == 2
    assert not job_ids & _squeue_ids(gamma), "the jobs should have been purged from squeue by now"


def test_killed_compute_node_its_task_is_retried_elsewhere(
    gamma: slurmsite.SiteInfo, ray_local: None, tmp_path: Path
) -> None:
    site = ms.SlurmSite("gamma", slurm_conf=gamma.slurm_conf, shared_dir=gamma.shared_dir, poll_interval=0.5)
    with ms.Campaign(f"nodekill-{os.getpid()}", sites=[site], journal=tmp_path / "n.db") as c:
        future = c.command(["sh", "-c", "sleep 15; echo survived"], retries=1)
        node = ""
        deadline = time.monotonic() + 60
        while not node and time.monotonic() < deadline:
            out = subprocess.run(["squeue", "--noheader", "--states=RUNNING", "--format=%N"],
                                 env=gamma.client_env(), capture_output=True, text=True, timeout=30,
                                 check=True)
            node = out.stdout.strip()
            time.sleep(0.3)
        assert node, "the job never started"
        subprocess.run(["docker", "kill", f"metasched-slurm-{node}"], check=True, capture_output=True,
                       timeout=60)
        try:
            assert future.result(timeout=180).stdout == "survived\n"
        finally:
            subprocess.run(["docker", "start", f"metasched-slurm-{node}"], check=True, capture_output=True,
                           timeout=60)
    db = sqlite3.connect(tmp_path / "n.db")
    states = [state for (state,) in db.execute("SELECT state FROM attempts ORDER BY number")]
    db.close()
    assert states == ["lost", "succeeded"]


def test_job_cancelled_outside_metasched_is_run_again(
    gamma: slurmsite.SiteInfo, ray_local: None, tmp_path: Path
) -> None:
    marker = Path(gamma.shared_dir) / f"cancelled-{time.time_ns()}"
    journal = tmp_path / "c.db"
    site = ms.SlurmSite("gamma", slurm_conf=gamma.slurm_conf, shared_dir=gamma.shared_dir, poll_interval=0.3)
    with ms.Campaign(f"scancel-{os.getpid()}", sites=[site], journal=journal) as c:
        future = c.command(rerun_argv(marker), retries=1)
        job_id = job_of_first_attempt(c, journal, marker)
        subprocess.run(["scancel", job_id], env=gamma.client_env(), check=True, timeout=30)
        assert future.result(timeout=120).stdout == "attempt 2\n"
    assert [row[2] for row in attempts(journal)] == ["lost", "succeeded"]
