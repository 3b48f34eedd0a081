"""Container tasks on a Slurm site with Apptainer (delta: Slurm 26.05 + Apptainer 1.4.5 from sid), next
to the same tasks on the local site's Docker engine: same image, same results."""

from __future__ import annotations

import os
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
