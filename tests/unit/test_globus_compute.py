"""Globus Compute site: configuration, and the message layer through the endpoint package's own code."""

from __future__ import annotations

import json
import pickle
import uuid
from pathlib import Path

import pytest

pytest.importorskip("globus_compute_endpoint", reason="the globus extra is not installed")

import metasched as ms  # noqa: E402
from site_agents.globus_compute.agent import endpoint_wait, version_problem  # noqa: E402
from site_agents.globus_compute.service import (  # noqa: E402
    EndpointLoad,
    endpoint_load,
    pack_task,
    serializer,
    unpack_result,
)

EP = "c84f791d-8c03-42e0-90c9-d1124bf1ce7a"


@pytest.mark.parametrize(("options", "message"), [
    ({}, "give exactly one of endpoint_id"),
    ({"endpoint_id": EP, "offline_endpoint": "127.0.0.1:9", "authkey_file": "/k"}, "give exactly one"),
    ({"offline_endpoint": "192.168.1.2:9", "authkey_file": "/k"}, "must be 127.0.0.1:PORT"),
    ({"offline_endpoint": "127.0.0.1:9"}, "needs authkey_file"),
    ({"endpoint_id": EP, "code_strategy": "DillCodeSource"}, "code_strategy must be one of 'DillCode', "
                                                               "'PickleCode'"),
    ({"endpoint_id": EP, "batch_size": 0}, "batch_size must be at least 1"),
    ({"endpoint_id": "x"}, "endpoint_id must be an endpoint UUID"),
])
def test_bad_configuration_says_what_to_fix(options: dict[str, object], message: str) -> None:
    with pytest.raises(ms.ConfigurationError, match=message):
        ms.GlobusComputeSite("g", **options)  # type: ignore[arg-type]


def test_task_message_runs_in_the_endpoints_own_executor(tmp_path: Path) -> None:
    """pack_task builds what execute_task (the endpoint package's worker function) accepts; its Result
    unpacks to run_packed's answer, with the worker's environment details."""
    from globus_compute_endpoint.engines.helper import execute_task

    serde = serializer(ms.GlobusComputeSite("g", endpoint_id=EP))
    task_id = uuid.uuid4()
    packed = execute_task(pack_task(serde, task_id, pickle.dumps(({}, []))), task_id, run_dir=str(tmp_path))
    result = unpack_result(serde, "k", packed)
    assert result.error == ""
    assert result.value == pickle.dumps([], protocol=pickle.HIGHEST_PROTOCOL)
    assert result.details["python_version"].count(".") == 2


def test_an_endpoint_failure_keeps_its_text(tmp_path: Path) -> None:
    from globus_compute_endpoint.engines.helper import execute_task

    serde = serializer(ms.GlobusComputeSite("g", endpoint_id=EP))
    task_id = uuid.uuid4()
    packed = execute_task(pack_task(serde, task_id, b"not a pickle"), task_id, run_dir=str(tmp_path))
    result = unpack_result(serde, "k", packed)
    assert result.value is None
    assert "UnpicklingError" in result.error


def test_version_problem_names_both_sides_and_the_fix() -> None:
    from globus_compute_sdk.sdk.utils import get_env_details

    here = get_env_details()
    assert version_problem(dict(here), "g") is None
    micro = here["python_version"].rsplit(".", 1)[0] + ".99"
    assert version_problem({**here, "python_version": micro}, "g") is None  # micro versions may differ
    problem = version_problem({**here, "python_version": "3.9.1", "dill_version": "0.3.5"}, "g")
    assert problem is not None
    assert "Python 3.9.1 there" in problem
    assert "dill 0.3.5 there" in problem
    assert "install Python" in problem


def test_an_endpoints_load_reads_from_the_clouds_status_document_and_an_engines_report() -> None:
    """The cloud's document as globus_sdk's own test data (globus_sdk/testing/data/compute/v2/
    get_endpoint_status.py) records it; an engine's, as an offline endpoint (a real GlobusComputeEngine,
    2 workers, 5 tasks of another client) reported it."""
    data = Path(__file__).parents[1] / "data"
    cloud = json.loads((data / "gc-cloud-endpoint-status.json").read_text())
    assert endpoint_load(cloud) == EndpointLoad(workers=1, idle_workers=0, outstanding=0)
    engine = json.loads((data / "gc-engine-status.json").read_text())
    assert endpoint_load(engine) == EndpointLoad(workers=2, idle_workers=0, outstanding=5)
    assert endpoint_load({**cloud, "status": "offline"}) is None
    assert endpoint_load({"status": "online", "details": {"total_workers": 1}}) is None  # fields missing
    assert endpoint_load({}) is None  # an engine that could not report


def test_other_clients_tasks_delay_ours_once_they_outnumber_the_workers() -> None:
    assert endpoint_wait(None, 0, 4, 2.0) == (0.0, None)  # no report: the configured cores, no wait
    # 2 of 4 workers busy with another client's tasks (and 3 of ours at the endpoint): 2 open to ours
    assert endpoint_wait(EndpointLoad(workers=4, idle_workers=0, outstanding=5), 3, 4, 2.0) == (0.0, 2)
    # 10 of theirs on 4 workers: ours starts once 7 of them have ended (7 x 2 s over 4 workers)
    assert endpoint_wait(EndpointLoad(workers=4, idle_workers=0, outstanding=10), 0, 4, 2.0) == (3.5, 4)
    # no worker started yet (blocks queued): the configured cores stand in
    assert endpoint_wait(EndpointLoad(workers=0, idle_workers=0, outstanding=1), 0, 2, 1.0) == (0.0, 1)
