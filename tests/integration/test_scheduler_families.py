"""One campaign across scheduler families: Slurm (alpha, beta), Grid Engine (epsilon) and the PBS agent's
Torque dialect (zeta: Debian's Torque-style wrappers over Slurm)."""

from __future__ import annotations

import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
import slurmsite

import metasched as ms
from tests.integration.pbs_sites import torque_site

pytestmark = [pytest.mark.slurm, pytest.mark.ray]


def test_200_tasks_across_slurm_grid_engine_and_torque_survive_a_controller_stop(
    alpha: slurmsite.SiteInfo, beta: slurmsite.SiteInfo, epsilon: object, zeta: slurmsite.SiteInfo,
    ray_local: None, tmp_path: Path
) -> None:
    """alpha's slurmctld is stopped once 50 tasks are done and started again 20 s later: the campaign
    completes, every task succeeds exactly once, and all four sites did work."""
    journal = tmp_path / "families.db"
    sites = [ms.SlurmSite(s.name, slurm_conf=s.slurm_conf, shared_dir=s.shared_dir, poll_interval=0.3,
                          max_jobs=30) for s in (alpha, beta)]
    sites += [
        ms.GridEngineSite("epsilon", shared_dir=epsilon.shared_dir,  # type: ignore[attr-defined]
                          login=tuple(epsilon.login), poll_interval=0.3, max_jobs=8),  # type: ignore[attr-defined]
        torque_site(zeta, poll_interval=0.3, max_jobs=8)]
    controller = "metasched-slurm-alpha-controller"
    with ms.Campaign("families", sites=sites, journal=journal) as c:
        @c.task
        def work(i: int) -> int:
            time.sleep(0.5)
            return i

        futures = [work(i) for i in range(200)]
        deadline = time.monotonic() + 300
        while sum(f.done() for f in futures) < 50:
            assert time.monotonic() < deadline, f"50 tasks not done in 300 s: {c.status()}"
            time.sleep(0.2)
        subprocess.run(["docker", "stop", "--time", "30", controller], check=True, capture_output=True,
                       timeout=90)
        try:
            time.sleep(20)
        finally:
            subprocess.run(["docker", "start", controller], check=True, capture_output=True, timeout=60)
        assert [f.result(timeout=900) for f in futures] == list(range(200))
        done = {row.site: row.done for row in c.status()}
    slurmsite.wait_ready(alpha)
    assert sum(done.values()) == 200
    assert all(done.get(site, 0) > 0 for site in ("alpha", "beta", "epsilon", "zeta")), done
    db = sqlite3.connect(journal)
    twice = list(db.execute("SELECT task_id FROM attempts WHERE state = 'succeeded' GROUP BY task_id "
                            "HAVING COUNT(*) > 1"))
    db.close()
    assert twice == []
