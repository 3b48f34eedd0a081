"""CRIU checkpoints in pilot blocks: a command task dumped before its block ends goes on in the next block.

Site kappa (Slurm 22.05, 2 nodes) in the loopback-only namespace; its compute nodes have sid's CRIU and the
scratch directory at the same path on both, as for batch-mode migrations.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest
import slurmsite

from metasched.attempt_dir import AttemptDir
from metasched.journal import Journal
from metasched.scheduler.blocks import journaled_blocks
from tests.integration.counter import COUNTER
from tests.integration.processes import running_on_nodes, wait_for
from tests.pilot.test_pilot_slurm import block_jobs, campaign, pilot_site

pytestmark = [pytest.mark.slurm, pytest.mark.pilot]


def attempts_of(journal: Path, task_id: str) -> list[tuple[str, str, str]]:
    """The task's attempts: (site, state, block job id), in order."""
    with sqlite3.connect(journal) as db:
        return db.execute("SELECT site, state, native_id FROM attempts WHERE task_id = ? ORDER BY number",
                          (task_id,)).fetchall()


def test_a_criu_task_is_dumped_before_its_block_ends_and_restored_in_the_next(
        kappa: slurmsite.SiteInfo, tmp_path: Path) -> None:
    # Pilots leave 90 s into a block; a CRIU task is dumped 40 s in (lead 50 s), and is handed only to a
    # block with 80 s left (the lead and MIN_SLICE_S): the next block, not this one.
    site = pilot_site(kappa, init_blocks=1, max_blocks=2, block_walltime=120.0, signal_lead_s=50,
                      checkpoint_dir=slurmsite.SCRATCH)
    with campaign(tmp_path, site) as c:
        counter = c.command(["python3", "-c", COUNTER, "500"], checkpoint="criu", name="counter")  # 50 s
        result = counter.result(timeout=300)
    lines = result.stdout.splitlines()
    started = lines[0].split()[1]
    assert lines[:-1] == [f"{i} {started}" for i in range(500)], "one process throughout: restored"
    assert lines[-1].startswith("done")
    tried = attempts_of(tmp_path / "c.db", counter.task_id)
    assert [(s, state) for s, state, _ in tried] == [("kappa", "checkpointed"), ("kappa", "succeeded")], tried
    assert tried[0][2] != tried[1][2], "restored in another block"
    journal = Journal(tmp_path / "c.db").open(read_only=True)
    try:
        blocks = {b.job_id for b in journaled_blocks(journal)["kappa"]}
    finally:
        journal.close()
    assert {tried[0][2], tried[1][2]} <= blocks, (tried, blocks)
    with sqlite3.connect(tmp_path / "c.db") as db:
        details = [d for (d,) in db.execute("SELECT detail FROM transitions WHERE task_id = ?",
                                            (counter.task_id,))]
    assert any(d.startswith("walltime checkpoint at kappa") for d in details), details
    wait_for(lambda: not block_jobs(kappa), 60, "the closed campaign's blocks to leave the queue")


def test_a_criu_task_takes_a_restart_point_in_a_block_and_migrates_to_another_pilot_site(
        kappa: slurmsite.SiteInfo, tmp_path: Path) -> None:
    # Two pilot sites on kappa's nodes (one block each): the stop request reaches the wrapper through the
    # attempt directory (no scheduler signals a Ray task's child), the dump is restored in the other block.
    sites = [pilot_site(kappa, name=name, init_blocks=1, max_blocks=1, checkpoint_dir=slurmsite.SCRATCH)
             for name in ("kappa", "kappa2")]
    journal = tmp_path / "c.db"
    with campaign(tmp_path, *sites) as c:
        counter = c.command(["python3", "-c", COUNTER, "300"], checkpoint="criu", name="counter")  # 30 s
        out = Path(kappa.directory) / "scratch" / counter.task_id / "stdout"
        wait_for(lambda: out.exists() and len(out.read_text().splitlines()) >= 30, 180, "the counter to run")
        c.checkpoint(counter)  # a restart point; the task goes on
        wait_for(lambda: restart_point(journal, counter.task_id), 30, "a restart point to be recorded")
        first = attempts_of(journal, counter.task_id)[0][0]
        other = "kappa2" if first == "kappa" else "kappa"
        c.migrate(counter, to=other)
        result = counter.result(timeout=180)
    lines = result.stdout.splitlines()
    started = lines[0].split()[1]
    assert lines[:-1] == [f"{i} {started}" for i in range(300)], "one process throughout: restored"
    tried = [(site, state) for site, state, _ in attempts_of(journal, counter.task_id)]
    assert tried == [(first, "checkpointed"), (other, "succeeded")], tried


def restart_point(journal: Path, task_id: str) -> str:
    """The task's restart point as the journal keeps it ("" if none)."""
    with sqlite3.connect(journal) as db:
        (point,) = db.execute("SELECT checkpoint FROM tasks WHERE task_id = ?", (task_id,)).fetchone()
    return str(point or "")


def test_a_cancelled_criu_task_in_a_block_leaves_nothing_running(
        kappa: slurmsite.SiteInfo, tmp_path: Path) -> None:
    # The task is PID 1 of its own namespace, in its own session: only the parent-death signals from the
    # wrapper down end it when its Ray worker is force-killed while the block goes on.
    marker = f"metasched-cancel-{time.monotonic_ns()}"
    site = pilot_site(kappa, init_blocks=1, max_blocks=1, checkpoint_dir=slurmsite.SCRATCH)
    with campaign(tmp_path, site) as c:
        counter = c.command(["python3", "-c", COUNTER, "900", marker], checkpoint="criu", name="counter")
        out = Path(kappa.directory) / "scratch" / counter.task_id / "stdout"
        wait_for(lambda: out.exists() and len(out.read_text().splitlines()) >= 10, 180, "the counter to run")
        nodes = [f"metasched-slurm-{node}" for node in kappa.nodes]
        assert running_on_nodes(nodes, marker), "the check sees the running task"
        c.cancel(counter)
        wait_for(lambda: not running_on_nodes(nodes, marker), 30, "the cancelled task's process to end")
        assert block_jobs(kappa), "the block still runs"



def test_a_restart_point_record_in_a_block_that_cannot_be_read_is_noted_and_the_task_runs_on(
        kappa: slurmsite.SiteInfo, tmp_path: Path) -> None:
    # As in batch mode (tests/integration/test_migration.py): before, reading it raised in the pilot
    # agent's poll and stopped the scheduler's loop.
    site = pilot_site(kappa, init_blocks=1, max_blocks=1, checkpoint_dir=slurmsite.SCRATCH)
    journal = tmp_path / "c.db"
    with campaign(tmp_path, site) as c:
        counter = c.command(["python3", "-c", COUNTER, "60"], checkpoint="criu", checkpoint_every="00:00:02",
                            name="counter")
        out = Path(kappa.directory) / "scratch" / counter.task_id / "stdout"
        wait_for(lambda: out.exists() and len(out.read_text().splitlines()) >= 5, 180, "the counter to run")
        attempt = AttemptDir.of(kappa.shared_dir, f"{counter.task_id}.1")
        attempt.restart_record_file(0).write_text('{"archive": ')
        result = counter.result(timeout=120)
    lines = result.stdout.splitlines()
    assert lines[:-1] == [f"{i} {lines[0].split()[1]}" for i in range(60)], "one run, not stopped"
    with sqlite3.connect(journal) as db:
        notes = [n for (n,) in db.execute("SELECT note FROM notes WHERE attempt_id = ?",
                                          (f"{counter.task_id}.1",))]
    tried = [(where, state) for where, state, _ in attempts_of(journal, counter.task_id)]
    assert tried == [("kappa", "succeeded")], tried
    assert len([n for n in notes if "could not be read: JSONDecodeError" in n]) == 1, notes  # said once
