"""Every metasched exception survives a pickle round trip (Ray ships exceptions between processes)."""

from __future__ import annotations

import pickle
from typing import Any

import cloudpickle
import pytest

from metasched import errors

SAMPLES: dict[type[errors.MetaschedError], dict[str, Any]] = {
    errors.MetaschedError: {},
    errors.ConfigurationError: {},
    errors.JournalError: {},
    errors.TaskError: {"task_id": "t1", "task_name": "square"},
    errors.PlacementError: {"task_id": "t1", "task_name": "square", "requirement": "gpus=1"},
    errors.RemoteTaskError: {"task_id": "t1", "task_name": "square", "site": "local",
                             "error_type": "ValueError", "remote_traceback": "Traceback ...\nValueError: x"},
    errors.WalltimeExceededError: {"task_id": "t1", "task_name": "square"},
    errors.TaskCancelledError: {"task_id": "t1", "task_name": "square"},
    errors.DependencyError: {"task_id": "t2", "task_name": "total", "root_task_id": "t1",
                             "root_task_name": "square"},
    errors.AttemptLostError: {"task_id": "t1", "task_name": "square"},
    errors.SiteAgentError: {"site": "alpha", "transient": True},
    errors.DataTransferError: {"task_id": "t2", "task_name": "total", "object_id": "t1", "source": "alpha",
                               "target": "beta"},
}


def test_every_error_class_has_a_sample() -> None:
    assert set(SAMPLES) == set(errors.ALL_ERRORS)


@pytest.mark.parametrize("cls", errors.ALL_ERRORS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("dumps", [pickle.dumps, cloudpickle.dumps], ids=["pickle", "cloudpickle"])
def test_round_trip_keeps_type_message_and_fields(cls: type[errors.MetaschedError], dumps: Any) -> None:
    original = cls(f"{cls.__name__} happened at site alpha.", **SAMPLES[cls])
    copy = pickle.loads(dumps(original))
    assert type(copy) is cls
    assert str(copy) == str(original)
    assert copy.__dict__ == original.__dict__
    assert copy.transient == original.transient


def test_remote_error_shows_the_remote_traceback() -> None:
    error = errors.RemoteTaskError("task 'x' failed.", **SAMPLES[errors.RemoteTaskError])
    assert "Remote traceback (site local)" in str(error)
    assert "ValueError: x" in str(error)


def test_the_live_display_line_of_a_failure_keeps_the_reason() -> None:
    """The first line of a TaskError leads with the task's name and id: the live line drops them instead of
    cutting the reason off (a submit refusal once showed as "... failed at site iota (attempt 1): ")."""
    from metasched.live import failure_line
    from metasched.outcomes import failed
    from metasched.records import Resources, TaskId, TaskKind, TaskSpec
    from metasched.scheduler.events import task_error

    spec = TaskSpec(task_id=TaskId("8e40004454664654"), name="hello", kind=TaskKind.COMMAND,
                    resources=Resources())
    reason = ("sbatch at site iota refused task 'hello' (exit 1): sbatch: error: Memory specification can "
              "not be satisfied")
    error = task_error(spec, "iota", 1, failed("SubmitError", reason))
    line = failure_line("hello", error)
    assert line.startswith("hello: FAILED: failed at site iota (attempt 1): SubmitError: sbatch at site iota")
    assert "Memory specification can not be satisfied" in line
    assert "8e40004454664654" not in line
    assert failure_line("x", RuntimeError("boom\nmore")) == "x: FAILED: boom"


def test_a_failed_attempts_output_ends_are_in_the_error_and_survive_a_pickle() -> None:
    error = errors.RemoteTaskError("task 'c' (t1) failed at site s (attempt 1): CommandFailed: exit 3",
                                   task_id="t1", task_name="c", site="s", error_type="CommandFailed",
                                   remote_traceback="", stdout="partial\n", stderr="cannot go on\n")
    assert str(error).endswith("--- stdout (the end of it):\npartial\n\n"
                               "--- stderr (the end of it):\ncannot go on")
    again = pickle.loads(pickle.dumps(error))
    assert (again.stdout, again.stderr) == ("partial\n", "cannot go on\n")
    journaled_before = errors.RemoteTaskError("m", task_id="t1", task_name="c", site="s", error_type="E",
                                              remote_traceback="")
    del journaled_before.__dict__["stdout"], journaled_before.__dict__["stderr"]  # as older journals have
    old = pickle.loads(pickle.dumps(journaled_before))
    assert (old.stdout, str(old)) == ("", "m")


def test_a_python_tasks_prints_are_kept_and_still_written_through() -> None:
    import io
    import sys

    from metasched.worker.capture import Printed, Tail, captured

    printed, before = Printed(), sys.stdout
    with captured(printed):
        print("x" * 10_000)
        print("last line")
    assert sys.stdout is before
    assert printed.stdout.endswith("last line\n")
    assert len(printed.stdout) == 4000
    out = io.StringIO()
    tail = Tail(out, limit=5)
    for piece in ("abc", "defgh", "ij"):
        tail.write(piece)
    assert (tail.text(), out.getvalue()) == ("fghij", "abcdefghij")
