"""Which sites take no new work, journaled as it changes (a real journal; the agents' words are tested on
real sites in tests/integration/batch_faults.py)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from metasched.journal import Journal
from metasched.records import SiteLoad, SiteName
from metasched.scheduler import site_health
from metasched.scheduler.site_health import SiteHealth, journaled_problems
from site_agents.batch.explain import not_taking_work


def _load(site: str, problem: str = "") -> SiteLoad:
    return SiteLoad(site=SiteName(site), total_cores=4, max_cores_per_task=4, max_memory_mb=None, gpus=0,
                    nodes=1, inflight=0, max_inflight=10, accepting=not problem, problem=problem)


def test_a_sites_problem_is_journaled_when_it_changes_keeping_since_when(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(site_health, "CHECK_EVERY_S", 0.0)
    with Journal(tmp_path / "j.db").open() as journal:
        health = SiteHealth(journal)
        loads = {"a": _load("a"), "b": _load("b")}
        health.record(lambda: loads)
        assert journaled_problems(journal) == {}
        loads["a"] = _load("a", "not answering: squeue: connection refused")
        before = time.time()
        health.record(lambda: loads)
        said = journaled_problems(journal)
        assert list(said) == ["a"]
        assert said["a"]["problem"] == "not answering: squeue: connection refused"
        assert before <= said["a"]["since"] <= time.time()
        loads["a"] = _load("a", "its status command is slow to answer")
        health.record(lambda: loads)  # out since the first problem, whatever it says now
        assert journaled_problems(journal)["a"] == {"problem": "its status command is slow to answer",
                                                    "since": said["a"]["since"]}
        loads["a"] = _load("a")
        health.record(lambda: loads)
        assert journaled_problems(journal) == {}


def test_a_site_is_looked_at_once_a_second_at_most(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.db").open() as journal:
        health = SiteHealth(journal)
        health.record(lambda: {"a": _load("a")})
        health.record(lambda: {"a": _load("a", "drained")})  # within the second: not looked at
        assert journaled_problems(journal) == {}


def test_a_resumed_scheduler_keeps_since_when_and_a_closed_one_clears(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.db").open() as journal:
        journal.set_meta(site_health.KEY, {"a": {"problem": "drained", "since": 5.0}})
        health = SiteHealth(journal)
        health.record(lambda: {"a": _load("a", "drained")})
        assert journaled_problems(journal)["a"]["since"] == 5.0
        health.closed()
        assert journaled_problems(journal) == {}


def test_a_batch_site_says_why_it_takes_no_work_in_words_that_stay_the_same() -> None:
    assert not_taking_work("sinfo: Unable to contact slurm controller") == (
        "not answering: sinfo: Unable to contact slurm controller")
    assert not_taking_work(None, slow=True) == "its status command is slow to answer"
    assert not_taking_work(None, silent=True) == "a submission to it has not been answered"
    assert not_taking_work(None, detail="(c1 down, c2 drained)") == "no node takes jobs (c1 down, c2 drained)"


def test_the_live_per_site_table_says_why_a_site_takes_no_work_only_when_one_does_not() -> None:
    from rich.console import Console

    from metasched.live import site_table
    from metasched.scheduler.events import SiteSummary

    def shown(rows: list[SiteSummary]) -> str:
        console = Console(width=200, record=True)
        console.print(site_table(rows))
        return console.export_text()

    fine = SiteSummary(site="alpha", queued=1, running=2, done=3, failed=0, predicted_wait_s=4.0)
    assert "takes no new work" not in shown([fine])
    out = SiteSummary(site="beta", queued=5, running=0, done=0, failed=0, predicted_wait_s=None,
                      problem="not answering: squeue exited 1: Unable to contact slurm controller")
    table = shown([fine, out])
    assert "takes no new work" in table
    beta = next(line for line in table.splitlines() if "beta" in line)
    assert "not answering: squeue exited 1: Unable to contact slurm controller" in beta
