"""The Grid Engine agent against the real Grid Engine 8.1.9 site epsilon (ci/gridengine/)."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import time
from pathlib import Path

import gesite
import pytest

import metasched as ms
from tests.integration.batch_faults import (
    assert_nothing_lost,
    attempts,
    job_of_first_attempt,
    outage_campaign,
    rerun_argv,
)
from tests.integration.processes import wait_for

pytestmark = [pytest.mark.docker, pytest.mark.ray]


def _site(epsilon: object, **options: object) -> ms.GridEngineSite:
    return ms.GridEngineSite("epsilon", shared_dir=epsilon.shared_dir,  # type: ignore[attr-defined]
                             login=tuple(epsilon.login), poll_interval=0.3, **options)  # type: ignore[attr-defined,arg-type]


def test_refused_submission_names_site_task_and_reason(epsilon: object, ray_local: None,
                                                      tmp_path: Path) -> None:
    with ms.Campaign("ge-refused", sites=[_site(epsilon, queue="nosuch.q")], journal=tmp_path / "r.db") as c:
        error = c.command(["true"], name="needs-a-queue").exception(timeout=60)
    assert isinstance(error, ms.RemoteTaskError)
    assert error.error_type == "SubmitError"
    assert "qsub at site epsilon refused task 'needs-a-queue'" in str(error)
    assert "nosuch.q" in str(error)


def test_job_deleted_outside_metasched_is_run_again(epsilon: object, ray_local: None, tmp_path: Path) -> None:
    marker = Path(epsilon.shared_dir) / f"deleted-{time.time_ns()}"  # type: ignore[attr-defined]
    journal = tmp_path / "d.db"
    with ms.Campaign("ge-deleted", sites=[_site(epsilon)], journal=journal) as c:
        future = c.command(rerun_argv(marker), retries=1)
        job_id = job_of_first_attempt(c, journal, marker)
        subprocess.run([*epsilon.login, "qdel", job_id], check=True, capture_output=True)  # type: ignore[attr-defined]
        assert future.result(timeout=120).stdout == "attempt 2\n"
    assert [row[2] for row in attempts(journal)] == ["lost", "succeeded"]


def test_qmaster_stopped_midway_loses_nothing(epsilon: object, ray_local: None, tmp_path: Path) -> None:
    """The qmaster is killed while jobs run and queue; new work goes to the local site; once it is back,
    epsilon's jobs are followed to their end and every task ends exactly once."""
    journal = tmp_path / "q.db"
    sites = [ms.LocalSite("local", cores=1), _site(epsilon)]
    login = list(epsilon.login)  # type: ignore[attr-defined]
    with ms.Campaign("ge-qmaster", sites=sites, journal=journal) as c:
        outage = outage_campaign(c, journal, "epsilon",
                                 stop=lambda: subprocess.run([*login, "pkill", "sge_qmaster"], check=True),
                                 start=lambda: subprocess.run([*login, "/usr/sbin/sge_qmaster"], check=True))
    assert_nothing_lost(journal, "epsilon", outage)
    # the cell as it was found: the campaign may end (its last tasks moved to the local core) before the
    # execution daemon reported to the restarted qmaster, and the tests after this one need its queue
    wait_for(lambda: gesite.takes_jobs(epsilon), 120, "epsilon's queue to take jobs again")  # type: ignore[arg-type]


def test_sites_check_reaches_the_cell_or_says_how_to_fix(epsilon: object) -> None:
    import dataclasses

    from metasched.sites.preflight import check_site

    good = _site(epsilon)
    checks = {c.check: c for c in check_site(good)}
    assert list(checks) == ["reachable", "smoke task", "python"]
    assert all(c.passed for c in checks.values()), checks
    assert checks["reachable"].detail.startswith("1 of 1 node(s) take jobs, 4 cores")
    [check] = check_site(dataclasses.replace(good, login=("docker", "exec", "-i", "no-such-container")))
    assert not check.passed
    assert "no-such-container" in check.detail
    assert "SGE_ROOT" in check.fix


def test_job_in_error_state_is_deleted_and_fails_with_the_reason(epsilon: object, ray_local: None,
                                                                 tmp_path: Path) -> None:
    """A job whose working directory vanished while it waited goes into Eqw (Grid Engine would keep it
    forever): the attempt fails with Grid Engine's error reason and the job is deleted."""
    journal = tmp_path / "e.db"
    with ms.Campaign("ge-eqw", sites=[_site(epsilon)], journal=journal) as c:
        blockers = [c.command(["sleep", "300"], name=f"blocker-{i}") for i in range(4)]  # the 4 slots
        deadline = time.monotonic() + 60
        while len([r for r in attempts(journal) if r[3]]) < 4:
            assert time.monotonic() < deadline, "the blockers were not submitted"
            c.flush()
            time.sleep(0.2)
        victim = c.command(["true"], name="victim")
        while len([r for r in attempts(journal) if r[3]]) < 5:
            assert time.monotonic() < deadline, "the victim was not submitted"
            c.flush()
            time.sleep(0.2)
        db = sqlite3.connect(journal)
        [(attempt_id, job_id)] = list(db.execute(
            "SELECT a.attempt_id, a.native_id FROM attempts a JOIN tasks t ON t.task_id = a.task_id "
            "WHERE t.name = 'victim'"))
        db.close()
        shutil.rmtree(Path(epsilon.shared_dir) / ".metasched" / "attempts" / attempt_id)  # type: ignore[attr-defined]
        for blocker in blockers:
            blocker.cancel()
        error = victim.exception(timeout=120)
    assert isinstance(error, ms.RemoteTaskError)
    assert error.error_type == "SchedulerError"
    assert f"job {job_id} at site epsilon can never start as submitted (Eqw: error: can't chdir" in str(error)
    assert str(error).splitlines()[0].endswith("and was deleted")
    assert "error:" in str(error)
    listed = subprocess.run([*epsilon.login, "qstat", "-xml"], capture_output=True, text=True,  # type: ignore[attr-defined]
                            check=True).stdout
    assert f"<JB_job_number>{job_id}</JB_job_number>" not in listed


def test_the_forecast_sees_another_users_jobs_filling_the_cell(epsilon: object) -> None:
    from site_agents.gridengine import gridengine_agent

    login = list(epsilon.login)  # type: ignore[attr-defined]
    qsub = "qsub -terse -wd /tmp -o /dev/null -e /dev/null -l h_rt=300 -b y sleep 200"
    for _ in range(5):  # every slot of the cell (4), then one more waiting
        subprocess.run([*login, "su", "-s", "/bin/sh", "nobody", "-c", qsub], check=True, timeout=60,
                       capture_output=True)

    def running() -> int:
        listed = subprocess.run([*login, "qstat", "-u", "nobody", "-s", "r"], capture_output=True, text=True,
                                timeout=60, check=False).stdout
        return sum(" r " in line for line in listed.splitlines())

    agent = gridengine_agent(_site(epsilon))
    try:
        wait_for(lambda: running() == 4, 60, "the other user's jobs to fill the cell")
        agent.start()
        seen = agent.waits.forecast
        assert seen is not None
        assert (seen.busy_cores, seen.pending_cores) == (4, 1), seen.describe()
        assert agent.load().wait_s() > 250, seen.describe()  # the running ones' h_rt, then the pending one's
    finally:
        agent.close()
        subprocess.run([*login, "qdel", "-u", "nobody"], check=False, timeout=60, capture_output=True)


def test_a_site_whose_queue_is_disabled_takes_no_work_and_says_which(epsilon: object) -> None:
    from metasched.errors import SiteAgentError
    from site_agents.gridengine import gridengine_agent

    login = list(epsilon.login)  # type: ignore[attr-defined]
    subprocess.run([*login, "qmod", "-d", "all.q"], check=True, capture_output=True, timeout=60)
    agent = gridengine_agent(_site(epsilon))
    try:
        with pytest.raises(SiteAgentError, match=r"all\.q@\S+ \(disabled\)"):
            agent.start()
    finally:
        agent.close()
        subprocess.run([*login, "qmod", "-e", "all.q"], capture_output=True, timeout=60, check=False)


def test_tasks_queued_past_their_prediction_move_to_free_local_cores(epsilon: object, ray_local: None,
                                                                     tmp_path: Path) -> None:
    """Four 40 s tasks pinned to epsilon hold its 4 slots; the campaign knows no run time yet, so more
    tasks are predicted to start there soon and queue behind them. Past that prediction by move_after_s
    they move to the local site's free cores; their jobs at epsilon are deleted before they start."""
    journal = tmp_path / "m.db"
    policy = ms.DefaultPolicy(hedge_after_s=6.0, hedge_budget=1.0)  # moves after 6 s too
    with ms.Campaign("ge-move", sites=[ms.LocalSite("local", cores=2), _site(epsilon)], journal=journal,
                     policy=policy) as c:
        holders = [c.command(["sleep", "40"], name=f"hold{i}", sites=["epsilon"]) for i in range(4)]
        c.flush()
        wait_for(lambda: len([r for r in attempts(journal) if r[3]]) == 4, 60, "the holders' jobs")
        futures = [c.command(["sleep", "1"], name=f"m{i}") for i in range(6)]
        assert all(f.result(timeout=120).returncode == 0 for f in futures)
        for holder in holders:
            holder.cancel()
    by_task: dict[str, list[tuple[str, str]]] = {}
    names = {f.task_id: f.name for f in futures}
    for task_id, site, state, _ in attempts(journal):
        if task_id in names:
            by_task.setdefault(names[task_id], []).append((site, state))
    stuck = [name for name, tried in by_task.items() if tried[0][0] == "epsilon"]
    assert stuck, f"no task was placed at epsilon first: {by_task}"
    for name in stuck:
        assert by_task[name] == [("epsilon", "cancelled"), ("local", "succeeded")], by_task[name]
    moved_jobs = [native for task_id, site, state, native in attempts(journal)
                  if site == "epsilon" and names.get(task_id, "").startswith("m")]
    assert all(moved_jobs), moved_jobs
    login = list(epsilon.login)  # type: ignore[attr-defined]
    listed = subprocess.run([*login, "qstat", "-xml", "-u", "*"], capture_output=True, text=True, check=True,
                            timeout=60).stdout  # the holders may still be in deletion ("dr"); no moved job
    assert not [j for j in moved_jobs if f"<JB_job_number>{j}</JB_job_number>" in listed], listed
