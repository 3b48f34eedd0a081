"""Container tasks (Apptainer) in pilot blocks: batch mode's job scripts, started by Ray tasks in a block.

Site theta (Slurm 26.05 with Apptainer, sid image) in the loopback-only namespace; the SIF is built from
containers/task (Debian bookworm, Python 3.11) where theta's node reads it.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import images
import pytest
import slurmsite

import metasched as ms
from metasched.journal import Journal
from metasched.scheduler.blocks import journaled_blocks
from tests.integration.processes import running_on_nodes, wait_for

pytestmark = [pytest.mark.slurm, pytest.mark.docker, pytest.mark.pilot]
HEAD_IP = "127.0.0.2"


def inside(x: int) -> tuple[str, str, int, str]:
    """The Python version and OS release the task sees, its answer, and the batch job it runs in."""
    import os
    import platform
    from pathlib import Path as P

    release = dict(line.partition("=")[::2] for line in P("/etc/os-release").read_text().splitlines())
    return platform.python_version(), release["VERSION_CODENAME"], x * x, os.environ.get("SLURM_JOB_ID", "")


def theta_site(theta: slurmsite.SiteInfo) -> ms.SlurmSite:
    """The pilot site on theta: one block of 2 cores, Apptainer offered."""
    return ms.SlurmSite("theta", login=tuple(theta.login), slurm_conf=theta.slurm_conf,
                        shared_dir=theta.shared_dir, mode="pilot",
                        cores_per_node=2, init_blocks=1, max_blocks=1, block_walltime=900.0,
                        poll_interval=0.5, block_object_store_mb=100, python=f"{sys.prefix}/bin/python",
                        container_runtimes=("apptainer",),
                        apptainer=("apptainer", "--quiet", "exec", "--userns"))


def test_container_tasks_run_in_a_block_in_their_image(
        theta: slurmsite.SiteInfo, task_image: str, tmp_path: Path) -> None:
    sif = images.ensure_sif(task_image, Path(theta.directory) / "images").tag
    image = ms.Image(task_image, sif=sif)
    site = theta_site(theta)
    journal = tmp_path / "c.db"
    with ms.Campaign("pilot-apptainer", sites=[site], journal=journal, ray_node_ip=HEAD_IP) as c:
        command = c.command(["metasched-image-info"], container=image)
        python = c.task(container=image)(inside)(12)
        missing = c.task(container=ms.Image("gone", sif=f"{theta.shared_dir}/gone.sif"), retries=0)(inside)(1)
        stdout = command.result(timeout=300).stdout
        version, codename, square, job = python.result(timeout=300)
        with pytest.raises(ms.RemoteTaskError, match="gone.sif is not readable on node"):
            missing.result(timeout=300)
    assert stdout.startswith("os=debian-bookworm python=3.11."), stdout
    assert (codename, square) == ("bookworm", 144)
    assert version.startswith("3.11.")
    stored = Journal(journal).open(read_only=True)
    try:
        blocks = {b.job_id for b in journaled_blocks(stored)["theta"]}
    finally:
        stored.close()
    assert blocks == {job}, "the container task ran inside the one block's job, not in a job of its own"


def test_a_cancelled_container_task_in_a_block_leaves_nothing_running(
        theta: slurmsite.SiteInfo, task_image: str, tmp_path: Path) -> None:
    # A force-cancelled Ray task's worker gets SIGKILL; what its script started (apptainer exec) must end
    # with it, not run on until the block does.
    sif = images.ensure_sif(task_image, Path(theta.directory) / "images").tag
    marker = f"600.{time.monotonic_ns() % 10**6}"  # sleep's argument: seconds, and the process's mark
    nodes = [f"metasched-slurm-{node}" for node in theta.nodes]
    with ms.Campaign("pilot-apptainer-cancel", sites=[theta_site(theta)], journal=tmp_path / "c.db",
                     ray_node_ip=HEAD_IP) as c:
        sleeper = c.command(["sleep", marker], container=ms.Image(task_image, sif=sif))
        wait_for(lambda: running_on_nodes(nodes, marker), 180, "the container task to run")
        c.cancel(sleeper)
        wait_for(lambda: not running_on_nodes(nodes, marker), 30, "the cancelled task's processes to end")
        assert c.status(), "the campaign (and its block) runs on"
