"""The PBS agent's Torque dialect against the site zeta: Slurm 22.05 behind Debian's Torque-style wrappers.

zeta is a compatibility layer over Slurm, not Torque: these tests prove the agent drives qsub/qstat/qdel/
pbsnodes as a Torque user would, and how it copes with the faults of a batch site. The OpenPBS dialect's
parsers are tested on recorded real output (tests/unit/test_pbs_parsers.py).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
import slurmsite

import metasched as ms
from tests.integration.batch_faults import (
    assert_nothing_lost,
    attempts,
    job_of_first_attempt,
    outage_campaign,
    rerun_argv,
)
from tests.integration.pbs_sites import torque_site
from tests.integration.processes import wait_for

pytestmark = [pytest.mark.docker, pytest.mark.ray]

def _client(zeta: object, *argv: str) -> list[str]:
    return [*zeta.login, "env", f"SLURM_CONF={zeta.slurm_conf}", *argv]  # type: ignore[attr-defined]


def test_jobs_see_pbs_jobid_from_spank_pbs(zeta: object, ray_local: None, tmp_path: Path) -> None:
    journal = tmp_path / "j.db"
    with ms.Campaign("pbs-jobid", sites=[torque_site(zeta, poll_interval=0.3)], journal=journal) as c:
        result = c.command(["sh", "-c", 'echo "$PBS_JOBID"'], cores=2).result(timeout=120)
    [(_, site, state, job_id)] = attempts(journal)
    assert (site, state) == ("zeta", "succeeded")
    assert result.stdout == f"{job_id}\n"


def test_refused_submission_names_site_task_and_reason(zeta: object, ray_local: None, tmp_path: Path) -> None:
    site = torque_site(zeta, queue="nosuch", poll_interval=0.3)
    with ms.Campaign("pbs-refused", sites=[site], journal=tmp_path / "r.db") as c:
        error = c.command(["true"], name="needs-a-queue").exception(timeout=60)
    assert isinstance(error, ms.RemoteTaskError)
    assert error.error_type == "SubmitError"
    assert "qsub at site zeta refused task 'needs-a-queue'" in str(error)
    assert "invalid partition" in str(error).lower()


def test_job_deleted_outside_metasched_is_run_again(zeta: object, ray_local: None, tmp_path: Path) -> None:
    marker = Path(zeta.shared_dir) / f"deleted-{time.time_ns()}"  # type: ignore[attr-defined]
    journal = tmp_path / "d.db"
    with ms.Campaign("pbs-deleted", sites=[torque_site(zeta, poll_interval=0.3)], journal=journal) as c:
        future = c.command(rerun_argv(marker), retries=1)
        job_id = job_of_first_attempt(c, journal, marker)
        subprocess.run(_client(zeta, "qdel", job_id), check=True, capture_output=True)
        assert future.result(timeout=120).stdout == "attempt 2\n"
    assert [row[2] for row in attempts(journal)] == ["lost", "succeeded"]


def test_server_stopped_midway_loses_nothing(zeta: object, ray_local: None, tmp_path: Path) -> None:
    """zeta's controller (where the Torque-style commands run) is stopped while jobs run and queue: new
    work goes to the local site; once it is back, zeta's jobs are followed to their end and every task
    ends exactly once."""
    journal = tmp_path / "s.db"
    controller = zeta.login[-1]  # type: ignore[attr-defined]
    sites = [ms.LocalSite("local", cores=1), torque_site(zeta, poll_interval=0.3)]
    with ms.Campaign("pbs-server", sites=sites, journal=journal) as c:
        outage = outage_campaign(
            c, journal, "zeta",
            stop=lambda: subprocess.run(["docker", "stop", "--time", "30", controller], check=True,
                                        capture_output=True),
            start=lambda: subprocess.run(["docker", "start", controller], check=True, capture_output=True))
    assert_nothing_lost(journal, "zeta", outage)
    # The restarted controller lists its nodes as "unknown" until their slurmd registers again; the next
    # test's site would see no usable node.
    slurmsite.wait_ready(zeta)  # type: ignore[arg-type]


def test_sites_check_reaches_the_server_or_says_how_to_fix(zeta: object) -> None:
    import dataclasses

    from metasched.sites.preflight import check_site

    good = torque_site(zeta)  # type: ignore[arg-type]
    checks = {c.check: c for c in check_site(good)}
    assert list(checks) == ["reachable", "smoke task", "python"]
    assert all(c.passed for c in checks.values()), checks
    assert checks["reachable"].detail.startswith("2 of 2 node(s) take jobs, 8 cores")
    [check] = check_site(dataclasses.replace(good, login=("docker", "exec", "-i", "no-such-container")))
    assert not check.passed
    assert "no-such-container" in check.detail
    assert "PBS_SERVER" in check.fix


def test_the_forecast_sees_another_users_jobs_through_qstat(zeta: object) -> None:
    from site_agents.pbs.agent import pbs_agent

    submit = ["sbatch", "--parsable", "--uid=65534", "--gid=65534", "--chdir=/tmp", "--output=/dev/null",
              "--time=5", "--cpus-per-task=4", "--wrap", "sleep 240"]
    jobs = [subprocess.run(_client(zeta, *submit), capture_output=True, text=True, timeout=60,
                           check=True).stdout.strip() for _ in range(3)]  # zeta's 8 CPUs, and 4 more waiting
    listing = _client(zeta, "squeue", "--noheader", "--user=nobody", "--states=RUNNING", "--format=%i")
    agent = pbs_agent(torque_site(zeta))
    try:
        wait_for(lambda: len(subprocess.run(listing, capture_output=True, text=True, timeout=60,
                                            check=False).stdout.split()) == 2, 60,
                 "the other user's jobs to start at zeta")
        agent.start()
        seen = agent.waits.forecast
        assert seen is not None
        assert (seen.busy_cores, seen.pending_cores) == (8, 4), seen.describe()
        assert agent.load().wait_s() > 200, seen.describe()  # the running ones' 5 min limit
    finally:
        agent.close()
        subprocess.run(_client(zeta, "scancel", *jobs), capture_output=True, timeout=60, check=False)


def test_a_job_known_by_its_name_alone_is_deleted(zeta: object) -> None:
    """qdel takes ids only: a job of ours known by its unique name alone (queued by a submission the server
    left unanswered, or gone from the listing under its id) is found among the user's jobs and deleted."""
    from site_agents.batch.dialect import JobState
    from site_agents.batch.rounds import Deletions
    from site_agents.pbs.agent import pbs_agent

    name = f"ms-zeta-byname{time.time_ns()}"
    script = Path(zeta.shared_dir) / f"{name}.sh"  # type: ignore[attr-defined]
    script.write_text("#!/bin/sh\nsleep 600\n")
    script.chmod(0o755)
    job_id = subprocess.run(_client(zeta, "qsub", "-N", name, "-o", f"{script}.out", str(script)),
                            capture_output=True, text=True, timeout=60, check=True).stdout.strip()
    agent = pbs_agent(torque_site(zeta))
    try:
        agent.start()

        def state() -> JobState | None:
            listed = agent.dialect.parse_status(agent.runner.run(agent.dialect.status_argv(agent.user, [])))
            job = (listed or {}).get(agent.dialect.status_key(job_id))
            return None if job is None else job.state

        assert state() in (JobState.QUEUED, JobState.RUNNING)
        assert Deletions(names=[name]).run(agent.dialect, agent.runner.run, agent.user) == []
        assert agent.runner.calls["qdel"] == 1
        wait_for(lambda: state() in (None, JobState.FINISHED), 60, f"job {job_id} ({name}) to be deleted")
    finally:
        agent.close()
        subprocess.run(_client(zeta, "qdel", job_id), capture_output=True, timeout=60, check=False)
