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
