"""Site kinds are discovered through entry points: an external package adds one without touching us."""

from __future__ import annotations

import textwrap
from pathlib import Path

import cloudpickle
import pytest

from metasched.errors import ConfigurationError
from metasched.journal import Journal
from metasched.placement import DefaultPolicy
from metasched.records import Resources, TaskId, TaskKind, TaskRef, TaskSpec
from metasched.scheduler.service import SchedulerService
from metasched.scheduler.states import TaskState
from metasched.sites import registry
from metasched.sites.base import SiteAgent
from site_agents.local import LocalAgent, LocalSite

EXTERNAL_AGENT = '''
from __future__ import annotations
from dataclasses import dataclass
from typing import ClassVar
from metasched.records import SiteLoad, SiteName
from metasched.sites.base import AttemptUpdate
from metasched.sites.kind import SiteKind
from metasched.worker import run_attempt


@dataclass(frozen=True)
class InlineSite:
    kind: ClassVar[str] = "inline"
    name: str


class InlineAgent:
    """Runs each attempt synchronously in the scheduler's own process."""

    def __init__(self, config):
        self.config, self.done = config, []

    @property
    def name(self):
        return SiteName(self.config.name)

    def start(self):
        pass

    def submit(self, submissions):
        for sub in submissions:
            outcome = run_attempt(sub.spec, sub.function, sub.dependency_results)
            self.done.append(AttemptUpdate(attempt_id=sub.attempt_id, outcome=outcome))

    def poll(self):
        out, self.done = self.done, []
        return out

    def cancel(self, attempt_ids):
        pass

    def load(self):
        return SiteLoad(site=self.name, total_cores=1, max_cores_per_task=1, max_memory_mb=1024, gpus=0,
                        nodes=1, inflight=0, max_inflight=10)

    def close(self):
        pass


KIND = SiteKind(name="inline", config=InlineSite, agent=InlineAgent)
'''


@pytest.fixture
def external_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "inline_agent.py").write_text(EXTERNAL_AGENT)
    dist = tmp_path / "inline_agent-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: inline-agent\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(textwrap.dedent("""\
        [metasched.site_agents]
        inline = inline_agent:KIND
    """))
    monkeypatch.syspath_prepend(str(tmp_path))


def test_local_kind_is_installed() -> None:
    assert "local" in registry.installed_kinds()
    agent = registry.agent_for(LocalSite("here", cores=1))
    assert isinstance(agent, LocalAgent)
    assert isinstance(agent, SiteAgent)


def test_unknown_kind_lists_what_is_installed() -> None:
    class Strange:
        kind = "strange"
        name = "s1"

    with pytest.raises(ConfigurationError, match=r"site kind 'strange'.*installed kinds: .*local"):
        registry.agent_for(Strange())


@pytest.mark.usefixtures("external_package")
def test_external_kind_runs_tasks_through_the_scheduler_service(tmp_path: Path) -> None:
    import inline_agent  # the package the fixture installed

    agent = registry.agent_for(inline_agent.InlineSite("inline1"))
    assert type(agent).__name__ == "InlineAgent"
    service = SchedulerService(journal=Journal(tmp_path / "j.db").open(), agents=[agent],
                               policy=DefaultPolicy())
    service.start(resume=False)

    def double(x: int) -> int:
        return 2 * x

    blob = cloudpickle.dumps(double)
    first = TaskSpec(task_id=TaskId("a"), name="double", kind=TaskKind.FUNCTION, resources=Resources(),
                     function_digest="d", payload=cloudpickle.dumps(((21,), {})))
    second = TaskSpec(task_id=TaskId("b"), name="double", kind=TaskKind.FUNCTION, resources=Resources(),
                      function_digest="d", depends_on=(TaskId("a"),),
                      payload=cloudpickle.dumps(((TaskRef(TaskId("a")),), {})))
    assert service.submit([first, second], {"d": blob}) == {}
    for _ in range(10):
        service.step()
    assert service.idle()
    _, events = service.events_since(0)
    assert {e.task_id: (e.state, cloudpickle.loads(e.result)) for e in events} == {
        "a": (TaskState.DONE, 42), "b": (TaskState.DONE, 84)}
    service.close()
