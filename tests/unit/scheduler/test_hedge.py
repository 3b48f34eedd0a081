"""A task queued at two sites (a hedge): the first attempt to start wins, the other is settled as loser;
which queued attempts are offered first."""

from __future__ import annotations

import pytest

from metasched.errors import RemoteTaskError
from metasched.records import AttemptId, Resources, SiteLoad, SiteName, TaskId, TaskKind, TaskSpec
from metasched.scheduler.core import SchedulerCore, TransitionError
from metasched.scheduler.hedging import longest_waits_first
from metasched.scheduler.states import AttemptState, TaskState
from metasched.scheduler.task_records import Attempt

A, B = SiteName("alpha"), SiteName("beta")
TASK = TaskId("t")


def hedged(retries: int = 0) -> tuple[SchedulerCore, AttemptId, AttemptId]:
    """A task whose attempt 1 waits at alpha and whose attempt 2 (the hedge) was queued at beta."""
    core = SchedulerCore()
    core.add(TaskSpec(task_id=TASK, name="sim", kind=TaskKind.COMMAND, resources=Resources(),
                      retries=retries))
    core.ready.popleft()
    first = core.start_attempt(TASK, A, AttemptId("t.1")).attempt_id
    second = core.start_hedge(TASK, B, AttemptId("t.2")).attempt_id
    return core, first, second


def test_the_hedge_that_starts_first_becomes_the_task_and_the_first_attempt_is_cancelled() -> None:
    core, first, second = hedged()
    assert core.attempt_running(second)
    record = core.tasks[TASK]
    assert record.current is not None
    assert record.current.attempt_id == second
    assert record.hedge is None
    [race] = core.take_settled()
    assert (race.winner.attempt_id, race.loser.attempt_id) == (second, first)
    assert race.loser.state is AttemptState.CANCELLED
    assert record.last_site == B
    assert not core.attempt_running(first)
    assert not core.attempt_succeeded(first, b"late")
    assert core.attempt_succeeded(second, b"r")
    assert record.result == b"r"
    assert [t.new for t in core.take_transitions() if t.new.terminal] == [TaskState.DONE]
    assert (record.tries, record.attempts) == (1, 2)  # the hedge used no retry


def test_the_first_attempt_starting_first_cancels_the_hedge() -> None:
    core, first, second = hedged()
    assert core.attempt_running(first)
    [race] = core.take_settled()
    assert (race.winner.attempt_id, race.loser.attempt_id) == (first, second)
    assert not core.attempt_succeeded(second, b"other")
    assert core.attempt_succeeded(first, b"r")
    assert core.tasks[TASK].result == b"r"


def test_an_attempt_that_ended_without_being_seen_running_still_wins() -> None:
    core, first, second = hedged()
    error = RemoteTaskError("boom", task_id=TASK, task_name="sim", site=B, error_type="ValueError",
                            remote_traceback="")
    assert core.attempt_failed(second, error)  # it ran: its failure is the task's, with no retry left
    assert core.tasks[TASK].state is TaskState.FAILED
    assert [r.loser.attempt_id for r in core.take_settled()] == [first]


def test_a_lost_hedge_leaves_the_first_attempt_and_a_lost_first_attempt_leaves_the_hedge() -> None:
    core, first, second = hedged()
    assert core.attempt_lost(second, reason="job vanished")
    record = core.tasks[TASK]
    assert record.hedge is None
    assert record.current is not None
    assert record.current.attempt_id == first
    assert record.state is TaskState.SUBMITTED
    assert core.take_settled() == []
    core, first, second = hedged()
    assert core.attempt_lost(first, reason="job vanished")
    record = core.tasks[TASK]
    assert record.current is not None
    assert record.current.attempt_id == second
    assert record.hedge is None
    assert record.state is TaskState.SUBMITTED
    assert record.tries == 1  # no retry used: the hedge goes on
    [race] = core.take_settled()
    assert race.loser.state is AttemptState.LOST
    assert core.attempt_succeeded(second, b"r")


def test_cancelling_a_hedged_task_returns_both_attempts() -> None:
    core, first, second = hedged()
    assert sorted(a.attempt_id for a in core.cancel(TASK)) == [first, second]
    assert core.tasks[TASK].hedge is None
    assert not core.attempt_running(second)


def test_a_task_is_hedged_once_and_only_while_queued() -> None:
    core, first, _ = hedged()
    with pytest.raises(TransitionError):
        core.start_hedge(TASK, B, AttemptId("t.3"))
    core.attempt_running(first)
    with pytest.raises(TransitionError):
        core.start_hedge(TASK, B, AttemptId("t.3"))


def test_a_restored_task_with_two_live_attempts_races_on() -> None:
    core, first, second = hedged()
    restored = SchedulerCore()
    restored.restore(core.tasks[TASK].spec, state=TaskState.SUBMITTED, tries=1, attempts=2, result=None,
                     error=None)
    restored.reattach(TASK, A, first, 1)
    restored.reattach(TASK, B, second, 2)
    record = restored.tasks[TASK]
    assert record.current is not None
    assert record.current.attempt_id == first
    assert record.hedge is not None
    assert record.hedge.attempt_id == second
    assert restored.attempt_succeeded(second, b"r")
    assert [r.loser.attempt_id for r in restored.take_settled()] == [first]


def queue_load(name: str, *, open_cores: int, inflight: int, wait: float = 0.0) -> SiteLoad:
    return SiteLoad(site=SiteName(name), total_cores=16, max_cores_per_task=16, max_memory_mb=None, gpus=0,
                    nodes=1, inflight=inflight, max_inflight=200, est_wait_s=wait, open_cores=open_cores,
                    cycle_s=4.0, reports_start=True)


def test_the_attempt_that_would_wait_longest_is_taken_first() -> None:
    def queued(site: SiteName, n: int, at: float) -> list[Attempt]:
        return [Attempt(attempt_id=AttemptId(f"{site}{i}.1"), task_id=TaskId(f"{site}{i}"), site=site,
                        number=1, submitted_at=at) for i in range(n)]

    # alpha: 4 open cores, 2 of ours running, 6 queued (one cycle per 4 cores: 1 s each beyond the 2 free)
    # beta: 8 open cores all running ours, 3 queued (0.5 s each); another user's jobs, queued since, wait
    # behind them (the 50 s a new job would wait there is not theirs)
    at_alpha, at_beta = queued(A, 6, 100.0), queued(B, 3, 50.0)
    loads = {A: queue_load(A, open_cores=4, inflight=8),
             B: queue_load(B, open_cores=8, inflight=11, wait=50.0)}
    order = longest_waits_first([*at_alpha[:2], *at_alpha[3:], *at_beta], [*at_alpha, *at_beta], loads)
    assert [a.attempt_id for a in order] == ["alpha5.1", "alpha4.1", "alpha3.1", "beta2.1", "beta1.1",
                                            "beta0.1", "alpha0.1", "alpha1.1"]
    loads[B].open_cores = 2  # beta's backlog per open core is now the longer one
    order = longest_waits_first([*at_alpha, *at_beta], [*at_alpha, *at_beta], loads)
    assert [a.attempt_id for a in order][:4] == ["beta2.1", "beta1.1", "beta0.1", "alpha5.1"]
