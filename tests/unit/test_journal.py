from __future__ import annotations

from pathlib import Path

import pytest

from metasched.errors import JournalError, RemoteTaskError
from metasched.journal import FinalRecord, Journal
from metasched.records import AttemptId, Resources, SiteName, TaskId, TaskKind, TaskSpec
from metasched.scheduler.core import SchedulerCore
from metasched.scheduler.states import TaskState


def test_round_trip_of_tasks_results_and_errors(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "c.db").open()
    core = SchedulerCore()
    specs = [TaskSpec(task_id=TaskId(f"t{i}"), name=f"n{i}", kind=TaskKind.FUNCTION, resources=Resources(),
                      function_digest="f1", payload=b"args") for i in range(3)]
    for s in specs:
        core.add(s)
    a0 = core.start_attempt(TaskId("t0"), SiteName("local"), AttemptId("t0.1"))
    a1 = core.start_attempt(TaskId("t1"), SiteName("local"), AttemptId("t1.1"))
    core.attempt_succeeded(a0.attempt_id, b"result0")
    error = RemoteTaskError("t1 failed", task_id="t1", task_name="n1", site="local", error_type="E",
                            remote_traceback="tb")
    core.attempt_failed(a1.attempt_id, error)
    transitions = core.take_transitions()
    finals = [FinalRecord(task_id=TaskId("t0"), state=TaskState.DONE, result=b"result0"),
              FinalRecord(task_id=TaskId("t1"), state=TaskState.FAILED, error=error)]
    written = journal.write_step(functions={"f1": b"fn"}, new_tasks=specs, attempts=[a0, a1],
                                 transitions=transitions, finals=finals)
    assert written == ["t0", "t1"]
    # replaying the same finals writes nothing: a result is recorded exactly once
    assert journal.write_step(finals=finals) == []
    journal.close()

    reopened = Journal(tmp_path / "c.db").open()
    stored = {t.spec.task_id: t for t in reopened.tasks()}
    assert [t for t in stored] == ["t0", "t1", "t2"]
    assert stored[TaskId("t0")].result == b"result0"
    assert stored[TaskId("t1")].state is TaskState.FAILED
    assert isinstance(stored[TaskId("t1")].error, RemoteTaskError)
    assert stored[TaskId("t2")].state is TaskState.READY
    assert reopened.functions() == {"f1": b"fn"}
    assert reopened.terminal_transition_counts() == {"t0": 1, "t1": 1}
    assert reopened.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_unreadable_journal_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.db"
    bad.write_text("this is not sqlite" * 100)
    with pytest.raises(JournalError, match="bad.db"):
        Journal(bad).open()
