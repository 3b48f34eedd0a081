"""The synchronous scheduler core, driven without Ray."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metasched.errors import ConfigurationError, DependencyError, RemoteTaskError, TaskCancelledError
from metasched.records import AttemptId, Resources, SiteName, TaskId, TaskKind, TaskSpec
from metasched.scheduler.core import SchedulerCore, TransitionError
from metasched.scheduler.states import ALLOWED, TaskState

SITE = SiteName("local")


def spec(task_id: str, *deps: str, retries: int = 0) -> TaskSpec:
    return TaskSpec(task_id=TaskId(task_id), name=f"name-{task_id}", kind=TaskKind.FUNCTION,
                    resources=Resources(), retries=retries, depends_on=tuple(TaskId(d) for d in deps))


def err(task_id: str) -> RemoteTaskError:
    return RemoteTaskError("boom", task_id=task_id, task_name=f"name-{task_id}", site=SITE,
                           error_type="ValueError", remote_traceback="")


def run(core: SchedulerCore, task_id: str) -> AttemptId:
    assert core.ready.popleft() == task_id
    number = core.tasks[TaskId(task_id)].attempts + 1
    return core.start_attempt(TaskId(task_id), SITE, AttemptId(f"{task_id}.{number}")).attempt_id


def test_independent_task_is_ready_and_finishes_once() -> None:
    core = SchedulerCore()
    core.add(spec("a"))
    assert core.tasks[TaskId("a")].state is TaskState.READY
    attempt = run(core, "a")
    assert core.attempt_succeeded(attempt, b"result")
    assert not core.attempt_succeeded(attempt, b"again"), "a second outcome must be ignored"
    assert core.tasks[TaskId("a")].result == b"result"
    terminal = [t for t in core.take_transitions() if t.new.terminal]
    assert len(terminal) == 1


def test_dependent_waits_then_becomes_ready() -> None:
    core = SchedulerCore()
    core.add(spec("a"))
    core.add(spec("b", "a"))
    assert core.tasks[TaskId("b")].state is TaskState.PENDING
    core.attempt_succeeded(run(core, "a"), b"1")
    assert core.tasks[TaskId("b")].state is TaskState.READY


def test_retry_then_success() -> None:
    core = SchedulerCore()
    core.add(spec("a", retries=1))
    core.attempt_failed(run(core, "a"), err("a"))
    assert core.tasks[TaskId("a")].state is TaskState.READY
    core.attempt_succeeded(run(core, "a"), b"ok")
    assert core.tasks[TaskId("a")].state is TaskState.DONE
    assert core.tasks[TaskId("a")].attempts == 2


def test_ended_attempts_are_let_go_once_journaled_and_still_find_their_task() -> None:
    core = SchedulerCore()
    core.add(spec("a", retries=1))
    first = run(core, "a")
    core.attempt_failed(first, err("a"))
    second = run(core, "a")
    core.forget_ended(list(core.attempts.values()))  # as the service does after journaling a step
    assert list(core.attempts) == [second], "the failed attempt ended; the running one stays"
    assert core.attempt_succeeded(second, b"ok")
    done = core.tasks[TaskId("a")].current
    assert done is not None
    core.forget_ended([done])
    assert core.attempts == {}
    assert core.tasks[TaskId("a")].current is None
    assert core.owner(first) == "a"  # a late report of a forgotten attempt (e.g. a note) finds its task
    assert core.owner(AttemptId("b.1")) is None
    assert core.owner(AttemptId("not-an-attempt")) is None
    assert not core.attempt_succeeded(second, b"again")


def test_failure_propagates_naming_the_root_cause() -> None:
    core = SchedulerCore()
    core.add(spec("a"))
    core.add(spec("b", "a"))
    core.add(spec("c", "b"))
    core.attempt_failed(run(core, "a"), err("a"))
    for downstream in ("b", "c"):
        record = core.tasks[TaskId(downstream)]
        assert record.state is TaskState.FAILED
        assert isinstance(record.error, DependencyError)
        assert record.error.root_task_id == "a"
        assert "name-a" in record.error.message
    core.add(spec("d", "c"))  # submitted after the failure: fails at once, same root
    error = core.tasks[TaskId("d")].error
    assert isinstance(error, DependencyError)
    assert error.root_task_id == "a"


def test_cancel_running_task_returns_its_attempt_and_fails_dependents() -> None:
    core = SchedulerCore()
    core.add(spec("a"))
    core.add(spec("b", "a"))
    attempt = run(core, "a")
    live = core.cancel(TaskId("a"))
    assert [a.attempt_id for a in live] == [attempt]
    assert isinstance(core.tasks[TaskId("a")].error, TaskCancelledError)
    assert "was cancelled" in str(core.tasks[TaskId("b")].error)
    assert not core.attempt_succeeded(attempt, b"late"), "an outcome after cancel must be ignored"


def test_lost_attempt_from_restart_does_not_consume_a_retry() -> None:
    core = SchedulerCore()
    core.add(spec("a"))
    assert core.attempt_lost(run(core, "a"), reason="restart", counts_as_try=False)
    assert core.tasks[TaskId("a")].state is TaskState.READY
    assert core.attempt_lost(run(core, "a"), reason="node died")
    assert core.tasks[TaskId("a")].state is TaskState.FAILED


def test_unknown_dependency_and_duplicate_ids_are_refused() -> None:
    core = SchedulerCore()
    with pytest.raises(ConfigurationError, match="unknown task"):
        core.add(spec("b", "nope"))
    core.add(spec("a"))
    with pytest.raises(ConfigurationError, match="submitted twice"):
        core.add(spec("a"))


def test_forbidden_transition_raises() -> None:
    core = SchedulerCore()
    core.add(spec("a"))
    core.attempt_succeeded(run(core, "a"), b"x")
    with pytest.raises(TransitionError):
        core._move(core.tasks[TaskId("a")], TaskState.READY)


# ------------------------------------------------------------------------------ property-based
OPS = st.lists(
    st.tuples(st.sampled_from(["succeed", "fail", "lost", "cancel", "running", "dispatch", "hedge"]),
              st.integers(min_value=0, max_value=30)),
    max_size=200,
)


@st.composite
def dags(draw: st.DrawFn) -> list[TaskSpec]:
    n = draw(st.integers(min_value=1, max_value=25))
    specs = []
    for i in range(n):
        deps = draw(st.lists(st.integers(min_value=0, max_value=max(0, i - 1)), max_size=3)) if i else []
        retries = draw(st.integers(min_value=0, max_value=2))
        specs.append(spec(f"t{i}", *(f"t{d}" for d in set(deps)), retries=retries))
    return specs


@settings(max_examples=300, deadline=None)
@given(dags(), OPS)
def test_transition_invariants_hold_under_any_event_order(
    specs: list[TaskSpec], ops: list[tuple[str, int]]
) -> None:
    core = SchedulerCore()
    for s in specs:
        core.add(s)
    live: list[AttemptId] = []
    done_at_submit: dict[TaskId, bool] = {}
    counter = 0
    for op, index in ops:
        if op == "dispatch" and core.ready:
            task_id = core.ready.popleft()
            if core.tasks[task_id].state is not TaskState.READY:
                continue
            deps = core.tasks[task_id].spec.depends_on
            done_at_submit[task_id] = all(core.tasks[d].state is TaskState.DONE for d in deps)
            counter += 1
            live.append(core.start_attempt(task_id, SITE, AttemptId(f"a{counter}")).attempt_id)
        elif live:
            attempt = live[index % len(live)]
            task_id = core.attempts[attempt].task_id
            if op == "succeed":
                core.attempt_succeeded(attempt, b"r")
            elif op == "fail":
                core.attempt_failed(attempt, err(task_id))
            elif op == "lost":
                core.attempt_lost(attempt, reason="gone")
            elif op == "running":
                core.attempt_running(attempt)
            elif op == "cancel":
                core.cancel(task_id)
            elif op == "hedge" and core.tasks[task_id].state is TaskState.SUBMITTED \
                    and core.tasks[task_id].hedge is None:
                counter += 1
                live.append(core.start_hedge(task_id, SiteName("other"), AttemptId(f"a{counter}")).attempt_id)
        # 5. a task has at most two live attempts, both its own, and a settled race ended its loser
        for record in core.tasks.values():
            if record.hedge is not None:
                assert record.state is TaskState.SUBMITTED
                assert record.current is not None
                assert record.hedge.ended_at is None
                assert record.current.ended_at is None
        for race in core.take_settled():
            assert race.loser.ended_at is not None
            assert race.winner.task_id == race.loser.task_id
    transitions = core.take_transitions()
    # 1. every transition is allowed by the table
    for t in transitions:
        assert t.old is None or t.new in ALLOWED[t.old], t
    # 2. each task reaches a terminal state at most once, and the last transition matches its state
    terminal = Counter(t.task_id for t in transitions if t.new.terminal)
    assert all(n == 1 for n in terminal.values())
    last = {t.task_id: t.new for t in transitions}
    assert all(core.tasks[tid].state is state for tid, state in last.items())
    # 3. nothing was submitted before all its dependencies were DONE
    assert all(done_at_submit.values())
    # 4. a DONE task has a result; a FAILED one has an error; failure never precedes DONE of a dependent
    for record in core.tasks.values():
        if record.state is TaskState.DONE:
            assert record.result is not None
            assert all(core.tasks[d].state is TaskState.DONE for d in record.spec.depends_on)
        if record.state in (TaskState.FAILED, TaskState.CANCELLED):
            assert record.error is not None


def test_a_staging_task_starts_after_its_data_moved_or_is_cancelled_without_an_attempt() -> None:
    core = SchedulerCore()
    core.add(spec("a"))
    core.add(spec("b"))
    for task_id in ("a", "b"):
        assert core.ready.popleft() == task_id
        core.stage(TaskId(task_id), SiteName("beta"), "moving 1 object(s)")
        assert core.tasks[TaskId(task_id)].state is TaskState.STAGING
    attempt = core.start_attempt(TaskId("a"), SiteName("beta"), AttemptId("a.1"))
    assert core.tasks[TaskId("a")].state is TaskState.SUBMITTED
    assert attempt.number == 1
    assert core.cancel(TaskId("b")) == []  # no attempt existed yet: nothing to cancel at a site
    assert core.tasks[TaskId("b")].state is TaskState.CANCELLED
    staged = [t for t in core.take_transitions() if t.new is TaskState.STAGING]
    assert [t.detail for t in staged] == ["site beta: moving 1 object(s)"] * 2
