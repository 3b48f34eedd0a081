"""A Slurm cluster metasched did not build (iota, ci/slurm-campus), reached as another user than this one.

The site's commands run as alice (``docker exec -u alice``) while metasched runs as this machine's user: the
jobs must be found as alice's, nothing may be declared VANISHED, left running or run twice, and the
attempt directories must be writable by alice through the project directory's group.
"""

from __future__ import annotations

import getpass
import os
import subprocess
import time
from pathlib import Path

import pytest

import metasched as ms
from metasched.errors import SiteAgentError
from metasched.sites.preflight import check_site
from site_agents.batch.access import needs_group_write
from site_agents.runner import CommandRunner
from tests.integration.batch_faults import attempts, job_of_first_attempt, rerun_argv
from tests.integration.processes import wait_for

pytestmark = [pytest.mark.docker, pytest.mark.ray]
ACTIVE = "PENDING,CONFIGURING,RUNNING,COMPLETING,SUSPENDED"


def _site(iota: object, shared_dir: str | None = None) -> ms.SlurmSite:
    return ms.SlurmSite("iota", shared_dir=shared_dir or iota.shared_dir,  # type: ignore[attr-defined]
                        login=tuple(iota.login), poll_interval=0.3)  # type: ignore[attr-defined]


def _squeue(iota: object, *options: str) -> list[str]:
    out = subprocess.run([*iota.login, "squeue", "--noheader", "--user=alice", "--format=%j %T", *options],  # type: ignore[attr-defined]
                         capture_output=True, text=True, timeout=60, check=True)
    return out.stdout.split("\n")[:-1]


def test_another_users_jobs_are_followed_to_the_end_and_none_is_left_running(
        iota: object, ray_local: None, tmp_path: Path) -> None:
    assert getpass.getuser() != "alice"
    journal = tmp_path / "u.db"
    c = ms.Campaign("campus-user", sites=[_site(iota)], journal=journal).start()
    try:
        # memory asked of a site whose nodes report none: not refused, by metasched or by sbatch
        commands = [c.command(["sh", "-c", "sleep 8; id -un"], name=f"c{i}", memory="2G") for i in range(10)]
        square = c.task(walltime=120)(pow)
        functions = [square(i, 2) for i in range(6)]
        cut_short = c.command(["sleep", "600"], name="cut-short")
        assert {f.result(timeout=300).stdout for f in commands} == {"alice\n"}
        assert [f.result(timeout=120) for f in functions] == [i * i for i in range(6)]
        wait_for(lambda: any(line.endswith(" RUNNING") for line in _squeue(iota)), 60, "cut-short to run")
    finally:
        c.close(wait=False)  # cancels cut-short's job
    assert cut_short.done()
    rows = attempts(journal)
    assert len(rows) == 17, rows  # one attempt per task: nothing VANISHED and run again
    assert sorted(state for *_, state, _ in rows).count("succeeded") == 16, rows
    wait_for(lambda: not _squeue(iota, f"--states={ACTIVE}"), 60, "alice's jobs to end (cut-short cancelled)")
    # finished jobs stay listed for MinJobAge (300 s): each attempt's job name appears once, so no task ran
    # twice; and each of them is a job of this campaign's attempts
    names = [line.split()[0] for line in _squeue(iota, "--states=all")]
    ours = {f"ms-iota-{task_id}.1" for task_id, *_ in rows}
    assert ours <= set(names), (ours, names)
    assert all(names.count(name) == 1 for name in ours), names


def test_job_cancelled_by_its_user_outside_metasched_is_run_again(
        iota: object, ray_local: None, tmp_path: Path) -> None:
    marker = Path(iota.shared_dir) / f"cancelled-{time.time_ns()}"  # type: ignore[attr-defined]
    journal = tmp_path / "d.db"
    with ms.Campaign("campus-deleted", sites=[_site(iota)], journal=journal) as c:
        future = c.command(rerun_argv(marker), retries=1)
        job_id = job_of_first_attempt(c, journal, marker)
        subprocess.run([*iota.login, "scancel", job_id], check=True, capture_output=True, timeout=60)  # type: ignore[attr-defined]
        assert future.result(timeout=120).stdout == "attempt 2\n"
    assert [row[2] for row in attempts(journal)] == ["lost", "succeeded"]


def test_sites_check_says_who_the_commands_run_as_and_that_memory_is_not_tracked(iota: object) -> None:
    checks = {check.check: check for check in check_site(_site(iota))}
    assert "memory not tracked" in checks["reachable"].detail
    assert "the commands run as alice" in checks["shared_dir"].detail
    assert checks["smoke task"].passed, checks
    assert checks["python"].passed, checks


def test_a_shared_dir_the_remote_user_cannot_write_is_refused_at_start_with_the_fix(
        iota: object, ray_local: None, tmp_path: Path) -> None:
    private = Path(iota.shared_dir) / f"private-{time.time_ns()}"  # type: ignore[attr-defined]
    private.mkdir()
    private.chmod(0o755)
    os.chown(private, 0, 0)  # group root: alice is not in it, so group-writable does not help her
    runner = CommandRunner(site="iota", login=tuple(iota.login))  # type: ignore[attr-defined]
    with pytest.raises(SiteAgentError) as refused:
        needs_group_write(runner, str(private), "alice")
    said = str(refused.value)
    assert "its commands run as 'alice'" in said
    assert "chgrp GROUP" in said, said
    assert "mode drwxr-xr-x" in said, said
    # a directory of the project's group is made group-writable, and then alice writes it
    assert needs_group_write(runner, iota.shared_dir, "alice") is True  # type: ignore[attr-defined]
    # the campaign does not start (rather than every job failing without a word)
    with pytest.raises(SiteAgentError, match="cannot write the directories metasched makes in shared_dir"):
        ms.Campaign("campus-private", sites=[_site(iota, str(private))], journal=tmp_path / "p.db").start()
