"""Fault scenarios shared by the batch-scheduler tests (Grid Engine, PBS, Slurm with accounting).

Each is the same story told to a different scheduler: a job removed behind metasched's back is run again,
and a server that stops mid-campaign loses nothing and gets no work while it is down.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import metasched as ms
from tests.integration.cli_helpers import cli

ENDED = ("succeeded", "failed", "lost", "cancelled")


def slow_submissions_login(seconds: float) -> tuple[str, ...]:
    """A login prefix that runs every command as given, each job submission `seconds` late.

    A site whose submissions take seconds each (a busy controller, a site's own checks of every job, a
    far login node); squeue and ``sbatch --test-only`` (a shape's expected start) answer at once.
    """
    script = f'case " $* " in *" --test-only "*) ;; *" sbatch "*) sleep {seconds:g};; esac; exec "$@"'
    return ("bash", "-c", script, "slow-submissions")


def attempts(journal: Path) -> list[tuple[str, str, str, str | None]]:
    """Every attempt as (task_id, site, state, native_id), oldest first."""
    db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=10)
    try:
        return list(db.execute("SELECT task_id, site, state, native_id FROM attempts ORDER BY submitted_at"))
    finally:
        db.close()


def rerun_argv(marker: Path, python: str = "python3") -> list[str]:
    """A command whose first attempt creates `marker` and sleeps 300 s; a second prints 'attempt 2'."""
    return [python, "-c", "import os, sys, time; first = not os.path.exists(sys.argv[1]); "
            "open(sys.argv[1], 'a').close(); time.sleep(300 if first else 0); print('attempt 2' if not first "
            "else 'attempt 1')", str(marker)]


def job_of_first_attempt(campaign: ms.Campaign, journal: Path, marker: Path) -> str:
    """Wait until the first attempt runs (its marker exists) and return its job id from the journal.

    (The job may start before the scheduler has journaled the id its submission returned: wait for both.)
    """
    deadline = time.monotonic() + 120
    while not marker.exists() or not any(job_id for *_, job_id in attempts(journal)):
        if time.monotonic() > deadline:
            campaign.flush()
            raise AssertionError(f"the first attempt never started or was never journaled with its job id; "
                                 f"marker {marker.exists()}, attempts: {attempts(journal)}, "
                                 f"status: {campaign.status()}")
        time.sleep(0.2)
    [(_, _, _, job_id)] = attempts(journal)
    assert job_id is not None
    return job_id


@dataclass(frozen=True)
class Outage:
    """When a site's server was down during `outage_campaign`."""

    down_at: float
    up_at: float


def outage_campaign(campaign: ms.Campaign, journal: Path, site: str, stop: Callable[[], None],
                    start: Callable[[], None], down_s: float = 11.0) -> Outage:
    """12 tasks, then `stop` once one of them runs at `site`, 8 more while it is down (`metasched status`
    must say the site takes no new work, why and since when), `start` `down_s` later; waits for all 20,
    checks they succeeded and that status no longer says the server does not answer."""
    first = [campaign.command(["sleep", "2"], name=f"first-{i}") for i in range(12)]
    deadline = time.monotonic() + 60
    while not any(r[1] == site and r[3] and r[2] not in ENDED for r in attempts(journal)):
        assert time.monotonic() < deadline, f"nothing ran at {site}"
        campaign.flush()
        time.sleep(0.2)
    stop()
    down_at = time.time()
    time.sleep(3)
    second = [campaign.command(["sleep", "1"], name=f"second-{i}") for i in range(8)]
    out = _site_problems(journal, until=lambda said: site in said, deadline=down_at + down_s)
    assert site in out, f"`metasched status` did not say {site} takes no work while its server was down"
    assert out[site]["problem"]
    assert down_at - 1 <= out[site]["since"] <= time.time()
    time.sleep(max(0.0, down_at + down_s - time.time()))
    start()
    up_at = time.time()
    results = [f.result(timeout=300) for f in first + second]
    assert all(r.returncode == 0 for r in results)
    # The server answers again (its nodes may still be registering with it: "no node takes jobs (...)").
    after = _site_problems(journal, until=lambda said: not _unanswered(said.get(site)),
                           deadline=time.time() + 15)
    assert not _unanswered(after.get(site)), after
    return Outage(down_at, up_at)


def _unanswered(said: dict[str, Any] | None) -> bool:
    return said is not None and said["problem"].startswith(("not answering", "its status command is slow"))


def _site_problems(journal: Path, until: Callable[[dict[str, Any]], bool], deadline: float) -> dict[str, Any]:
    """What `metasched status --json` says of the sites taking no new work, once `until` holds (or the
    deadline passed)."""
    while True:
        status = cli("status", str(journal), "--json")
        said: dict[str, Any] = json.loads(status.stdout)["site_problems"]
        if until(said) or time.time() >= deadline:
            return said
        time.sleep(0.5)


def assert_nothing_lost(journal: Path, site: str, outage: Outage, tasks: int = 20) -> None:
    """No job lost, nothing placed at `site` while it was down, every task succeeded exactly once.

    A submission still on its way when the server stopped comes back unanswered: its attempt is placed
    again at no cost (journaled lost, without a job); an attempt whose job the server had is never lost.
    """
    db = sqlite3.connect(journal)
    placed = list(db.execute("SELECT site FROM attempts WHERE submitted_at > ? AND submitted_at < ?",
                             (outage.down_at + 2, outage.up_at)))
    finals = list(db.execute("SELECT task_id, COUNT(*) FROM attempts WHERE state = 'succeeded' "
                             "GROUP BY task_id"))
    lost = list(db.execute("SELECT site, native_id FROM attempts WHERE state = 'lost'"))
    why = [detail for (detail,) in db.execute("SELECT detail FROM transitions WHERE new = 'lost'")]
    db.close()
    assert [row for row in lost if row[1]] == [], f"attempts lost although the jobs ran on: {lost}"
    assert all(detail.startswith("site unavailable: ") for detail in why), why  # unanswered submissions
    assert (site,) not in placed, f"work was sent to {site} while its server was down"
    assert len(finals) == tasks
    assert all(count == 1 for _, count in finals)
