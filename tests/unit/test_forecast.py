"""The whole-queue wait forecast of batch sites, on recorded real Slurm output (tests/data/slurm-22.05)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from site_agents.batch.forecast import QueuedJob, QueueWait, WaitLearner, forecast
from site_agents.slurm import parsers

DATA = Path(__file__).parent.parent / "data" / "slurm-22.05"
RECORDED_AT = datetime.fromisoformat("2026-12-01T01:57:05")  # the site's clock when it was recorded


def test_squeue_of_every_user_parses_limits_and_expected_starts() -> None:
    jobs = parsers.parse_queue((DATA / "squeue-all-users.txt").read_text(), RECORDED_AT)
    by_id = {j.job_id: j for j in jobs}
    assert len(jobs) == 8
    assert by_id["3"] == QueuedJob(job_id="3", user="nobody", running=True, cores=4, remaining_s=75.0)
    assert by_id["6"].remaining_s == 98.0
    assert (by_id["8"].running, by_id["8"].remaining_s, by_id["8"].expected_start_s) == (False, 180.0, 75.0)
    assert (by_id["9"].user, by_id["9"].remaining_s, by_id["9"].expected_start_s) == ("root", None, 235.0)
    assert parsers.parse_queue("garbage\n1|RUNNING|x|1:00|1:00|N/A|u|p\n", RECORDED_AT) == []


def test_forecast_replays_other_users_jobs_on_the_usable_cores() -> None:
    jobs = parsers.parse_queue((DATA / "squeue-all-users.txt").read_text(), RECORDED_AT)
    seen = forecast(jobs, usable_cores=16, ours="root", unlimited_s=3600.0)
    # All 16 cores run nobody's jobs (3 end in 75 s, one in 98 s); their pending ones start at Slurm's own
    # expected starts (75 s, 98 s, 235 s); a job of ours queued behind them gets a core at 235 s, when 7
    # cores are free (4 + 4 freed, minus nobody's 1-core job; our own 2-core job 9 is not counted).
    assert (seen.wait_s, seen.open_cores) == (235.0, 7)
    assert (seen.busy_cores, seen.pending_cores, seen.jobs) == (16, 9, 7)
    assert "16 cores busy" in seen.describe()


def test_forecast_of_an_idle_and_of_a_full_site() -> None:
    assert forecast([], usable_cores=8, ours="me", unlimited_s=3600.0).wait_s == 0.0
    assert forecast([], usable_cores=8, ours="me", unlimited_s=3600.0).open_cores == 8
    full = [QueuedJob(job_id=str(i), user="them", running=True, cores=4, remaining_s=90.0 + i)
            for i in range(4)]
    seen = forecast(full, usable_cores=16, ours="me", unlimited_s=3600.0)
    assert (seen.wait_s, seen.open_cores) == (90.0, 4)
    mine = [QueuedJob(job_id="9", user="me", running=True, cores=16, remaining_s=None)]
    assert forecast(mine, usable_cores=16, ours="me", unlimited_s=3600.0).wait_s == 0.0  # not others'
    unlimited = [QueuedJob(job_id="1", user="them", running=True, cores=16, remaining_s=None)]
    assert forecast(unlimited, usable_cores=16, ours="me", unlimited_s=600.0).wait_s == 600.0
    too_big = [QueuedJob(job_id="2", user="them", running=False, cores=64, remaining_s=60.0)]
    assert forecast(too_big, usable_cores=16, ours="me", unlimited_s=600.0).wait_s == 0.0


def test_observed_waits_correct_the_forecast() -> None:
    learner = WaitLearner()
    for _ in range(30):  # the forecast says 100 s (time limits); jobs really start after 20 s
        learner.observe(learner.corrected(100.0), 20.0)
    assert learner.corrected(100.0) == pytest.approx(20.0, abs=1.0)
    assert learner.error_s < 5.0
    waits = QueueWait()
    assert (waits.est_wait_s, waits.open_cores(12)) == (0.0, 12)
    waits.ended(10.0)
    waits.ended(20.0)
    assert waits.cycle_s == pytest.approx(12.0)


def test_a_job_that_starts_within_seconds_teaches_no_wait() -> None:
    learner = WaitLearner()
    for _ in range(10):
        learner.observe(learner.corrected(0.0), 2.5)  # an idle site's usual start latency
    assert learner.corrected(0.0) == 0.0
    learner.observe(learner.corrected(0.0), 60.0)  # a job that really queued
    assert learner.corrected(0.0) == pytest.approx(12.0)
