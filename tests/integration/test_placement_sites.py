"""Placement from the sites' real queues: a Slurm site full of another user's jobs is avoided.

beta's 16 cores are taken by another user's jobs (``nobody``, submitted as root with ``sbatch --uid``),
with more of them pending; metasched's own listing of beta shows none of them. Round-robin sends a third
of the work there, where it would wait minutes; the default policy must not send it anything while
another site can start it sooner, and must rather wait for the local site's own cores.
"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import slurmsite

import metasched as ms
from metasched.records import Resources
from site_agents.batch.rounds import list_queue
from site_agents.slurm import SlurmSite, slurm_agent
from tests.integration.processes import wait_for

pytestmark = [pytest.mark.slurm, pytest.mark.ray]
OTHER_JOB_S = 170  # the other user's jobs run this long (limit 3 min): far beyond any test below


def _site(info: slurmsite.SiteInfo, **options: object) -> SlurmSite:
    return SlurmSite(info.name, slurm_conf=info.slurm_conf, shared_dir=info.shared_dir,  # type: ignore[arg-type]
                     poll_interval=0.3, **options)


def _as_other_user(info: slurmsite.SiteInfo, argv: list[str]) -> str:
    out = subprocess.run(argv, env=info.client_env(), capture_output=True, text=True, timeout=60, check=True)
    return out.stdout.strip()


@contextmanager
def _other_users_jobs(info: slurmsite.SiteInfo, count: int, running: int, *options: str) -> Iterator[None]:
    """`count` jobs of another user (each `sleep OTHER_JOB_S`, limit 3 min) at the site, `running` of them
    started; all cancelled afterwards."""
    submit = ["sbatch", "--parsable", "--uid=65534", "--gid=65534", "--chdir=/tmp", "--output=/dev/null",
              "--time=3", *options, "--wrap", f"sleep {OTHER_JOB_S}"]
    jobs = [_as_other_user(info, submit) for _ in range(count)]
    listing = ["squeue", "--noheader", "--states=RUNNING", "--user=nobody", "--format=%i"]
    try:
        wait_for(lambda: len(_as_other_user(info, listing).split()) == running, 60,
                 f"the other user's jobs {jobs} to start at {info.name}")
        yield
    finally:
        subprocess.run(["scancel", *jobs], env=info.client_env(), capture_output=True, timeout=60,
                       check=False)


@pytest.fixture(scope="module")
def busy_beta(slurm_sites: dict[str, slurmsite.SiteInfo]) -> Iterator[slurmsite.SiteInfo]:
    """beta with every core running another user's 8-core job and two more such jobs pending."""
    with _other_users_jobs(slurm_sites["beta"], 4, 2, "--cpus-per-task=8"):
        yield slurm_sites["beta"]


def _sites_used(journal: Path) -> Counter[str]:
    with sqlite3.connect(journal) as db:
        return Counter(site for (site,) in db.execute("SELECT site FROM attempts"))


def test_the_forecast_sees_other_users_jobs_that_the_status_listing_does_not(
    busy_beta: slurmsite.SiteInfo, alpha: slurmsite.SiteInfo
) -> None:
    busy, idle = slurm_agent(_site(busy_beta)), slurm_agent(_site(alpha))
    busy.start()
    idle.start()
    try:
        waits = busy.waits.forecast
        assert waits is not None
        assert (waits.busy_cores, waits.pending_cores) == (16, 16), waits.describe()
        # the other user's pending jobs start when the running ones reach their limit (about 3 min);
        # ours comes after them
        assert busy.load().wait_s() > 100, waits.describe()
        assert idle.load().wait_s() == 0.0
    finally:
        busy.close()
        idle.close()


def test_default_policy_sends_nothing_to_the_busy_site_while_another_has_room(
    busy_beta: slurmsite.SiteInfo, alpha: slurmsite.SiteInfo, ray_local: None, tmp_path: Path
) -> None:
    sites = [ms.LocalSite("local", cores=2), _site(alpha), _site(busy_beta)]
    started = time.monotonic()
    with ms.Campaign(f"avoid-busy-{os.getpid()}", sites=sites, journal=tmp_path / "a.db") as c:
        tasks = [c.command(["sleep", "2"], name=f"sleep-{i}") for i in range(24)]
        assert all(t.result(timeout=120).returncode == 0 for t in tasks)
        rows = {row.site: row for row in c.status()}  # what the live display shows: why beta got none
    took = time.monotonic() - started
    assert (rows["beta"].done, rows["alpha"].done + rows["local"].done) == (0, 24), rows
    assert (rows["beta"].predicted_wait_s or 0.0) > 100, rows
    assert rows["alpha"].predicted_wait_s is not None, rows
    assert rows["alpha"].predicted_wait_s < 5, rows
    used = _sites_used(tmp_path / "a.db")
    assert used["beta"] == 0, used
    assert sum(used.values()) == 24, used
    assert took < 60, f"{took:.0f} s"
    shown = subprocess.run([sys.executable, "-m", "metasched", "logs", str(tmp_path / "a.db"), "sleep-0",
                            "--placement"], capture_output=True, text=True, timeout=60, check=True).stdout
    why = re.search(r"predicted start ([\d.]+) s at (\w+);.* beta ([\d.]+) s", shown)
    assert why is not None, shown
    assert float(why.group(1)) < 5 < 100 < float(why.group(3)), shown


def test_tasks_wait_for_the_local_cores_rather_than_behind_other_users_jobs(
    busy_beta: slurmsite.SiteInfo, ray_local: None, tmp_path: Path
) -> None:
    sites = [ms.LocalSite("local", cores=2), _site(busy_beta)]
    with ms.Campaign(f"wait-local-{os.getpid()}", sites=sites, journal=tmp_path / "w.db") as c:
        tasks = [c.command(["sleep", "1"], name=f"sleep-{i}") for i in range(8)]
        assert all(t.result(timeout=120).returncode == 0 for t in tasks)
    used = _sites_used(tmp_path / "w.db")
    assert used == {"local": 8}, used


def test_an_expected_start_given_before_the_controller_placed_new_jobs_is_asked_again(
    alpha: slurmsite.SiteInfo,
) -> None:
    """Another user's three 4-core jobs are submitted at alpha (16 cores) just before metasched asks.
    Until the controller has placed them (about a second), `sbatch --test-only` answers as if they ran
    first ("to start" in minutes with 4 cores idle). That answer does not count until asked again 2 s
    later; the second says "now". Before, it held until the next listing, 10 s on, and in the placement
    benchmark sent the first 164 tasks to the other Slurm site."""
    agent = slurm_agent(_site(alpha))
    agent.start()
    submit = ["sbatch", "--parsable", "--uid=65534", "--gid=65534", "--chdir=/tmp", "--output=/dev/null",
              "--time=3", "--cpus-per-task=4", "--wrap", f"sleep {OTHER_JOB_S}"]
    jobs: list[str] = []
    try:
        for attempt in range(1, 4):  # asked at once, the controller has not placed them yet (nearly always)
            subprocess.run(["scancel", *jobs], env=alpha.client_env(), capture_output=True, timeout=60)
            wait_for(lambda: not _as_other_user(alpha, ["squeue", "--noheader", "--user=nobody"]), 60,
                     "the other user's jobs to leave alpha")
            jobs = [_as_other_user(alpha, submit) for _ in range(3)]
            listing = list_queue(agent.dialect, agent.runner.run)
            assert listing.jobs is not None
            agent.waits.listed(listing.jobs, usable_cores=agent.capacity.total_cores, ours=agent.user)
            shape = Resources(walltime_s=60.0 * attempt)  # a new shape each round: asked at once
            agent.expect([shape])
            if shape in agent.waits.doubted:
                break
        assert shape in agent.waits.doubted, "the controller placed the jobs before it was asked, 3 times"
        assert shape not in agent.load().shape_starts  # the forecast alone meanwhile: 4 cores open
        assert agent.load().wait_s(1, shape) < 5
        deadline = time.monotonic() + 30
        while shape not in agent.load().shape_starts:  # the agent's polls ask again after RECHECK_S
            assert time.monotonic() < deadline, "the expected start was not asked again"
            agent.poll()
            time.sleep(0.3)
        assert agent.load().shape_starts[shape] < 5, agent.load().shape_starts
    finally:
        subprocess.run(["scancel", *jobs], env=alpha.client_env(), capture_output=True, timeout=60)
        agent.close()


@pytest.fixture(scope="module")
def fragmented_alpha(slurm_sites: dict[str, slurmsite.SiteInfo]) -> Iterator[slurmsite.SiteInfo]:
    """alpha (2 nodes x 8 CPUs) with another user's 7-CPU job on each node: 2 CPUs free, 1 per node."""
    with _other_users_jobs(slurm_sites["alpha"], 2, 2, "--nodes=1", "--cpus-per-task=7"):
        yield slurm_sites["alpha"]


def test_the_controller_says_when_a_shape_that_fits_no_node_would_start(
    fragmented_alpha: slurmsite.SiteInfo,
) -> None:
    """Two cores are free, one per node: the whole-queue forecast (cores, not nodes) says a 2-core job
    starts now; `sbatch --test-only` for that shape says when a node frees (the other jobs' limit)."""
    agent = slurm_agent(_site(fragmented_alpha))
    agent.start()
    try:
        two, one = Resources(cores=2), Resources()
        agent.expect([two, one])
        load = agent.load()
        assert load.wait_s(2) == 0.0  # the forecast alone
        assert load.wait_s(2, two) > 100, load.shape_starts
        assert load.wait_s(1, one) < 5, load.shape_starts  # a 1-core job fits a node now
    finally:
        agent.close()


def test_default_policy_sends_a_shape_where_it_fits(
    fragmented_alpha: slurmsite.SiteInfo, ray_local: None, tmp_path: Path
) -> None:
    sites = [_site(fragmented_alpha), ms.LocalSite("local", cores=2)]
    journal = tmp_path / "f.db"
    started = time.monotonic()
    with ms.Campaign(f"fit-{os.getpid()}", sites=sites, journal=journal) as c:
        tasks = [c.command(["sleep", "1"], name=f"pair-{i}", cores=2) for i in range(3)]
        assert all(t.result(timeout=120).returncode == 0 for t in tasks)
    assert _sites_used(journal) == {"local": 3}
    assert time.monotonic() - started < 60
