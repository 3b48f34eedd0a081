"""The whole-queue wait forecast of batch sites, on recorded real Slurm output (tests/data/slurm-22.05)."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from pathlib import Path

import pytest

from metasched.records import Resources, SiteLoad, SiteName
from site_agents.batch.forecast import (
    PROBE_SHAPES,
    RECHECK_S,
    SHAPE_SAMPLES,
    QueuedJob,
    QueueWait,
    WaitLearner,
    forecast,
)
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
    assert not seen.unsettled  # every pending job placed by the scheduler (an expected start), none fits now


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
    behind = [*full, QueuedJob(job_id="5", user="them", running=False, cores=4, remaining_s=60.0)]
    assert not forecast(behind, usable_cores=16, ours="me", unlimited_s=600.0).unsettled  # waits for cores
    fits = [*full[:3], behind[-1]]
    assert forecast(fits, usable_cores=16, ours="me", unlimited_s=600.0).unsettled  # 4 free, not started


def test_observed_waits_correct_the_forecast() -> None:
    learner = WaitLearner()
    for _ in range(30):  # the forecast says 100 s (time limits); jobs really start after 20 s
        learner.observe(100.0, 20.0)
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
        learner.observe(0.0, 2.5)  # an idle site's usual start latency
    assert learner.corrected(0.0) == 0.0
    learner.observe(0.0, 60.0)  # a job that really queued
    assert learner.corrected(0.0) == pytest.approx(12.0)


def test_a_shape_learns_its_own_correction_once_enough_of_its_jobs_started() -> None:
    """One-core jobs start at once (backfill); 16-core ones wait 120 s for a whole node. The site's
    correction mixes both; a shape's own replaces it after SHAPE_SAMPLES of its jobs."""
    small, whole_node = Resources(), Resources(cores=16)
    waits = QueueWait()
    waits.listed([], usable_cores=32, ours="me")  # nothing of other users' listed: the forecast says 0
    for _ in range(SHAPE_SAMPLES - 1):
        waits.seen(whole_node)
        waits.started(0.0, 120.0, whole_node)
        waits.started(0.0, 1.0, small)
    assert waits.shape_waits() == {}  # too few yet: the site's correction stands for every shape
    waits.started(0.0, 120.0, whole_node)
    waits.started(0.0, 1.0, small)
    learned = waits.shape_waits()
    assert set(learned) == {whole_node, small}
    assert learned[small] == 0.0
    assert learned[whole_node] > waits.est_wait_s > 0.0
    site = SiteLoad(site=SiteName("s"), total_cores=32, max_cores_per_task=16, max_memory_mb=None, gpus=0,
                    nodes=2, inflight=0, max_inflight=10, est_wait_s=waits.est_wait_s, shape_waits=learned)
    assert site.wait_s(16, whole_node) == learned[whole_node]
    assert site.wait_s(1, small) == 0.0
    assert site.wait_s(2, Resources(cores=2)) == waits.est_wait_s  # a shape it has not seen: the site's


def test_the_controllers_expected_start_of_a_shape_is_a_floor_that_ages() -> None:
    shape = Resources(cores=4)
    waits = QueueWait()
    waits.listed([], usable_cores=8, ours="me")
    waits.answered({shape: 300.0}, at=1000.0)
    assert waits.shape_starts(1000.0) == {shape: 300.0}
    assert waits.shape_starts(1100.0) == {shape: 200.0}  # 100 s later, 100 s nearer
    assert waits.shape_starts(1400.0) == {shape: 0.0}
    pair = Resources(cores=2)
    waits.answered({pair: 5.0}, at=1100.0)  # a new shape asked about between listings
    assert waits.shape_starts(1100.0) == {shape: 200.0, pair: 5.0}
    waits.answered({shape: 60.0}, at=1100.0)  # a newer answer replaces the shape's last
    assert waits.shape_starts(1100.0) == {shape: 60.0, pair: 5.0}
    site = SiteLoad(site=SiteName("s"), total_cores=8, max_cores_per_task=8, max_memory_mb=None, gpus=0,
                    nodes=2, inflight=0, max_inflight=1000, cycle_s=10.0,
                    shape_starts={shape: 200.0})
    assert site.wait_s(4, shape) == 200.0  # 8 cores open by the forecast, but the controller knows better
    assert site.wait_s(1, Resources()) == 0.0
    site.inflight = 200  # our own queue there outgrows the controller's answer
    assert site.wait_s(4, shape) == pytest.approx((200 + 4 - 8) * 10.0 / 8)


def test_an_expected_start_the_queue_contradicts_stands_once_asked_again() -> None:
    """pla, 16 cores, another user's three 4-core jobs just submitted, not yet placed by the controller
    (no expected start): `sbatch --test-only` said "to start" in 4 minutes; a second later, once it had
    started them, "now" (recorded on the benchmark's site, 2026-12-03). The first answer, contradicting
    the listing's 4 open cores, is not taken until asked again."""
    one = Resources()
    listed = ("2940|PENDING|4|3:00|3:00|N/A|nobody|debug\n2941|PENDING|4|3:00|3:00|N/A|nobody|debug\n"
              "2942|PENDING|4|3:00|3:00|N/A|nobody|debug\n")
    waits = QueueWait()
    waits.listed(parsers.parse_queue(listed, RECORDED_AT), usable_cores=16, ours="me")
    assert (waits.forecast_s, waits.open_cores(16)) == (0.0, 4)
    waits.answered({one: 240.0}, at=100.0)
    assert waits.shape_starts(100.0) == {}  # the forecast alone, meanwhile
    assert not waits.recheck_due(101.0)
    assert waits.recheck_due(100.0 + RECHECK_S)
    waits.answered({one: 0.0}, at=102.5)  # asked again: the second answer stands
    assert waits.shape_starts(102.5) == {one: 0.0}
    assert not waits.recheck_due(200.0)
    waits.answered({one: 240.0}, at=110.0)  # doubted again: the last answer stands meanwhile
    assert waits.shape_starts(110.0) == {one: 0.0}
    waits.answered({one: 238.0}, at=112.0)  # ... and confirmed: a site the controller knows is busy
    assert waits.shape_starts(112.0) == {one: 238.0}
    waits.answered({one: 240.0}, at=120.0)
    waits.answered({}, at=121.0)  # too soon to be the recheck: still doubted
    assert waits.recheck_due(122.0)
    waits.answered({}, at=122.5)  # asked again, not answered: doubted no more, no recheck after
    assert not waits.recheck_due(130.0)
    assert waits.shape_starts(122.0) == {one: 228.0}  # the confirmed answer, counting down
    waits.answered({Resources(cores=2): 3.0}, at=123.0)  # near the forecast: stands at once
    assert waits.shape_starts(123.0)[Resources(cores=2)] == 3.0
    started = ("2940|RUNNING|4|2:59|3:00|2026-12-03T15:36:13|nobody|debug\n"
               "2941|RUNNING|4|2:59|3:00|2026-12-03T15:36:13|nobody|debug\n")
    waits.listed(parsers.parse_queue(started, RECORDED_AT), usable_cores=16, ours="me")
    waits.answered({Resources(cores=8): 170.0}, at=130.0)  # node fit, which the forecast cannot see
    assert waits.shape_starts(130.0)[Resources(cores=8)] == 170.0  # stands at once: nothing unplaced


def test_the_most_recent_shapes_are_asked_about() -> None:
    waits = QueueWait()
    shapes = [Resources(cores=n) for n in range(1, 7)]
    for shape in shapes:
        waits.seen(shape)
    waits.seen(shapes[0])  # used again: the most recent
    assert waits.probe_shapes() == [shapes[0], shapes[5], shapes[4], shapes[3]][:PROBE_SHAPES]


def test_a_job_queued_behind_ours_of_unknown_run_time_teaches_nothing() -> None:
    """The first step of a campaign queues 200 jobs before any has run: their waits are our own backlog,
    which no prediction could tell yet, not the site's; the site's correction must not learn them."""
    site = SiteLoad(site=SiteName("s"), total_cores=8, max_cores_per_task=8, max_memory_mb=None, gpus=0,
                    nodes=1, inflight=7, max_inflight=200, open_cores=4)
    assert site.turn_unknown(1)  # 7 of ours already hold (or wait for) the 4 open cores
    assert not dataclasses.replace(site, inflight=3).turn_unknown(1)  # a core is open for it
    assert not dataclasses.replace(site, cycle_s=3.0).turn_unknown(1)  # its turn can be told now
    waits = QueueWait()
    waits.listed([], usable_cores=8, ours="me")
    waits.started(None, 40.0, Resources())
    assert (waits.learned_s, waits.est_wait_s, waits.shape_waits()) == (None, 0.0, {})
    waits.started(0.0, 40.0, Resources())  # a job whose turn was told, and still waited: that is learned
    assert (waits.learned_s or 0.0) > 0
