"""Pilot mode through the PBS dialect (Torque-style wrappers over Slurm): blocks are qsub jobs."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import slurmsite

import metasched as ms
from tests.integration.pbs_sites import torque_site
from tests.integration.processes import wait_for
from tests.pilot.test_pilot_slurm import HEAD_IP

pytestmark = [pytest.mark.slurm, pytest.mark.pilot]


def queued_blocks(info: slurmsite.SiteInfo) -> list[str]:
    """Pilot block jobs qstat lists (any state but completed)."""
    out = subprocess.run(info.login + ["env", f"SLURM_CONF={info.slurm_conf}", "qstat"], capture_output=True,
                         text=True, timeout=60, check=True).stdout
    return [line.split()[0] for line in out.splitlines()
            if f"ms-{info.name}-pilot" in line and line.split()[4:5] != ["C"]]


def test_torque_blocks_run_python_and_command_tasks(mu: slurmsite.SiteInfo, tmp_path: Path) -> None:
    site = torque_site(mu, mode="pilot", python=f"{sys.prefix}/bin/python", cores_per_node=2,
                       init_blocks=1, max_blocks=1, block_walltime=900.0, block_object_store_mb=100,
                       poll_interval=0.5)
    with ms.Campaign("pilot-torque", sites=[site], journal=tmp_path / "c.db", ray_node_ip=HEAD_IP) as c:

        @c.task
        def where(i: int) -> tuple[int, str]:
            import os

            return i, os.environ.get("PBS_JOBID", "")

        started = time.monotonic()
        results = [where(i) for i in range(60)]
        echoed = c.command(["echo", "pilot"], cores=1)
        values = [f.result(timeout=240) for f in results]
        assert [i for i, _ in values] == list(range(60))
        assert len({job for _, job in values}) == 1, "every task ran inside the one block"
        assert values[0][1], "tasks run inside the block's job (PBS_JOBID from spank_pbs)"
        command = echoed.result(timeout=60)
        assert isinstance(command, ms.CommandResult)
        assert command.stdout == "pilot\n"
        assert time.monotonic() - started < 180
        assert queued_blocks(mu)
    wait_for(lambda: not queued_blocks(mu), 60, "the closed campaign's block to leave qstat")
