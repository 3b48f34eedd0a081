"""Pilot mode through the Grid Engine dialect: blocks are qsub jobs of a Grid Engine 8.1.9 cell."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import gesite
import pytest

import metasched as ms
from metasched.journal import Journal
from metasched.live import blocks_line
from metasched.report import write_report
from metasched.scheduler.blocks import journaled_blocks
from tests.integration.processes import wait_for
from tests.pilot.listeners import listening
from tests.pilot.test_pilot_slurm import HEAD_IP, running_in

pytestmark = [pytest.mark.docker, pytest.mark.pilot]


def running_blocks(journal: Path) -> list[str]:
    """Job ids of the blocks the campaign's journal shows running (joined)."""
    stored = Journal(journal).open(read_only=True)
    try:
        return [b.job_id for b in journaled_blocks(stored).get("nu", []) if b.state == "running"]
    finally:
        stored.close()


def test_a_block_deleted_with_qdel_loses_no_task(
        nu: gesite.GESiteInfo, host_listeners: set[tuple[str, str, int]], tmp_path: Path) -> None:
    site = ms.GridEngineSite("nu", shared_dir=nu.shared_dir, login=tuple(nu.login), mode="pilot",
                             python=f"{sys.prefix}/bin/python", cores_per_node=2, init_blocks=2, max_blocks=2,
                             block_object_store_mb=100, poll_interval=0.5)
    journal = tmp_path / "c.db"
    with ms.Campaign("pilot-ge", sites=[site], journal=journal, ray_node_ip=HEAD_IP) as c:

        @c.task(retries=0)
        def square(x: int, pause: float) -> int:
            time.sleep(pause)
            return x * x

        wait_for(lambda: len(running_blocks(journal)) == 2, 120, "both blocks to join")
        assert blocks_line(journal) == "pilot blocks: nu: 2 running (2 nodes joined)"  # the live display's
        short = [square(i, 0.005) for i in range(1000)]
        assert [f.result(timeout=180) for f in short[:100]] == [i * i for i in range(100)]
        long = [square(100 + i, 6.0) for i in range(4)]
        wait_for(lambda: running_in(journal, long), 120, "a long task to be handed to a block")
        victim = running_in(journal, long)[0]  # a block running a long task (6 s)
        subprocess.run([*nu.login, "qdel", victim], check=True, timeout=60, capture_output=True)
        assert [f.result(timeout=300) for f in short] == [i * i for i in range(1000)]
        assert [f.result(timeout=300) for f in long] == [(100 + i) ** 2 for i in range(4)]
        assert listening() == host_listeners, "pilot mode opened a port in the machine's own namespace"
    stored = Journal(journal).open(read_only=True)
    try:
        counts = stored.terminal_transition_counts()
        times = stored.attempt_times()
        lost = [a for a in times if a[4] == "lost"]
        blocks = journaled_blocks(stored)["nu"]
    finally:
        stored.close()
    assert set(counts.values()) == {1}, "a task reached a terminal state more than once"
    assert lost, "the deleted block was running tasks: they come back as lost attempts"
    assert {b.state for b in blocks} == {"ended"}
    assert victim in {b.job_id for b in blocks}
    for block in blocks:  # each block's life is journaled, for the report's block rows
        assert block.submitted_at is not None
        assert block.ended_at is not None
        assert block.joined_at is None or block.submitted_at <= block.joined_at <= block.ended_at
    assert sum(b.joined_at is not None for b in blocks) >= 2
    assert blocks_line(journal) == "pilot blocks: nu: none live (0 nodes joined)"
    page = write_report(journal, tmp_path / "report").read_text()
    assert f"data-block-bars='{len(blocks)}'" in page
    in_blocks = [a for a in times if a[3] == "nu" and a[9] in {b.job_id for b in blocks}]
    assert len(in_blocks) >= 1004, "every task ran in a block (the lost ones twice)"
    assert f"data-attempts-in-blocks='{len(in_blocks)}'" in page  # drawn inside their block's row
