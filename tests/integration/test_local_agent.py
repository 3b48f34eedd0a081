"""The local site agent on a real embedded Ray: packing of short tasks and what cancel does to a pack."""

from __future__ import annotations

import sys
import time

import cloudpickle
import pytest

from metasched.outcomes import Cancelled, Lost, Succeeded, TaskOutcome
from metasched.records import AttemptId, Resources, TaskId, TaskKind, TaskSpec
from metasched.sites.base import AttemptUpdate, Submission
from site_agents.local import LocalAgent, LocalSite

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_local")]


def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray workers cannot import this module


def submission(i: int, seconds: float) -> Submission:
    spec = TaskSpec(task_id=TaskId(f"t{i}"), name="nap", kind=TaskKind.FUNCTION, resources=Resources(),
                    function_digest="nap", payload=cloudpickle.dumps(((seconds,), {})))
    return Submission(attempt_id=AttemptId(f"t{i}.1"), spec=spec, function=cloudpickle.dumps(nap))


def drain(agent: LocalAgent, count: int, timeout: float = 60) -> dict[str, TaskOutcome]:
    outcomes: dict[str, TaskOutcome] = {}
    deadline = time.monotonic() + timeout
    while len(outcomes) < count and time.monotonic() < deadline:
        update: AttemptUpdate
        for update in agent.poll():
            assert update.outcome is not None
            outcomes[update.attempt_id] = update.outcome
        time.sleep(0.01)
    return outcomes


def packing_agent() -> LocalAgent:
    """A started local agent on one core that has learnt its tasks are short (so it packs them)."""
    agent = LocalAgent(LocalSite("local", cores=1, max_pack=32))
    agent.start()
    for _ in range(5):  # a cold worker's first call is slower
        agent.submit([submission(i, 0.0) for i in range(8)])
        assert all(isinstance(o, Succeeded) for o in drain(agent, 8).values())
        if agent.tasks.mean_run_s is not None and agent.tasks.mean_run_s < LocalAgent.PACK_BELOW_S:
            break
    assert agent.tasks.mean_run_s is not None
    assert agent.tasks.mean_run_s < LocalAgent.PACK_BELOW_S
    return agent


def test_short_tasks_are_packed_and_a_cancel_spares_the_neighbours_retry() -> None:
    agent = packing_agent()
    agent.submit([submission(10, 30.0)] + [submission(i, 0.0) for i in range(11, 18)])
    assert agent.load().inflight == 8
    assert agent.tasks.packs == 2, "8 short attempts on 1 core should share 2 Ray tasks"
    time.sleep(1.0)  # the sleeper (first of its pack) is running now
    agent.cancel([AttemptId("t10.1")])
    outcomes = drain(agent, 8)
    assert isinstance(outcomes["t10.1"], Cancelled)
    neighbours = [outcomes[f"t{i}.1"] for i in range(11, 14)]
    assert all(isinstance(o, Lost) and not o.charge_retry for o in neighbours), neighbours
    assert all(isinstance(outcomes[f"t{i}.1"], Succeeded) for i in range(14, 18))
    agent.close()


def test_a_few_attempts_handed_over_while_many_run_share_one_ray_task() -> None:
    # a fast scheduler loop hands over the few attempts whose slots just freed: with work in flight
    # they must form one pack, not packs of one (which ran the campaign at raw Ray's rate)
    agent = packing_agent()
    agent.submit([submission(20, 2.0)] + [submission(i, 0.0) for i in range(21, 28)])
    assert agent.tasks.packs == 2
    agent.submit([submission(i, 0.0) for i in range(30, 34)])
    assert agent.tasks.packs == 3, "4 attempts added to 8 in flight on 1 core should share one Ray task"
    assert all(isinstance(o, Succeeded) for o in drain(agent, 12).values())
    agent.close()


def test_packing_off_gives_one_ray_task_per_attempt() -> None:
    agent = LocalAgent(LocalSite("local", cores=1, max_pack=1))
    agent.start()
    agent.submit([submission(i, 0.0) for i in range(4)])
    drain(agent, 4)
    agent.submit([submission(i, 0.0) for i in range(10, 18)])
    assert agent.tasks.packs == 8
    assert len(drain(agent, 8)) == 8
    agent.close()
