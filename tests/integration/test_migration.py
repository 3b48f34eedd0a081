"""Migration of a running command task between the containerized Slurm sites with CRIU."""

from __future__ import annotations

import itertools
import json
import os
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import slurmsite
from typer.testing import CliRunner

import metasched as ms
from metasched.attempt_dir import AttemptDir
from metasched.cli import app
from site_agents.slurm import SlurmSite
from tests.integration.cooperative import accumulate
from tests.integration.counter import COUNTER
from tests.integration.processes import kill_tree

pytestmark = [pytest.mark.slurm, pytest.mark.ray, pytest.mark.usefixtures("criu_ready")]
_names = itertools.count()
SCRATCH = slurmsite.SCRATCH


def _site(info: slurmsite.SiteInfo) -> SlurmSite:
    return SlurmSite(info.name, slurm_conf=info.slurm_conf, shared_dir=info.shared_dir,
                     poll_interval=0.3, checkpoint_dir=SCRATCH)


def _running_site(journal: Path, task_id: str) -> str:
    with sqlite3.connect(journal) as db:
        row = db.execute("SELECT site FROM tasks WHERE task_id = ? AND state = 'running'",
                         (task_id,)).fetchone()
    return str(row[0]) if row else ""


def _wait_running_with_output(sites: dict[str, slurmsite.SiteInfo], journal: Path, task_id: str,
                              lines: int, timeout: float = 60, at: str | None = None) -> str:
    """Wait until the task runs (at `at`, or anywhere) and its stdout there has `lines` lines; return
    the site."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        site = _running_site(journal, task_id)
        if site and (at is None or site == at):
            out = Path(sites[site].directory) / "scratch" / task_id / "stdout"
            if out.exists() and len(out.read_text().splitlines()) >= lines:
                return site
        time.sleep(0.2)
    raise AssertionError(f"task {task_id} did not run with {lines} lines of output within {timeout} s")


def _restart_points(journal: Path, task_id: str, count: int,
                    after_first: Callable[[], None] | None = None) -> str:
    """Wait until `count` restart points (each replacing the one before) were recorded for the task's
    running attempt; `after_first` runs once the first is. Returns the attempt's job id."""
    points: set[str] = set()
    deadline = time.monotonic() + 60
    while len(points) < count:
        assert time.monotonic() < deadline, f"restart points seen: {points}"
        with sqlite3.connect(journal) as db:
            (point,) = db.execute("SELECT checkpoint FROM tasks WHERE task_id = ?", (task_id,)).fetchone()
            (job,) = db.execute("SELECT native_id FROM attempts WHERE task_id = ?", (task_id,)).fetchone()
        if point and point not in points:
            points.add(point)
            if len(points) == 1 and after_first is not None:
                after_first()
        time.sleep(0.1)
    return str(job)


def test_a_running_counter_migrates_alpha_beta_alpha_and_continues(
    alpha: slurmsite.SiteInfo, beta: slurmsite.SiteInfo, ray_local: None, tmp_path: Path
) -> None:
    sites = {"alpha": alpha, "beta": beta}
    journal = tmp_path / "c.db"
    with ms.Campaign(f"migrate-{os.getpid()}-{next(_names)}", sites=[_site(alpha), _site(beta)],
                     journal=journal) as c:
        counter = c.command(["python3", "-c", COUNTER, "120"], checkpoint="criu", name="counter")
        first = _wait_running_with_output(sites, journal, counter.task_id, lines=10)
        other = "beta" if first == "alpha" else "alpha"
        assert "continuing at" in c.migrate(counter, to=other)
        assert _wait_running_with_output(sites, journal, counter.task_id, lines=30, at=other) == other
        runner = CliRunner()  # the second hop through the CLI, as a user at another terminal would
        refused = runner.invoke(app, ["migrate", str(journal), "counter", "--to", "mars"])
        assert refused.exit_code == 1
        assert "no site 'mars'" in refused.output
        back = runner.invoke(app, ["migrate", str(journal), "counter", "--to", first])
        assert back.exit_code == 0, back.output
        assert f"continuing at {first}" in back.output
        assert _wait_running_with_output(sites, journal, counter.task_id, lines=50, at=first) == first
        result = counter.result(timeout=120)
    lines = result.stdout.splitlines()
    assert lines[:-1] == [f"{i} {lines[0].split()[1]}" for i in range(120)]  # one start time: restored
    assert lines[-1].startswith("done ")
    with sqlite3.connect(journal) as db:
        attempts = db.execute("SELECT site, state FROM attempts WHERE task_id = ? ORDER BY number",
                              (counter.task_id,)).fetchall()
        moves = [d for (d,) in db.execute("SELECT detail FROM transitions WHERE task_id = ? AND "
                                          "new = 'ready' AND detail LIKE '%checkpoint%'", (counter.task_id,))]
        copies = db.execute("SELECT count(*), min(size) FROM objects WHERE object_id LIKE ? AND origin = 0",
                            (f"{counter.task_id}%.ckpt",)).fetchone()
    assert attempts == [(first, "checkpointed"), (other, "checkpointed"), (first, "succeeded")]
    report = CliRunner().invoke(app, ["report", str(journal), "--out", str(tmp_path / "report")])
    assert report.exit_code == 0, report.output
    assert "data-migration-arrows='2'" in (tmp_path / "report" / "index.html").read_text()
    assert len(moves) == 2
    assert all(f"next attempt at {site}" in m for m, site in zip(moves, (other, first), strict=True))
    assert copies[0] == 2  # each checkpoint copied (verified) to the next site's store
    assert copies[1] > 50 * 2**20  # the archive holds the 50 MB of state


def test_a_failed_restore_falls_back_to_a_restart_and_says_why(
    alpha: slurmsite.SiteInfo, beta: slurmsite.SiteInfo, ray_local: None, tmp_path: Path
) -> None:
    # The same path holds different programs at the two sites: CRIU refuses to restore at beta.
    for info, content in ((alpha, Path("/bin/sleep").read_bytes()), (beta, b'#!/bin/sh\nexec sleep "$@"\n')):
        program = Path(info.directory) / "scratch" / "bin" / "ticker"
        program.parent.mkdir(parents=True, exist_ok=True)
        program.write_bytes(content)
        program.chmod(0o755)
    journal = tmp_path / "c.db"
    with ms.Campaign(f"restore-fails-{os.getpid()}-{next(_names)}", sites=[_site(alpha), _site(beta)],
                     journal=journal) as c:
        ticker = c.command([f"{SCRATCH}/bin/ticker", "8"], checkpoint="criu", name="ticker")
        deadline = time.monotonic() + 60
        while _running_site(journal, ticker.task_id) != "alpha":
            assert time.monotonic() < deadline, "ticker did not start at alpha"
            time.sleep(0.2)
        time.sleep(1)
        c.migrate(ticker, to="beta")
        result = ticker.result(timeout=120)
    assert result.returncode == 0
    with sqlite3.connect(journal) as db:
        attempts = db.execute("SELECT site, state FROM attempts WHERE task_id = ? ORDER BY number",
                              (ticker.task_id,)).fetchall()
        details = [d for (d,) in db.execute("SELECT detail FROM transitions WHERE task_id = ?",
                                            (ticker.task_id,))]
        checkpoint = db.execute("SELECT checkpoint FROM tasks WHERE task_id = ?",
                                (ticker.task_id,)).fetchone()
    assert attempts[:2] == [("alpha", "checkpointed"), ("beta", "lost")]
    assert attempts[2][1] == "succeeded"
    fallback = next(d for d in details if "restore from checkpoint failed at beta" in d)
    assert "criu restore failed" in fallback
    assert "restarting from scratch" in fallback
    assert checkpoint == (None,)


def test_a_scheduler_killed_between_dump_and_restore_resumes_the_migration(
    alpha: slurmsite.SiteInfo, beta: slurmsite.SiteInfo, tmp_path: Path
) -> None:
    script = Path(__file__).parent / "scripts" / "migrate_campaign.py"
    journal = tmp_path / "m.db"
    sites = {"alpha": alpha, "beta": beta}
    spec = json.dumps([[s.name, s.slurm_conf, s.shared_dir] for s in (alpha, beta)])
    args = [sys.executable, str(script), str(journal), spec, SCRATCH]
    run = subprocess.Popen([*args, "run"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while not journal.exists() or not _task_ids(journal):
            assert run.poll() is None, run.stdout.read() if run.stdout else ""
            assert time.monotonic() < deadline
            time.sleep(0.2)
        (task_id,) = _task_ids(journal)
        first = _wait_running_with_output(sites, journal, task_id, lines=10)
        other = "beta" if first == "alpha" else "alpha"
        answer = CliRunner().invoke(app, ["migrate", str(journal), "counter", "--to", other])
        assert answer.exit_code == 0, answer.output
        attempt = AttemptDir.of(sites[first].shared_dir, f"{task_id}.1")
        while not attempt.checkpoint_record_file.exists():  # the dump is done: kill the scheduler now
            assert time.monotonic() < deadline, "no checkpoint within 90 s"
            time.sleep(0.02)
    finally:
        kill_tree(run.pid)
    resumed = subprocess.run([*args, "resume"], capture_output=True, text=True, timeout=300, check=False)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    output = json.loads(resumed.stdout.split("OUTPUT ", 1)[1].splitlines()[0])
    lines = output.splitlines()
    assert lines[:-1] == [f"{i} {lines[0].split()[1]}" for i in range(100)]  # restored, not restarted
    assert lines[-1].startswith("done ")
    with sqlite3.connect(journal) as db:
        attempts = db.execute("SELECT site, state FROM attempts WHERE task_id = ? ORDER BY number",
                              (task_id,)).fetchall()
        finished = db.execute("SELECT count(*) FROM transitions WHERE task_id = ? AND new = 'done'",
                              (task_id,)).fetchone()
    assert attempts == [(first, "checkpointed"), (other, "succeeded")]  # never two attempts at once
    assert finished == (1,)


def _task_ids(journal: Path) -> list[str]:
    try:
        with sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=5) as db:
            return [t for (t,) in db.execute("SELECT task_id FROM tasks")]
    except sqlite3.OperationalError:
        return []


def test_a_task_checkpointed_before_its_time_limit_finishes_at_another_site(
    alpha: slurmsite.SiteInfo, beta: slurmsite.SiteInfo, ray_local: None, tmp_path: Path
) -> None:
    journal = tmp_path / "c.db"
    with ms.Campaign(f"walltime-{os.getpid()}-{next(_names)}", sites=[_site(alpha), _site(beta)],
                     journal=journal) as c:
        # ~45 s of work, 1 minute per attempt, Slurm's warning 30 s before the limit (the site default
        # of 60 s is capped at half the walltime): checkpointed at ~30 s, finished elsewhere.
        counter = c.command(["python3", "-c", COUNTER, "400"], checkpoint="criu", walltime="00:01:00",
                            name="counter")
        result = counter.result(timeout=240)
    lines = result.stdout.splitlines()
    assert lines[:-1] == [f"{i} {lines[0].split()[1]}" for i in range(400)]
    with sqlite3.connect(journal) as db:
        attempts = db.execute("SELECT site, state FROM attempts WHERE task_id = ? ORDER BY number",
                              (counter.task_id,)).fetchall()
        details = [d for (d,) in db.execute("SELECT detail FROM transitions WHERE task_id = ?",
                                            (counter.task_id,))]
    assert [state for _, state in attempts] == ["checkpointed", "succeeded"]
    assert attempts[0][0] != attempts[1][0]
    assert any(d.startswith(f"walltime checkpoint at {attempts[0][0]}") for d in details), details


def test_a_cooperative_python_task_migrates_and_returns_the_right_result(
    alpha: slurmsite.SiteInfo, beta: slurmsite.SiteInfo, ray_local: None, tmp_path: Path
) -> None:
    journal = tmp_path / "c.db"
    with ms.Campaign(f"coop-{os.getpid()}-{next(_names)}", sites=[_site(alpha), _site(beta)],
                     journal=journal) as c:
        future = c.task(checkpoint="cooperative")(accumulate)(300, 0.05)
        deadline = time.monotonic() + 60
        while not (first := _running_site(journal, future.task_id)):
            assert time.monotonic() < deadline, "the task did not start"
            time.sleep(0.2)
        time.sleep(3)
        other = "beta" if first == "alpha" else "alpha"
        c.migrate(future, to=other)
        total, steps, began, _ = future.result(timeout=120)
    assert (total, steps) == (sum(i * i for i in range(300)), 300)
    assert len(began) == 2, began
    assert 0 < began[1] < 300, began  # continued from its saved state, not from 0
    assert began[1] % 10 == 0, began
    with sqlite3.connect(journal) as db:
        attempts = db.execute("SELECT site, state FROM attempts WHERE task_id = ? ORDER BY number",
                              (future.task_id,)).fetchall()
        live = db.execute("SELECT count(*) FROM objects WHERE object_id LIKE ? AND evicted IS NULL",
                          (f"{future.task_id}%",)).fetchone()
    assert attempts == [(first, "checkpointed"), (other, "succeeded")]
    assert live == (0,)  # every saved state was evicted once superseded or the task was done


def _taking_a_restart_point(attempt: AttemptDir) -> None:
    """Return as soon as the wrapper begins its next restart point (it makes CRIU's images anew)."""
    log = attempt.images_dir / "dump.log"

    def seen() -> tuple[int, int] | None:
        try:
            stat = log.stat()
        except FileNotFoundError:  # between the old images' removal and CRIU's start: begun
            return None
        return stat.st_ino, stat.st_mtime_ns

    before = seen()
    deadline = time.monotonic() + 30
    while seen() == before and before is not None:
        assert time.monotonic() < deadline, "no restart point begun within 30 s"
        time.sleep(0.01)


@pytest.mark.parametrize("when", ["between restart points", "while one is taken"])
def test_a_lost_attempt_restores_from_the_newest_restart_point(
    alpha: slurmsite.SiteInfo, beta: slurmsite.SiteInfo, ray_local: None, tmp_path: Path, when: str
) -> None:
    """The attempt is cancelled behind the scheduler's back; while a restart point is being taken, the
    wrapper's cancel is not taken for a checkpoint's reason (before, it dumped the task again with reason
    'cancel', and reading that record stopped the scheduler's loop)."""
    sites = {"alpha": alpha, "beta": beta}
    journal = tmp_path / "c.db"
    with ms.Campaign(f"restart-{os.getpid()}-{next(_names)}", sites=[_site(alpha), _site(beta)],
                     journal=journal) as c:
        counter = c.command(["python3", "-c", COUNTER, "150"], checkpoint="criu", checkpoint_every="00:00:04",
                            retries=1, name="counter")
        first = _wait_running_with_output(sites, journal, counter.task_id, lines=20)
        assert "restart point requested" in c.checkpoint(counter)

        def one_more_through_the_cli() -> None:
            asked = CliRunner().invoke(app, ["checkpoint", str(journal), "counter"])
            assert asked.exit_code == 0, asked.output
            assert "restart point requested" in asked.output

        job = _restart_points(journal, counter.task_id, 3, after_first=one_more_through_the_cli)
        if when == "while one is taken":
            _taking_a_restart_point(AttemptDir.of(sites[first].shared_dir, f"{counter.task_id}.1"))
        subprocess.run(["scancel", job], env=sites[first].client_env(), check=True)  # the attempt is lost
        result = counter.result(timeout=120)
    lines = result.stdout.splitlines()
    assert lines[:-1] == [f"{i} {lines[0].split()[1]}" for i in range(150)]  # restored, not restarted
    with sqlite3.connect(journal) as db:
        attempts = [state for (state,) in db.execute(
            "SELECT state FROM attempts WHERE task_id = ? ORDER BY number", (counter.task_id,))]
        kept = db.execute("SELECT count(*) FROM objects WHERE object_id LIKE ? AND evicted IS NULL",
                          (f"{counter.task_id}%",)).fetchone()
    assert attempts == ["lost", "succeeded"]
    assert kept == (0,)  # superseded restart points were evicted, the last one when the task was done


def test_an_attempt_whose_checkpoint_record_cannot_be_read_fails_and_the_campaign_goes_on(
    alpha: slurmsite.SiteInfo, ray_local: None, tmp_path: Path
) -> None:
    """A record cut short on the node (as a full disk leaves it) fails that attempt, saying why; it is
    retried. Before, reading it raised in the agent's poll and stopped the scheduler's loop, and a resumed
    campaign read it again and stopped again."""
    journal = tmp_path / "c.db"
    with ms.Campaign(f"unreadable-{os.getpid()}-{next(_names)}", sites=[_site(alpha)], journal=journal) as c:
        counter = c.command(["python3", "-c", COUNTER, "40"], checkpoint="criu", retries=1, name="counter")
        _wait_running_with_output({"alpha": alpha}, journal, counter.task_id, lines=5)
        record = AttemptDir.of(alpha.shared_dir, f"{counter.task_id}.1").checkpoint_record_file
        record.write_text('{"reason": "requested", "size": ')
        result = counter.result(timeout=120)
        after = c.command(["true"], name="after").result(timeout=60)
    lines = result.stdout.splitlines()  # the retry started from scratch, in an emptied working directory
    assert lines[:-1] == [f"{i} {lines[0].split()[1]}" for i in range(40)]
    assert lines[-1].startswith("done ")
    assert after.returncode == 0
    failed = AttemptDir.of(alpha.shared_dir, f"{counter.task_id}.1").command_stdout.read_text().splitlines()
    assert len(failed) >= 5  # the failed attempt's own output is kept in its own directory
    assert failed == [f"{i} {failed[0].split()[1]}" for i in range(len(failed))]
    assert failed[0].split()[1] != lines[0].split()[1]
    with sqlite3.connect(journal) as db:
        attempts = [s for (s,) in db.execute("SELECT state FROM attempts WHERE task_id = ? ORDER BY number",
                                             (counter.task_id,))]
        details = " ".join(d for (d,) in db.execute("SELECT detail FROM transitions WHERE task_id = ?",
                                                    (counter.task_id,)))
    assert attempts == ["failed", "succeeded"]
    assert re.search(r"could not read how job \d+ ended at site alpha", details), details
    assert "JSONDecodeError" in details


def test_a_restart_point_record_that_cannot_be_read_is_noted_and_the_task_runs_on(
    alpha: slurmsite.SiteInfo, ray_local: None, tmp_path: Path
) -> None:
    journal = tmp_path / "c.db"
    with ms.Campaign(f"unreadable-point-{os.getpid()}-{next(_names)}", sites=[_site(alpha)],
                     journal=journal) as c:
        counter = c.command(["python3", "-c", COUNTER, "40"], checkpoint="criu", checkpoint_every="00:00:02",
                            name="counter")
        _wait_running_with_output({"alpha": alpha}, journal, counter.task_id, lines=5)
        attempt = AttemptDir.of(alpha.shared_dir, f"{counter.task_id}.1")
        attempt.restart_record_file(0).write_text('{"archive": ')
        result = counter.result(timeout=120)
    lines = result.stdout.splitlines()
    assert lines[:-1] == [f"{i} {lines[0].split()[1]}" for i in range(40)]  # one run, not stopped
    with sqlite3.connect(journal) as db:
        attempts = [s for (s,) in db.execute("SELECT state FROM attempts WHERE task_id = ?",
                                             (counter.task_id,))]
        notes = [n for (n,) in db.execute("SELECT note FROM notes WHERE attempt_id = ?",
                                          (f"{counter.task_id}.1",))]
    assert attempts == ["succeeded"]
    assert len([n for n in notes if "could not be read: JSONDecodeError" in n]) == 1, notes  # said once


def test_draining_a_site_moves_its_checkpointable_tasks_and_sends_new_work_elsewhere(
    alpha: slurmsite.SiteInfo, beta: slurmsite.SiteInfo, ray_local: None, tmp_path: Path
) -> None:
    sites = {"alpha": alpha, "beta": beta}
    journal = tmp_path / "c.db"
    with ms.Campaign(f"drain-{os.getpid()}-{next(_names)}", sites=[_site(alpha), _site(beta)],
                     journal=journal) as c:
        counters = [c.command(["python3", "-c", COUNTER, "100"], checkpoint="criu", name=f"counter-{i}")
                    for i in range(2)]
        where = [_wait_running_with_output(sites, journal, f.task_id, lines=10) for f in counters]
        drained = where[0]
        other = "beta" if drained == "alpha" else "alpha"
        answer = c.drain(drained)
        assert f"site {drained} drained" in answer
        for future, site in zip(counters, where, strict=True):
            if site == drained:
                assert f"{future.name} -> {other}" in answer
        late = c.command(["echo", "late"], name="late")
        assert late.result(timeout=120).stdout == "late\n"
        rows = {row.site: row for row in c.status()}  # the live display's per-site table
        assert rows[drained].problem.startswith("drained: takes no new attempts"), rows
        assert rows[other].problem == ""
        status = CliRunner().invoke(app, ["status", str(journal), "--json"])
        assert list(json.loads(status.stdout)["site_problems"]) == [drained]
        results = [f.result(timeout=180) for f in counters]
        undone = CliRunner().invoke(app, ["drain", str(journal), drained, "--undo"])
        assert undone.exit_code == 0, undone.output
        assert f"site {drained} takes new work again" in undone.output
    for result in results:
        lines = result.stdout.splitlines()
        assert lines[:-1] == [f"{i} {lines[0].split()[1]}" for i in range(100)]
    with sqlite3.connect(journal) as db:
        last_sites = dict(db.execute("SELECT name, site FROM tasks"))
    assert last_sites["late"] == other
    assert {last_sites["counter-0"], last_sites["counter-1"]} == {other}


def test_a_counter_migrates_between_a_site_over_ssh_and_alpha_and_restores_its_restart_points_there(
    alpha: slurmsite.SiteInfo, omicron: slurmsite.SiteInfo, ray_local: None, tmp_path: Path
) -> None:
    """omicron is reached only over SSH: its checkpoints are adopted into its store at the site, copied
    (verified) through SSH to alpha's store and back, and restored; its restart points (on demand and
    periodic) are adopted there too, and a lost attempt restores from the newest one."""
    from metasched.sites.preflight import check_site
    from tests.integration.ssh_sites import slurm_ssh_site

    remote = slurm_ssh_site(omicron, checkpoint_dir=SCRATCH)
    criu = next(check for check in check_site(remote) if check.check == "criu")
    assert criu.passed, f"CRIU over SSH: {criu.detail} ({criu.fix})"
    sites = {"alpha": alpha, "omicron": omicron}
    journal = tmp_path / "c.db"
    with ms.Campaign(f"migrate-ssh-{os.getpid()}", sites=[remote, _site(alpha)], journal=journal) as c:
        counter = c.command(["python3", "-c", COUNTER, "120"], checkpoint="criu", name="counter")
        first = _wait_running_with_output(sites, journal, counter.task_id, lines=10)
        other = "alpha" if first == "omicron" else "omicron"
        assert "continuing at" in c.migrate(counter, to=other)
        _wait_running_with_output(sites, journal, counter.task_id, lines=30, at=other)
        assert "continuing at" in c.migrate(counter, to=first)
        _wait_running_with_output(sites, journal, counter.task_id, lines=50, at=first)
        moved = counter.result(timeout=120)
        kept = c.command(["python3", "-c", COUNTER, "150"], checkpoint="criu", checkpoint_every="00:00:04",
                         retries=1, sites=["omicron"], name="kept")
        _wait_running_with_output(sites, journal, kept.task_id, lines=20, at="omicron")
        assert "restart point requested" in c.checkpoint(kept)
        job = _restart_points(journal, kept.task_id, 3)
        subprocess.run(["scancel", job], env=omicron.client_env(), check=True)  # the attempt is lost
        restored = kept.result(timeout=120)
    for result, count in ((moved, 120), (restored, 150)):
        lines = result.stdout.splitlines()
        assert lines[:-1] == [f"{i} {lines[0].split()[1]}" for i in range(count)]  # restored, not restarted
    with sqlite3.connect(journal) as db:
        attempts = db.execute("SELECT site, state FROM attempts WHERE task_id = ? ORDER BY number",
                              (counter.task_id,)).fetchall()
        objects = db.execute("SELECT object_id, store_id, origin, size FROM objects WHERE object_id LIKE ? "
                             "OR object_id LIKE ?", (f"{counter.task_id}%", f"{kept.task_id}%")).fetchall()
        kept_states = [s for (s,) in db.execute(
            "SELECT state FROM attempts WHERE task_id = ? ORDER BY number", (kept.task_id,))]
    assert attempts == [(first, "checkpointed"), (other, "checkpointed"), (first, "succeeded")]
    at_site = f"ssh:{remote.host}:{omicron.remote_dir}/.metasched/store"
    made = {store for oid, store, origin, _ in objects if origin and oid.startswith(counter.task_id)}
    copied = [(store, size) for oid, store, origin, size in objects
              if not origin and oid.startswith(counter.task_id)]
    assert made == {at_site, f"file:{alpha.shared_dir}/.metasched/store"}  # one checkpoint at each site
    assert len(copied) == 2  # each copied (verified) to the other site's store, through SSH either way
    assert all(size > 50 * 2**20 for _, size in copied)
    assert kept_states == ["lost", "succeeded"]
    assert {store for oid, store, *_ in objects if oid.startswith(kept.task_id)} == {at_site}
    assert not Path(omicron.remote_dir).exists()


def test_a_site_whose_controller_is_stopped_is_drained_and_its_task_moved_once_it_answers(
    alpha: slurmsite.SiteInfo, beta: slurmsite.SiteInfo, ray_local: None, tmp_path: Path
) -> None:
    """A migration or a drain asked while the task's site does not answer (its controller stopped, for
    maintenance say). Before, the scheduler sent `scancel --signal` all the same: it waited out Slurm's
    retries in the scheduler's step and its failure ended the campaign's scheduler loop. Now both are
    answered at once, the task runs on, and a drain asked again once the site answers moves it."""
    sites = {"alpha": alpha, "beta": beta}
    journal = tmp_path / "c.db"
    runner = CliRunner()
    with ms.Campaign(f"drain-down-{os.getpid()}-{next(_names)}", sites=[_site(alpha), _site(beta)],
                     journal=journal) as c:
        counter = c.command(["python3", "-c", COUNTER, "400"], checkpoint="criu", name="counter")
        first = _wait_running_with_output(sites, journal, counter.task_id, lines=10)
        other = "beta" if first == "alpha" else "alpha"
        controller = f"metasched-slurm-{first}-controller"
        subprocess.run(["docker", "stop", controller], check=True, capture_output=True, timeout=60)
        try:
            time.sleep(5)  # its status unanswered for 3 s (SLOW_S): the site does not answer now
            migrate = runner.invoke(app, ["migrate", str(journal), "counter", "--to", other])
            drain = runner.invoke(app, ["drain", str(journal), first])
        finally:
            subprocess.run(["docker", "start", controller], check=True, capture_output=True, timeout=60)
        assert migrate.exit_code == 1, migrate.output
        assert f"site {first} does not answer now: no signal sent" in migrate.output
        assert drain.exit_code == 0, drain.output
        assert f"site {first} drained" in drain.output
        assert "finishing there: counter" in drain.output
        assert "drain it again to move them" in drain.output
        deadline = time.monotonic() + 90
        again = runner.invoke(app, ["drain", str(journal), first])
        while f"counter -> {other}" not in again.output:  # until the site answers again
            assert time.monotonic() < deadline, again.output
            time.sleep(1)
            again = runner.invoke(app, ["drain", str(journal), first])
        result = counter.result(timeout=180)
    lines = result.stdout.splitlines()
    assert lines[:-1] == [f"{i} {lines[0].split()[1]}" for i in range(400)]  # one start time: restored
    with sqlite3.connect(journal) as db:
        attempts = db.execute("SELECT site, state FROM attempts WHERE task_id = ? ORDER BY number",
                              (counter.task_id,)).fetchall()
    assert attempts == [(first, "checkpointed"), (other, "succeeded")]
    slurmsite.wait_ready(sites[first])  # its nodes are "unknown" until their slurmd registers again
