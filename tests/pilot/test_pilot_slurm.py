"""Pilot mode at a real Slurm site: Ray worker nodes in batch jobs, joined to the campaign's head.

Everything here runs in the loopback-only namespace (see conftest.py); the head listens on 127.0.0.2 and
each pilot node on its own 127.x address.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import slurmsite

import metasched as ms
from metasched.journal import Journal
from metasched.scheduler.blocks import journaled_blocks
from metasched.sites.base import BlockRecord
from tests.integration.cooperative import accumulate
from tests.integration.processes import kill_tree, wait_for
from tests.pilot.listeners import listening

pytestmark = [pytest.mark.slurm, pytest.mark.pilot]
HEAD_IP = "127.0.0.2"
SCRIPT = Path(__file__).parent / "scripts" / "pilot_campaign.py"
_names = itertools.count()


def pilot_site(info: slurmsite.SiteInfo, name: str = "", **options: Any) -> ms.SlurmSite:
    """A pilot site on `info`'s cluster (called `name`, if not the cluster's)."""
    settings: dict[str, Any] = {"cores_per_node": 2, "block_walltime": 900.0, "poll_interval": 0.5,
                                "block_object_store_mb": 100, "idle_timeout": 300.0,
                                "python": f"{sys.prefix}/bin/python", **options}
    return ms.SlurmSite(name or info.name, login=tuple(info.login), slurm_conf=info.slurm_conf,
                        shared_dir=info.shared_dir, mode="pilot", **settings)


def block_jobs(info: slurmsite.SiteInfo, state: str = "") -> dict[str, str]:
    """Pilot block jobs in the site's queue: {job id: state}."""
    argv = ["squeue", "--noheader", "--format=%i %T %j", *([f"--states={state}"] if state else [])]
    out = subprocess.run(info.client(argv), capture_output=True, text=True, timeout=60, check=True).stdout
    return {job: st for job, st, name in (line.split() for line in out.splitlines())
            if name.startswith(f"ms-{info.name}-pilot-")}


def joined_blocks(journal: Path) -> list[BlockRecord]:
    """The blocks the campaign's journal shows joined (state "running")."""
    stored = Journal(journal).open(read_only=True)
    try:
        return [b for records in journaled_blocks(stored).values() for b in records if b.state == "running"]
    finally:
        stored.close()


def running_in(journal: Path, tasks: list[Any]) -> list[str]:
    """The job ids (blocks) where the journal shows attempts of these tasks' futures handed to a block."""
    wanted = {f.task_id for f in tasks}
    stored = Journal(journal).open(read_only=True)
    try:
        return sorted({a.native_id for a in stored.live_attempts() if a.native_id and a.task_id in wanted})
    finally:
        stored.close()


def blocks_and_losses(journal: Path) -> str:
    """The journal's blocks and lost attempts, for a failing assertion's message."""
    stored = Journal(journal).open(read_only=True)
    try:
        lost = [a for a in stored.attempt_times() if a[4] == "lost"]
        return f"blocks {journaled_blocks(stored)}; lost attempts {lost}"
    finally:
        stored.close()


def campaign(tmp_path: Path, *sites: ms.SlurmSite) -> ms.Campaign:
    return ms.Campaign(f"pilot-{next(_names)}", sites=list(sites), journal=tmp_path / "c.db",
                       ray_node_ip=HEAD_IP)


def test_blocks_run_tasks_and_a_cancelled_block_loses_no_task(
        kappa: slurmsite.SiteInfo, host_listeners: set[tuple[str, str, int]], tmp_path: Path) -> None:
    site = pilot_site(kappa, init_blocks=2, max_blocks=2)
    with campaign(tmp_path, site) as c:

        @c.task(retries=0)
        def square(x: int, pause: float) -> int:
            time.sleep(pause)
            return x * x

        wait_for(lambda: len(joined_blocks(tmp_path / "c.db")) == 2, 120, "both blocks to join")
        short = [square(i, 0.005) for i in range(5000)]
        assert [f.result(timeout=180) for f in short[:500]] == [i * i for i in range(500)]
        long = [square(100_000 + i, 8.0) for i in range(4)]
        assert listening() == host_listeners, "pilot mode opened a port in the machine's own namespace"
        wait_for(lambda: running_in(tmp_path / "c.db", long), 120, "a long task to be handed to a block")
        victim = running_in(tmp_path / "c.db", long)[0]  # a block running a long task (8 s)
        subprocess.run(kappa.client(["scancel", victim]), check=True, timeout=60)
        assert [f.result(timeout=300) for f in short] == [i * i for i in range(5000)]
        assert [f.result(timeout=300) for f in long] == [(100_000 + i) ** 2 for i in range(4)]
        with pytest.raises(ms.PlacementError, match="blocks there leave at most"):
            c.task(walltime=site.block_walltime)(abs)(-1).result(timeout=60)
    wait_for(lambda: not block_jobs(kappa), 60, "the closed campaign's blocks to leave the queue")
    journal = Journal(tmp_path / "c.db").open(read_only=True)
    try:
        counts = journal.terminal_transition_counts()
        attempts = journal.attempt_times()
    finally:
        journal.close()
    assert set(counts.values()) == {1}, "a task reached a terminal state more than once"
    lost = [a for a in attempts if a[4] == "lost"]
    assert lost, f"the cancelled block ran a long task: it is lost; {blocks_and_losses(tmp_path / 'c.db')}"
    assert all(a[3] == "kappa" for a in attempts)
    assert listening() == host_listeners
    shown = subprocess.run([f"{sys.prefix}/bin/metasched", "status", str(tmp_path / "c.db"), "--json"],
                           capture_output=True, text=True, timeout=60, check=False)
    assert shown.returncode == 1, "exit 1: one task failed (the one no block had time for)"
    blocks = json.loads(shown.stdout)["blocks"]["kappa"]
    # the cancelled block, the other one, and a replacement if the work still queued then needed one
    assert {b["state"] for b in blocks} == {"ended"}, blocks
    assert len(blocks) in (2, 3), blocks
    assert victim in {b["job_id"] for b in blocks}, blocks
    details = {b["job_id"]: b["detail"] for b in blocks}
    assert "cancelled outside metasched" in details.pop(victim), blocks
    assert set(details.values()) == {"deleted when the campaign closed"}, blocks


def test_a_block_of_two_nodes_runs_tasks_on_both(
        kappa: slurmsite.SiteInfo, tmp_path: Path) -> None:
    site = pilot_site(kappa, init_blocks=1, max_blocks=1, nodes_per_block=2)
    with campaign(tmp_path, site) as c:

        @c.task(retries=0)
        def node(pause: float) -> str:
            import os

            time.sleep(pause)
            return os.environ.get("SLURMD_NODENAME", "")

        wait_for(lambda: [b.nodes for b in joined_blocks(tmp_path / "c.db")] == [2], 120,
                 "both nodes of the block to join")
        # 2 cores per node: 8 tasks of 2 s at once need both nodes of the block
        where = [f.result(timeout=180) for f in [node(2.0) for _ in range(8)]]
        assert len(set(where)) == 2, where
        assert all(where), "a task did not run in the block's Slurm job"
    journal = Journal(tmp_path / "c.db").open(read_only=True)
    try:
        assert set(journal.terminal_transition_counts().values()) == {1}
        assert {a[3] for a in journal.attempt_times()} == {"kappa"}
    finally:
        journal.close()
    wait_for(lambda: not block_jobs(kappa), 60, "the closed campaign's block to leave the queue")


def test_the_first_block_queues_while_the_head_starts_and_the_scheduler_adopts_it(
        kappa: slurmsite.SiteInfo, host_listeners: set[tuple[str, str, int]], tmp_path: Path) -> None:
    from ray._private import state

    site = pilot_site(kappa, init_blocks=1, max_blocks=1)
    with campaign(tmp_path, site) as c:
        head_up = min(job["StartTime"] for job in state.jobs()) / 1000  # this driver joined the running head
        assert c.task(retries=0)(abs)(-3).result(timeout=180) == 3
        assert len(block_jobs(kappa)) == 1, "the scheduler submitted a block beside the adopted one"
        stored = Journal(tmp_path / "c.db").open(read_only=True)
        try:
            blocks = journaled_blocks(stored)["kappa"]
        finally:
            stored.close()
        assert [b.state for b in blocks] == ["running"], blocks
        submitted = blocks[0].submitted_at
        assert submitted is not None
        assert submitted < head_up, f"block submitted {submitted - head_up:.1f} s after the head was up"
        assert listening() == host_listeners, "the head's chosen port opened in the machine's own namespace"
    wait_for(lambda: not block_jobs(kappa), 60, "the closed campaign's block to leave the queue")


def test_a_pilot_site_that_does_not_answer_fails_the_start_once_and_leaves_no_block(
        kappa: slurmsite.SiteInfo, tmp_path: Path) -> None:
    asked = tmp_path / "asked"
    # every command at "gone" goes through this login, which notes it and fails (a site that does not answer)
    login = ("sh", "-c", f'echo "$*" >> {asked}; exit 255', "login")
    gone = ms.SlurmSite("gone", login=login, shared_dir=str(tmp_path), mode="pilot")
    with pytest.raises(ms.SiteAgentError, match="site gone") as raised:
        campaign(tmp_path, pilot_site(kappa, init_blocks=1, max_blocks=1), gone).start()
    assert raised.value.site == "gone"
    programs = [line.split()[1] for line in asked.read_text().splitlines()]  # env PROGRAM ...
    assert programs.count("id") == 1, f"the site was asked again after it failed the start: {programs}"
    import ray  # not before: the campaign imports it for a joinable head

    assert not ray.is_initialized(), "the campaign that did not start left its Ray head running"
    wait_for(lambda: not block_jobs(kappa), 60, "the block submitted before the failure to be deleted")


RAY_FIRST = """
import json, sys
import ray  # before metasched, as a notebook or another library may
import metasched as ms
site = ms.SlurmSite(**json.loads(sys.argv[1]))
with ms.Campaign("ray-first", sites=[site], journal=sys.argv[2], ray_node_ip="127.0.0.2") as c:
    print("RESULT", c.task(retries=0)(abs)(-3).result(timeout=180))
"""


def test_a_pilot_campaign_starts_in_a_process_that_imported_ray_first(
        kappa: slurmsite.SiteInfo, tmp_path: Path) -> None:
    # Ray reads its token mode at import: without reading it again, the head wanted a token the driver
    # did not send, and ray.init failed after ~40 s ("Authentication token is missing or incorrect")
    site = {"name": kappa.name, "login": kappa.login, "slurm_conf": kappa.slurm_conf,
            "shared_dir": kappa.shared_dir, "python": f"{sys.prefix}/bin/python", "mode": "pilot",
            "cores_per_node": 2, "init_blocks": 1, "max_blocks": 1, "block_object_store_mb": 100,
            "poll_interval": 0.5}
    env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}
    ran = subprocess.run([sys.executable, "-c", RAY_FIRST, json.dumps(site), str(tmp_path / "c.db")],
                         capture_output=True, text=True, timeout=300, env=env, check=False)
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert "RESULT 3" in ran.stdout
    wait_for(lambda: not block_jobs(kappa), 60, "the closed campaign's block to leave the queue")


def test_blocks_scale_up_with_work_and_leave_when_idle(kappa: slurmsite.SiteInfo, tmp_path: Path) -> None:
    site = pilot_site(kappa, init_blocks=0, min_blocks=0, max_blocks=2, idle_timeout=5.0)
    with campaign(tmp_path, site) as c:
        assert not block_jobs(kappa), "init_blocks=0: no block before there is work"

        @c.task
        def nap(x: int) -> int:
            time.sleep(0.5)
            return x

        futures = [nap(i) for i in range(40)]
        wait_for(lambda: len(block_jobs(kappa)) == 2, 60, "a burst of work to start max_blocks blocks")
        assert sorted(f.result(timeout=300) for f in futures) == list(range(40))
        wait_for(lambda: not block_jobs(kappa), 90, "idle blocks to be cancelled down to min_blocks=0")


def test_a_pilot_that_cannot_join_fails_the_tasks_with_its_own_words(
        kappa: slurmsite.SiteInfo, tmp_path: Path) -> None:
    # The nodes' Debian python3 has no Ray: `ray start` cannot even be imported there.
    site = pilot_site(kappa, init_blocks=1, max_blocks=1, python="/usr/bin/python3")
    with campaign(tmp_path, site) as c:
        future = c.task(retries=0)(abs)(-3)
        with pytest.raises(ms.RemoteTaskError, match="No module named 'ray'") as raised:
            future.result(timeout=240)
        assert "pilot blocks in a row ended without joining" in str(raised.value)
    wait_for(lambda: not block_jobs(kappa), 60, "the failed blocks to leave the queue")


def test_a_resumed_campaign_deletes_the_blocks_of_its_killed_scheduler(
        kappa: slurmsite.SiteInfo, tmp_path: Path) -> None:
    journal = tmp_path / "crash.db"
    log = Path(kappa.shared_dir) / f"ran-{tmp_path.name}.log"  # written by the tasks, on the compute nodes
    site = {"name": kappa.name, "login": kappa.login, "slurm_conf": kappa.slurm_conf,
            "shared_dir": kappa.shared_dir, "python": f"{sys.prefix}/bin/python", "mode": "pilot",
            "cores_per_node": 2, "init_blocks": 1, "max_blocks": 1, "block_object_store_mb": 100,
            "poll_interval": 0.5}
    run = subprocess.Popen([sys.executable, str(SCRIPT), str(journal), str(log), "run", json.dumps(site)],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           start_new_session=True)
    try:
        wait_for(lambda: log.exists() and len(log.read_text().splitlines()) >= 4, 180,
                 "the first tasks to finish in a pilot block")
    finally:
        kill_tree(run.pid)
    output = run.stdout.read() if run.stdout else ""
    assert "FINISHED BEFORE THE KILL" not in output
    left = block_jobs(kappa)
    assert left, "the killed scheduler's block is still queued or running"
    journal_now = Journal(journal).open(read_only=True)
    try:
        journaled = journaled_blocks(journal_now)["kappa"]
    finally:
        journal_now.close()
    assert {b.job_id for b in journaled if b.state != "ended"} == set(left)

    resumed = subprocess.run([sys.executable, str(SCRIPT), str(journal), str(log), "resume"],
                             capture_output=True, text=True, timeout=600, check=False)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr[-3000:]
    assert f"RESUMED 24 {sum(i * 10 for i in range(24))}" in resumed.stdout
    assert not set(left) & set(block_jobs(kappa)), "the earlier scheduler's block was not deleted"
    journal_now = Journal(journal).open(read_only=True)
    try:
        counts = journal_now.terminal_transition_counts()
        blocks = journaled_blocks(journal_now)["kappa"]
    finally:
        journal_now.close()
    assert set(counts.values()) == {1}, "a task reached a terminal state more than once"
    earlier = [b for b in blocks if b.job_id in left]
    assert earlier, "the earlier scheduler's blocks stay in the journal's record"
    assert {b.detail for b in earlier} == {"deleted when the campaign resumed"}


def test_big_results_travel_through_the_sites_store(kappa: slurmsite.SiteInfo, tmp_path: Path) -> None:
    site = pilot_site(kappa, init_blocks=1, max_blocks=1)
    with campaign(tmp_path, site) as c:

        @c.task
        def blob(n: int) -> bytes:
            return bytes(range(256)) * (n // 256)

        @c.task
        def size(data: bytes) -> int:
            return len(data)

        made = blob(1_000_000)  # over the campaign's data threshold: stored at the site, passed as a proxy
        assert size(made).result(timeout=240) == 999_936
        assert made.result(timeout=60) == bytes(range(256)) * (1_000_000 // 256)
        objects = Journal(tmp_path / "c.db").open(read_only=True)
        try:
            stored = objects.objects()
        finally:
            objects.close()
        assert any(size_ >= 999_936 for _, _, size_, _, _, _ in stored), "the result went through a store"


def test_batch_and_pilot_side_by_side_at_one_cluster(kappa: slurmsite.SiteInfo, tmp_path: Path) -> None:
    pilot = pilot_site(kappa, init_blocks=1, max_blocks=1)
    pilot = dataclasses.replace(pilot, name="kappa-pilot")
    batch = ms.SlurmSite("kappa-batch", login=tuple(kappa.login), slurm_conf=kappa.slurm_conf,
                         shared_dir=kappa.shared_dir, python=f"{sys.prefix}/bin/python", poll_interval=0.5)
    with ms.Campaign("pilot-and-batch", sites=[batch, pilot], journal=tmp_path / "c.db",
                     ray_node_ip=HEAD_IP) as c:
        job = c.command(["sh", "-c", "echo $SLURM_JOB_ID"], sites=["kappa-batch"])

        @c.task(sites=["kappa-pilot"])
        def job_id(i: int) -> str:
            import os

            return os.environ["SLURM_JOB_ID"]

        in_blocks = {f.result(timeout=240) for f in [job_id(i) for i in range(20)]}
        alone = job.result(timeout=240).stdout.strip()
    assert len(in_blocks) == 1, "every short task ran in the one block"
    assert alone, "the batch task ran in a Slurm job"
    assert alone not in in_blocks, "the batch task ran as a job of its own"


def test_a_cooperative_task_in_a_block_can_be_cancelled_after_it_saved(
        kappa: slurmsite.SiteInfo, tmp_path: Path) -> None:
    # Its saves reach the agent as updates of a running attempt; the attempt stays in its block's books,
    # so a cancel still reaches its Ray task.
    beats = Path(kappa.shared_dir) / f"beats-{time.monotonic_ns()}"
    site = pilot_site(kappa, init_blocks=1, max_blocks=1)
    with campaign(tmp_path, site) as c:

        @c.task(checkpoint="cooperative")
        def beating(path: str, ckpt: ms.Checkpoint) -> int:
            state = ckpt.load({"i": 0})
            while state["i"] < 3000:
                state["i"] += 1
                with open(path, "a") as out:
                    out.write(".")
                time.sleep(0.05)
                ckpt.save(state)
            return int(state["i"])

        future = beating(str(beats))
        wait_for(lambda: beats.exists() and beats.stat().st_size >= 60, 180, "the task to save for 3 s")
        c.cancel(future)
        time.sleep(3)
        size = beats.stat().st_size
        time.sleep(3)
        assert beats.stat().st_size == size, "the cancelled task went on running in its block"


def test_a_cooperative_task_saves_before_its_block_ends_and_goes_on_in_the_next(
        kappa: slurmsite.SiteInfo, tmp_path: Path) -> None:
    # pilots leave 90 s into a block; a cooperative task stops at its first save past 40 s (lead 50 s), and
    # is handed only to a block with 80 s left (the lead and MIN_SLICE_S): the next block, not this one.
    site = pilot_site(kappa, init_blocks=1, max_blocks=2, block_walltime=120.0, signal_lead_s=50)
    with campaign(tmp_path, site) as c:

        task = c.task(checkpoint="cooperative", walltime=3600.0)(accumulate)  # longer than a block
        future = task(500, 0.1)  # 50 s of work
        total, _, began, last_block = future.result(timeout=300)
    assert total == sum(i * i for i in range(500))
    assert len(began) == 2, began
    assert began[0] == 0, began
    assert 0 < began[1] < 500, began  # went on from the first block's last save
    journal = Journal(tmp_path / "c.db").open(read_only=True)
    try:
        tried = [(a[3], a[4]) for a in journal.attempt_times() if a[1] == future.task_id]
        blocks = journaled_blocks(journal)["kappa"]
    finally:
        journal.close()
    with sqlite3.connect(tmp_path / "c.db") as db:
        details = [d for (d,) in db.execute("SELECT detail FROM transitions WHERE task_id = ?",
                                            (future.task_id,))]
    assert tried == [("kappa", "checkpointed"), ("kappa", "succeeded")], tried
    assert any(d.startswith("walltime checkpoint (cooperative)") for d in details), details
    assert len({b.job_id for b in blocks}) == 2, blocks
    assert last_block in {b.job_id for b in blocks}, blocks
    wait_for(lambda: not block_jobs(kappa), 60, "the closed campaign's blocks to leave the queue")
