"""Hedged submission on real Slurm sites: a task stuck where it was predicted to start at once.

alpha's partition is set DOWN: jobs are accepted and queue there but never start, while its nodes stay
idle, so its forecast still predicts an immediate start (the prediction that turns out wrong). Tasks
placed at alpha wait past their prediction, are queued at beta too, start there, and their jobs at alpha
are cancelled before they ever start: each task runs once and its result is recorded once, also when the
scheduler is SIGKILLed right after submitting the hedges and the campaign is resumed. With free local
cores instead of beta, stuck tasks move there.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
import slurmsite

import metasched as ms
from tests.integration.batch_faults import attempts
from tests.integration.processes import kill_tree, wait_for
from tests.integration.scripts.hedge_campaign import HEDGE_AFTER_S, task_argv

pytestmark = [pytest.mark.slurm, pytest.mark.ray]
SCRIPT = Path(__file__).parent / "scripts" / "hedge_campaign.py"


def _scontrol_partition(info: slurmsite.SiteInfo, state: str) -> None:
    subprocess.run(["scontrol", "update", f"PartitionName={info.partition}", f"State={state}"],
                   env=info.client_env(), capture_output=True, text=True, timeout=60, check=True)


def _queued_at(info: slurmsite.SiteInfo) -> list[str]:
    """The names of the jobs pending or running at the site."""
    out = subprocess.run(["squeue", "--noheader", "--states=PENDING,RUNNING", "--format=%j"],
                         env=info.client_env(), capture_output=True, text=True, timeout=60, check=True)
    return out.stdout.split()


@pytest.fixture
def alpha_down(alpha: slurmsite.SiteInfo) -> Iterator[slurmsite.SiteInfo]:
    """alpha with its partition DOWN (nodes idle); back UP and its queue emptied afterwards."""
    _scontrol_partition(alpha, "DOWN")
    try:
        yield alpha
    finally:
        _scontrol_partition(alpha, "UP")
        subprocess.run(["scancel", f"--partition={alpha.partition}", "--state=PENDING"],
                       env=alpha.client_env(), capture_output=True, timeout=60, check=False)


def _sites(*infos: slurmsite.SiteInfo) -> list[dict[str, object]]:
    return [{"name": i.name, "slurm_conf": i.slurm_conf, "shared_dir": i.shared_dir, "poll_interval": 0.3}
            for i in infos]


def _marker_dirs(*infos: slurmsite.SiteInfo) -> list[str]:
    """One directory per site (each site sees only its own shared directory) for the tasks' run notes."""
    name = f"hedge-{time.time_ns()}"
    dirs = [Path(i.shared_dir) / name for i in infos]
    for d in dirs:
        d.mkdir()
    return [str(d) for d in dirs]


def _runs(dirs: list[str]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for d in dirs:
        for marker in Path(d).iterdir():
            counts[marker.name] += len(marker.read_text().splitlines())
    return dict(counts)


def _numbers(journal: Path) -> list[tuple[str, int]]:
    db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=10)
    try:
        return list(db.execute("SELECT site, number FROM attempts"))
    finally:
        db.close()


def _by_task(journal: Path) -> dict[str, list[tuple[str, str]]]:
    tasks: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for task_id, site, state, _ in attempts(journal):
        tasks[task_id].append((site, state))
    return dict(tasks)


def _assert_hedged_once(journal: Path, dirs: list[str], tasks: int) -> None:
    """Every task succeeded once; every attempt at alpha was cancelled; each task ran once."""
    by_task = _by_task(journal)
    assert len(by_task) == tasks, by_task
    hedged = [t for t, tried in by_task.items() if tried[0][0] == "alpha"]
    assert hedged, f"no task was placed at alpha first: {by_task}"
    for task_id, tried in by_task.items():
        assert [state for _, state in tried].count("succeeded") == 1, (task_id, tried)
        assert all(state == "cancelled" for site, state in tried if site == "alpha"), (task_id, tried)
    for task_id in hedged:
        assert by_task[task_id] == [("alpha", "cancelled"), ("beta", "succeeded")], by_task[task_id]
    assert _runs(dirs) == {str(i): 1 for i in range(tasks)}


def test_tasks_stuck_at_a_site_are_hedged_to_another_and_each_runs_once(
        alpha_down: slurmsite.SiteInfo, beta: slurmsite.SiteInfo, ray_local: None, tmp_path: Path) -> None:
    dirs = _marker_dirs(alpha_down, beta)
    journal = tmp_path / "h.db"
    sites = [ms.SlurmSite(**options) for options in _sites(alpha_down, beta)]  # type: ignore[arg-type]
    policy = ms.DefaultPolicy(hedge_after_s=HEDGE_AFTER_S, hedge_budget=1.0)
    with ms.Campaign(f"hedge-{os.getpid()}", sites=sites, journal=journal, policy=policy) as campaign:
        futures = [campaign.command(task_argv(dirs, i), name=f"h{i}") for i in range(6)]
        outputs = sorted(int(f.result(timeout=180).stdout) for f in futures)
        # the losers' jobs at alpha were cancelled by the race, not by closing the campaign
        wait_for(lambda: not [n for n in _queued_at(alpha_down) if n.startswith("ms-alpha-")], 30,
                 "alpha's queued jobs to be cancelled")
    assert outputs == list(range(6))
    _assert_hedged_once(journal, dirs, 6)
    hedged = next(t for t, tried in _by_task(journal).items() if tried[0][0] == "alpha")
    shown = subprocess.run([sys.executable, "-m", "metasched", "logs", str(journal), hedged],
                           capture_output=True, text=True, timeout=60, check=True).stdout
    assert "hedged: attempt 1 at alpha has waited" in shown, shown
    assert "hedge settled: attempt 2 at beta started first; attempt 1 at alpha is cancelled" in shown, shown


def test_killed_right_after_hedging_the_resumed_campaign_runs_each_task_once(
        alpha_down: slurmsite.SiteInfo, beta: slurmsite.SiteInfo, tmp_path: Path) -> None:
    dirs = _marker_dirs(alpha_down, beta)
    journal = tmp_path / "k.db"
    args = [sys.executable, str(SCRIPT), str(journal), json.dumps(_sites(alpha_down, beta)), json.dumps(dirs)]
    run = subprocess.Popen([*args, "run"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           start_new_session=True, env={**os.environ, "METASCHED_FAULT": "after-hedge:beta"})
    try:  # the scheduler dies once it has submitted its first hedges at beta; its driver then ends
        out, _ = run.communicate(timeout=150)
    finally:
        kill_tree(run.pid)
    assert "SUBMITTED" in out, out
    assert any(number > 1 for _, number in _numbers(journal)), "no hedge was journaled"
    live = [row for row in attempts(journal) if row[2] in ("submitted", "running")]
    assert any(site == "alpha" for _, site, _, _ in live), live  # the race was on when it died
    resumed = subprocess.run([*args, "resume"], capture_output=True, text=True, timeout=300, check=False)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "RESUMED 0 1 2 3" in resumed.stdout
    _assert_hedged_once(journal, dirs, 4)
    assert not [n for n in _queued_at(alpha_down) if n.startswith("ms-alpha-")]


def test_stuck_tasks_move_to_free_local_cores_and_their_queued_jobs_are_cancelled(
        alpha_down: slurmsite.SiteInfo, ray_local: None, tmp_path: Path) -> None:
    """The local site starts what it accepts at once: a move there wins at once, before the batch job.

    Moves queue nothing twice, so the hedge budget (one task here) does not bound them: every task stuck
    at alpha moves.
    """
    journal = tmp_path / "l.db"
    sites = [ms.LocalSite("local", cores=2), *(ms.SlurmSite(**o) for o in _sites(alpha_down))]  # type: ignore[arg-type]
    policy = ms.DefaultPolicy(hedge_after_s=HEDGE_AFTER_S, hedge_budget=0.1)  # 1 of 6 tasks
    with ms.Campaign(f"hedge-local-{os.getpid()}", sites=sites, journal=journal, policy=policy) as campaign:
        futures = [campaign.command(["sleep", "1"], name=f"l{i}") for i in range(6)]
        assert all(f.result(timeout=180).returncode == 0 for f in futures)
        wait_for(lambda: not [n for n in _queued_at(alpha_down) if n.startswith("ms-alpha-")], 30,
                 "alpha's queued jobs to be cancelled")
    by_task = _by_task(journal)
    at_alpha = [t for t, tried in by_task.items() if tried[0][0] == "alpha"]
    assert len(at_alpha) > 1, f"fewer than two tasks were placed at alpha first: {by_task}"
    for task_id in at_alpha:
        assert by_task[task_id] == [("alpha", "cancelled"), ("local", "succeeded")], by_task[task_id]
    shown = subprocess.run([sys.executable, "-m", "metasched", "logs", str(journal), at_alpha[0]],
                           capture_output=True, text=True, timeout=60, check=True).stdout
    assert "moved: attempt 1 at alpha has waited" in shown, shown
    assert "hedge settled: attempt 2 at local started first; attempt 1 at alpha is cancelled" in shown, shown
