"""Slurm 24.11 with slurmdbd (site eta): sacct explains jobs that left squeue without an outcome file."""

from __future__ import annotations

import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
import slurmsite

import metasched as ms
from metasched.outcomes import LossReason, Lost
from metasched.records import AttemptId, CommandSpec, Resources, TaskId, TaskKind, TaskSpec
from metasched.sites.base import Submission
from site_agents.slurm import SlurmSite, slurm_agent
from tests.integration.batch_faults import (
    assert_nothing_lost,
    job_of_first_attempt,
    outage_campaign,
    rerun_argv,
)
from tests.integration.processes import wait_for

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
    expected = f"job {job_id} at site eta was cancelled outside metasched (CANCELLED by 0"
    assert any(expected in detail for detail in details), details


def test_controller_host_stopped_midway_loses_nothing(eta: slurmsite.SiteInfo, ray_local: None,
                                                      tmp_path: Path) -> None:
    """eta's controller container - slurmctld, slurmdbd, MariaDB and the login host in one - is stopped
    while jobs run and queue: the Slurm commands fail at `docker exec` rather than with Slurm's own
    messages, yet new work goes to the local site, eta's jobs are followed to their end once it is back,
    and every task ends exactly once."""
    journal = tmp_path / "stop.db"
    controller = eta.login[-1]
    site = ms.SlurmSite("eta", slurm_conf=eta.slurm_conf, shared_dir=eta.shared_dir, login=tuple(eta.login),
                        python="python3.11", poll_interval=0.3)
    with ms.Campaign("eta-stop", sites=[ms.LocalSite("local", cores=1), site], journal=journal) as c:
        outage = outage_campaign(
            c, journal, "eta",
            stop=lambda: subprocess.run(["docker", "stop", "--time", "30", controller], check=True,
                                        capture_output=True),
            start=lambda: subprocess.run(["docker", "start", controller], check=True, capture_output=True))
    assert_nothing_lost(journal, "eta", outage)
    slurmsite.wait_ready(eta)  # its nodes are "unknown" until their slurmd registers with the new controller


def test_a_submission_through_a_login_host_that_is_gone_is_placed_again_at_no_cost(
        eta: slurmsite.SiteInfo) -> None:
    """`docker exec` into eta's stopped controller host fails (exit 1, "... is not running"): the site's
    doing, not the job's. Before, that was read as sbatch refusing the task, which then failed (so was an
    sbatch killed as the container stopped, exit 137, in the test above). Once the controller answers
    again, any job such a submission may have queued is deleted by its unique name."""
    agent = slurm_agent(SlurmSite("eta", slurm_conf=eta.slurm_conf, shared_dir=eta.shared_dir,
                                  login=tuple(eta.login), python="python3.11", poll_interval=0.3))
    agent.start()
    spec = TaskSpec(task_id=TaskId(f"gone{time.time_ns()}"), name="gone", kind=TaskKind.COMMAND,
                    resources=Resources(), command=CommandSpec(argv=("true",)))
    sub = Submission(attempt_id=AttemptId(f"{spec.task_id}.1"), spec=spec)
    controller = eta.login[-1]
    try:
        subprocess.run(["docker", "stop", controller], check=True, capture_output=True, timeout=60)
        try:
            agent.submit([sub], wait=True)
            [outcome] = [u.outcome for u in agent.poll() if u.attempt_id == sub.attempt_id]
            assert not agent.load().accepting
        finally:
            subprocess.run(["docker", "start", controller], check=True, capture_output=True, timeout=60)
        assert isinstance(outcome, Lost), outcome
        assert outcome.reason is LossReason.SITE_UNAVAILABLE, outcome
        assert not outcome.charge_retry, outcome
        wait_for(lambda: not agent.poll() and agent.load().accepting, 120, "eta to answer again")
        assert agent.runner.calls["scancel"] == 1  # the job the submission may have queued, by its name
    finally:
        agent.close()
        slurmsite.wait_ready(eta)
