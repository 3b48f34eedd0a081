"""A campaign an earlier metasched journaled (schema 2) resumed by this one: upgraded, results kept."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import metasched as ms
from metasched.errors import RemoteTaskError
from metasched.journal import Journal

pytestmark = pytest.mark.ray
FIXTURE = Path(__file__).parents[1] / "data" / "journal-v2" / "campaign.db"


def cube(x: int) -> int:
    return x**3


def test_resuming_a_schema_2_campaign_keeps_its_results_and_takes_new_tasks(tmp_path: Path) -> None:
    journal = tmp_path / "campaign.db"
    shutil.copy(FIXTURE, journal)
    campaign = ms.Campaign.resume(journal, sites=[ms.LocalSite("local", cores=2)])
    try:
        by_name = {f.name: f for f in campaign.futures()}
        assert by_name["total"].result(timeout=60) == 5
        assert by_name["shout"].result(timeout=60) == "HI"
        assert isinstance(by_name["broken"].exception(timeout=60), RemoteTaskError)
        new = campaign.task(cube)(3)
        assert new.result(timeout=120) == 27
    finally:
        campaign.close()
    with Journal(journal).open(read_only=True) as stored:
        assert stored.get_meta("schema_version") == "3"
        assert stored.counts()["local"] == {"done": 6, "failed": 2}
        added = stored.task_named("cube")
        assert added is not None
        events = stored.events(task_id=added.spec.task_id)
        assert (events[0].old, events[0].new, events[-1].new) == (None, "pending", "done")
        assert [a.state for a in stored.attempts_of(added.spec.task_id)] == ["succeeded"]
