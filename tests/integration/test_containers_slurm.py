"""Container tasks on a Slurm site with Apptainer (delta: Slurm 26.05 + Apptainer 1.4.5 from sid), next
to the same tasks on the local site's Docker engine: same image, same results; and at delta reached only
over SSH."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import slurmsite

import metasched as ms

pytestmark = [pytest.mark.slurm, pytest.mark.docker, pytest.mark.ray]


def delta_site(info: slurmsite.SiteInfo) -> ms.SlurmSite:
    return ms.SlurmSite("delta", slurm_conf=info.slurm_conf, shared_dir=info.shared_dir, poll_interval=0.3,
                        login=tuple(info.login), container_runtimes=("apptainer",),
                        apptainer=("apptainer", "--quiet", "exec", "--userns"))


@pytest.fixture
def campaign(delta: slurmsite.SiteInfo, ray_local: None, tmp_path: Path) -> Iterator[ms.Campaign]:
    sites = [ms.LocalSite("local", cores=2, container_runtimes=("docker",), work_dir=str(tmp_path / "site")),
             delta_site(delta)]
    with ms.Campaign(f"apptainer-{os.getpid()}-{tmp_path.name}", sites=sites, journal=tmp_path / "c.db") as c:
        yield c


def test_same_command_and_python_task_give_the_same_results_in_docker_and_apptainer(
        campaign: ms.Campaign, task_image: str, task_sif: str) -> None:
    image = ms.Image(task_image, docker=task_image, sif=task_sif)

    def inside(x: int) -> tuple[str, str, int]:
        import platform
        from pathlib import Path as P

        release = dict(line.partition("=")[::2] for line in P("/etc/os-release").read_text().splitlines())
        return platform.python_version(), release["VERSION_CODENAME"], x * x

    results: dict[str, tuple[object, object]] = {}
    for site in ("local", "delta"):
        command = campaign.command(["metasched-image-info"], container=image, sites=[site])
        python = campaign.task(container=image, sites=[site])(inside)(12)
        results[site] = (command.result(timeout=300).stdout, python.result(timeout=300))
    assert results["local"] == results["delta"]
    stdout, (version, codename, square) = results["delta"]  # type: ignore[misc]
    assert stdout.startswith("os=debian-bookworm python=3.11.")
    assert (codename, square) == ("bookworm", 144)
    assert version.startswith("3.11.")
    done = {row.site: row.done for row in campaign.status()}
    assert done == {"local": 2, "delta": 2}


def test_missing_sif_fails_at_once_saying_where(campaign: ms.Campaign, task_image: str) -> None:
    start = time.monotonic()
    image = ms.Image("ghost", sif="/var/tmp/metasched-no-such-image.sif")
    for future in (campaign.command(["true"], container=image),
                   campaign.task(container=image)(len)("abc")):
        error = future.exception(timeout=120)
        assert isinstance(error, ms.RemoteTaskError)
        assert error.error_type == "ContainerError"
        assert "/var/tmp/metasched-no-such-image.sif is not readable on node delta-c" in str(error)
    assert time.monotonic() - start < 120


def test_python_mismatch_in_apptainer_is_caught_before_the_task_runs(campaign: ms.Campaign,
                                                                     task_image: str, task_sif: str) -> None:
    image = ms.Image(task_image, sif=task_sif, python="pypy3")  # a SIF only: runs at delta
    error = campaign.task(container=image)(len)("abc").exception(timeout=120)
    assert isinstance(error, ms.RemoteTaskError)
    assert error.error_type == "ContainerError"
    assert "has Python 3.9 (pypy3)" in str(error)


def test_container_tasks_run_at_a_site_reached_over_ssh_with_the_image_and_the_data_there(
        delta: slurmsite.SiteInfo, ray_local: None, task_image: str, task_sif: str, tmp_path: Path) -> None:
    """delta reached only over SSH (its shared directory a volume this machine cannot see): the SIF is
    copied to the site as a user would, a command and a Python task run in it there, the Python task reads
    an argument the driver stored and leaves its result in the site's store, which the driver then reads
    through SSH; a SIF missing at the site fails at once naming the node."""
    import hashlib
    import shlex
    import sqlite3

    import sshlogin

    from tests.integration.ssh_sites import ssh_fields

    site_sif = f"{delta.remote_dir}/images/task.sif"
    with open(task_sif, "rb") as sif:  # what `scp task.sif delta-login:...` does
        subprocess.run(["ssh", "-F", str(sshlogin.client_config(delta.directory)), sshlogin.alias("delta"),
                        f"mkdir -p {shlex.quote(delta.remote_dir)}/images && cat > {shlex.quote(site_sif)}"],
                       stdin=sif, check=True, timeout=300)
    site = ms.SlurmSite("delta", container_runtimes=("apptainer",),
                        apptainer=("apptainer", "--quiet", "exec", "--userns"),
                        **ssh_fields(delta, slurm_conf=delta.slurm_conf))
    image = ms.Image(task_image, sif=site_sif)

    def digest_and_make(data: bytes) -> tuple[str, str, bytes]:
        import hashlib as h
        import platform

        return platform.python_version(), h.sha256(bytes(data)).hexdigest(), b"r" * 2_000_000  # (a proxy)

    argument = os.urandom(300_000)
    with ms.Campaign("apptainer-ssh", sites=[site], journal=tmp_path / "j.db") as c:
        command = c.command(["metasched-image-info"], container=image)
        python = c.task(container=image)(digest_and_make)(argument)
        ghost = c.command(["true"], container=ms.Image("ghost", sif=f"{delta.remote_dir}/no-such.sif"))
        assert command.result(timeout=300).stdout.startswith("os=debian-bookworm python=3.11.")
        version, digest, made = python.result(timeout=300)
        error = ghost.exception(timeout=120)
    assert version.startswith("3.11.")  # the image's Python, not the site's 3.14
    assert digest == hashlib.sha256(argument).hexdigest()
    assert made == b"r" * 2_000_000
    assert isinstance(error, ms.RemoteTaskError)
    assert error.error_type == "ContainerError"
    assert f"{delta.remote_dir}/no-such.sif is not readable on node delta-c" in str(error)
    db = sqlite3.connect(tmp_path / "j.db")
    origins = dict(db.execute("SELECT object_id, store_id FROM objects WHERE origin"))
    db.close()
    remote_store = f"ssh:{sshlogin.alias('delta')}:{delta.remote_dir}/.metasched/store"
    assert origins[python.task_id] == remote_store  # the result stayed at the site
    assert not Path(delta.remote_dir).exists()  # nothing was written here at the site's paths
