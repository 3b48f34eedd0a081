"""The PBS agent's Torque dialect against the site zeta: Slurm 22.05 behind Debian's Torque-style wrappers.

zeta is a compatibility layer over Slurm, not Torque: these tests prove the agent drives qsub/qstat/qdel/
pbsnodes as a Torque user would, and how it copes with the faults of a batch site. The OpenPBS dialect's
parsers are tested on recorded real output (tests/unit/test_pbs_parsers.py).
"""

from __future__ import annotations

import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

import metasched as ms
from tests.integration.pbs_sites import torque_site

pytestmark = [pytest.mark.docker, pytest.mark.ray]

_ENDED = ("succeeded", "failed", "lost", "cancelled")


def _attempts(journal: Path) -> list[tuple[str, str, str, str | None]]:
    db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=10)
    try:
        return list(db.execute("SELECT task_id, site, state, native_id FROM attempts ORDER BY submitted_at"))
    finally:
        db.close()


def _client(zeta: object, *argv: str) -> list[str]:
    return [*zeta.login, "env", f"SLURM_CONF={zeta.slurm_conf}", *argv]  # type: ignore[attr-defined]


def test_jobs_see_pbs_jobid_from_spank_pbs(zeta: object, ray_local: None, tmp_path: Path) -> None:
    journal = tmp_path / "j.db"
    with ms.Campaign("pbs-jobid", sites=[torque_site(zeta, poll_interval=0.3)], journal=journal) as c:
        result = c.command(["sh", "-c", 'echo "$PBS_JOBID"'], cores=2).result(timeout=120)
    [(_, site, state, job_id)] = _attempts(journal)
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
    argv = ["python3", "-c", "import os, sys, time; first = not os.path.exists(sys.argv[1]); "
            "open(sys.argv[1], 'a').close(); time.sleep(300 if first else 0); print('attempt 2' if not first "
            "else 'attempt 1')", str(marker)]
    journal = tmp_path / "d.db"
    with ms.Campaign("pbs-deleted", sites=[torque_site(zeta, poll_interval=0.3)], journal=journal) as c:
        future = c.command(argv, retries=1)
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert time.monotonic() < deadline, "the first attempt never started"
            time.sleep(0.2)
        c.flush()
        [(_, _, _, job_id)] = _attempts(journal)
        assert job_id is not None
        subprocess.run(_client(zeta, "qdel", job_id), check=True, capture_output=True)
        assert future.result(timeout=120).stdout == "attempt 2\n"
    states = [row[2] for row in _attempts(journal)]
    assert states == ["lost", "succeeded"], states


def test_server_stopped_midway_loses_nothing(zeta: object, ray_local: None, tmp_path: Path) -> None:
    """zeta's controller (where the Torque-style commands run) is stopped while jobs run and queue: new
    work goes to the local site; once it is back, zeta's jobs are followed to their end and every task
    ends exactly once."""
    journal = tmp_path / "s.db"
    controller = zeta.login[-1]  # type: ignore[attr-defined]
    sites = [ms.LocalSite("local", cores=1), torque_site(zeta, poll_interval=0.3)]
    with ms.Campaign("pbs-server", sites=sites, journal=journal) as c:
        first = [c.command(["sleep", "2"], name=f"first-{i}") for i in range(12)]
        deadline = time.monotonic() + 60
        while not any(r[1] == "zeta" and r[3] and r[2] not in _ENDED for r in _attempts(journal)):
            assert time.monotonic() < deadline, "nothing ran at zeta"
            c.flush()
            time.sleep(0.2)
        subprocess.run(["docker", "stop", "--time", "30", controller], check=True, capture_output=True)
        down_at = time.time()
        time.sleep(3)
        second = [c.command(["sleep", "1"], name=f"second-{i}") for i in range(8)]
        time.sleep(8)
        subprocess.run(["docker", "start", controller], check=True, capture_output=True)
        up_at = time.time()
        results = [f.result(timeout=300) for f in first + second]
    assert all(r.returncode == 0 for r in results)
    db = sqlite3.connect(journal)
    placed = list(db.execute("SELECT site FROM attempts WHERE submitted_at > ? AND submitted_at < ?",
                             (down_at + 2, up_at)))
    finals = list(db.execute("SELECT task_id, COUNT(*) FROM attempts WHERE state = 'succeeded' "
                             "GROUP BY task_id"))
    lost = list(db.execute("SELECT site, native_id FROM attempts WHERE state = 'lost'"))
    db.close()
    assert lost == [], f"attempts lost although the jobs ran on: {lost}"
    assert ("zeta",) not in placed, "work was sent to zeta while its server was down"
    assert len(finals) == 20
    assert all(count == 1 for _, count in finals)


def test_sites_check_reaches_the_server_or_says_how_to_fix(zeta: object) -> None:
    from metasched.config import PBSSiteModel
    from metasched.preflight import check_site

    good = PBSSiteModel(kind="pbs", name="zeta", dialect="torque", shared_dir=zeta.shared_dir,  # type: ignore[attr-defined]
                        login=list(zeta.login), environment={"SLURM_CONF": zeta.slurm_conf})  # type: ignore[attr-defined]
    [check] = check_site(good)
    assert check.passed, check
    assert check.detail == "2 usable node(s), 8 cores (torque)"
    [check] = check_site(good.model_copy(update={"login": ["docker", "exec", "-i", "no-such-container"]}))
    assert not check.passed
    assert "no-such-container" in check.detail
    assert "PBS_SERVER" in check.fix
