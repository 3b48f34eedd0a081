"""Following a campaign from another terminal: `metasched logs TASK --follow` prints a running task's output
as it is written (at a batch site: from its shared directory), and `metasched events` / `logs --events` list
every state change in order."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import slurmsite

import metasched as ms
from tests.integration.cli_helpers import assert_follow_streams, cli

pytestmark = pytest.mark.ray
@pytest.mark.docker
def test_follow_prints_a_running_tasks_output_at_a_slurm_site_before_it_ends(
        iota: object, ray_local: None, tmp_path: Path) -> None:
    site = ms.SlurmSite("iota", shared_dir=iota.shared_dir, login=tuple(iota.login),  # type: ignore[attr-defined]
                        poll_interval=0.3)
    assert_follow_streams(site, tmp_path / "f.db")


@pytest.mark.slurm
@pytest.mark.usefixtures("criu_ready")
def test_follow_prints_a_running_checkpointable_tasks_output_before_it_ends(
        alpha: slurmsite.SiteInfo, ray_local: None, tmp_path: Path) -> None:
    """A CRIU task writes in its own working directory (its output travels in its checkpoints); the
    wrapper copies the output as it grows to where `logs --follow` reads a command's. Before, it was
    copied when the task ended: the follower printed nothing until then."""
    site = ms.SlurmSite("alpha", slurm_conf=alpha.slurm_conf, shared_dir=alpha.shared_dir, poll_interval=0.3,
                        checkpoint_dir=slurmsite.SCRATCH)
    assert_follow_streams(site, tmp_path / "f.db", checkpoint="criu")


def test_events_list_every_change_of_a_retried_task_in_order(ray_local: None, tmp_path: Path) -> None:
    journal, marker = tmp_path / "e.db", tmp_path / "tried"
    flaky = ["sh", "-c", f"if [ -e {marker} ]; then echo second; else touch {marker}; exit 5; fi"]
    with ms.Campaign("events", sites=[ms.LocalSite("local", cores=1)], journal=journal) as c:
        assert c.command(flaky, name="flaky", retries=1).result(timeout=60).stdout == "second\n"
    listed = cli("events", str(journal), "--task", "flaky")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    changes = [line.split("  ")[2].split(" at ")[0] for line in listed.stdout.splitlines()]
    # (the local site does not report when a task starts running: submitted is followed by its end)
    assert changes == ["- -> pending", "pending -> ready", "ready -> submitted", "submitted -> ready",
                       "ready -> submitted", "submitted -> done"]
    assert "exited with status 5" in listed.stdout  # why the first attempt ended
    assert len(set(re.findall(r" attempt ([0-9a-f]+\.\d+)", listed.stdout))) == 2
    logs = cli("logs", str(journal), "flaky", "--events")
    assert logs.stdout.count(" -> ") == 6
    records = [json.loads(line) for line in cli("events", str(journal), "--json").stdout.splitlines()]
    assert [(r["old"], r["new"]) for r in records][:3] == [(None, "pending"), ("pending", "ready"),
                                                           ("ready", "submitted")]
    assert {r["task_name"] for r in records} == {"flaky"}
    assert records[-1]["new"] == "done"
    assert records[-1]["at"] >= records[0]["at"]
    every = cli("events", str(journal), "--follow")  # ends by itself: every task has finished
    assert every.returncode == 0
    assert every.stdout.splitlines() == listed.stdout.splitlines()
