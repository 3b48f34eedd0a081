"""Container tasks on the local site: the real Docker engine, the containers/task image, docker-py."""

from __future__ import annotations

import os
import platform
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import metasched as ms

pytestmark = [pytest.mark.docker, pytest.mark.ray]


@pytest.fixture
def campaign(task_image: str, ray_local: None, tmp_path: Path) -> Iterator[ms.Campaign]:
    site = ms.LocalSite("local", cores=2, container_runtimes=("docker",), work_dir=str(tmp_path / "site"),
                        container_binds=(str(tmp_path),))
    with ms.Campaign(f"containers-{os.getpid()}-{tmp_path.name}", sites=[site], journal=tmp_path / "c.db",
                     data_threshold=100_000) as c:
        yield c


def _containers_of(task_id: str) -> list[str]:
    out = subprocess.run(["docker", "ps", "--all", "--quiet", "--filter", f"label=metasched.task={task_id}"],
                         capture_output=True, text=True, check=True, timeout=60)
    return out.stdout.split()


def test_command_runs_in_the_image_and_leaves_its_logs(campaign: ms.Campaign, task_image: str,
                                                       tmp_path: Path) -> None:
    future = campaign.command(["metasched-image-info"], container=ms.Image(task_image))
    result = future.result(timeout=120)
    assert result.stdout.startswith("os=debian-bookworm python=3.11.")
    assert _containers_of(future.task_id) == [], "the container was not removed"
    logs = list((tmp_path / "site").glob("*/container.out"))
    assert [p.read_text() for p in logs] == [result.stdout]
    # and the same command does not exist outside the image: it really ran inside
    outside = campaign.command(["metasched-image-info"])
    assert isinstance(outside.exception(timeout=120), ms.RemoteTaskError)


def test_python_task_runs_with_the_image_python(campaign: ms.Campaign, task_image: str) -> None:
    @campaign.task(container=ms.Image(task_image))
    def where(x: int) -> tuple[str, str, int]:
        import platform as p
        from pathlib import Path as P

        release = dict(line.partition("=")[::2] for line in P("/etc/os-release").read_text().splitlines())
        return p.python_version(), release["VERSION_CODENAME"], x * 2

    version, codename, doubled = where(21).result(timeout=120)
    assert (codename, doubled) == ("bookworm", 42)
    assert version.startswith("3.11.")
    assert version != platform.python_version()


def test_big_results_go_through_the_mounted_store(campaign: ms.Campaign, task_image: str,
                                                  tmp_path: Path) -> None:
    @campaign.task(container=ms.Image(task_image))
    def blob(n: int) -> bytes:
        return bytes(range(256)) * (n // 256)

    @campaign.task
    def size(data: bytes) -> int:
        return len(data)

    made = blob(2_000_000)
    assert size(made).result(timeout=120) == 1_999_872
    db = sqlite3.connect(tmp_path / "c.db")
    try:
        sizes = [size for (size,) in db.execute("SELECT size FROM objects")]
    finally:
        db.close()
    assert len(sizes) == 1
    assert sizes[0] > 1_999_872


def test_limits_come_from_the_task_resources(campaign: ms.Campaign, task_image: str) -> None:
    future = campaign.command(["python3", "-c", _READ_LIMITS], container=ms.Image(task_image), cores=1,
                              memory="256M")
    memory, quota, period = (int(v) for v in future.result(timeout=120).stdout.split())
    assert memory == 256 * 2**20
    assert quota / period == 1.0


# The container's own limits, from cgroup v2 files or else v1 ones (this machine's Docker uses v1).
_READ_LIMITS = """
from pathlib import Path
v2 = Path("/sys/fs/cgroup/memory.max")
if v2.exists():
    print(v2.read_text(), Path("/sys/fs/cgroup/cpu.max").read_text())
else:
    for name in ("memory/memory.limit_in_bytes", "cpu/cpu.cfs_quota_us", "cpu/cpu.cfs_period_us"):
        print(Path("/sys/fs/cgroup", name).read_text())
"""


def test_python_version_mismatch_fails_before_the_task_runs(campaign: ms.Campaign, task_image: str,
                                                            tmp_path: Path) -> None:
    marker = tmp_path / "ran"

    @campaign.task(container=ms.Image(task_image, python="pypy3"))
    def touch() -> None:
        marker.touch()

    start = time.monotonic()
    error = touch().exception(timeout=120)
    assert isinstance(error, ms.RemoteTaskError)
    assert error.error_type == "ContainerError"
    assert "has Python 3.9 (pypy3)" in str(error)
    assert "driver runs Python 3.11" in str(error)
    assert not marker.exists()
    assert time.monotonic() - start < 60


def test_missing_image_fails_at_once_with_how_to_fix(campaign: ms.Campaign) -> None:
    future = campaign.command(["true"], container=ms.Image("metasched/no-such-image:1"))
    error = future.exception(timeout=60)
    assert isinstance(error, ms.RemoteTaskError)
    assert "'metasched/no-such-image:1'" in str(error)
    assert "never pulls" in str(error)


def test_wrong_digest_is_refused(campaign: ms.Campaign, task_image: str) -> None:
    wrong = "sha256:" + "0" * 64
    error = campaign.command(["true"], container=ms.Image(task_image, digest=wrong)).exception(timeout=60)
    assert isinstance(error, ms.RemoteTaskError)
    assert f"asks for {wrong}" in str(error)


def test_cancel_removes_the_container(campaign: ms.Campaign, task_image: str) -> None:
    future = campaign.command(["sleep", "300"], container=ms.Image(task_image))
    deadline = time.monotonic() + 60
    while not _containers_of(future.task_id) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _containers_of(future.task_id), "the container never started"
    assert future.cancel()
    assert isinstance(future.exception(timeout=60), ms.TaskCancelledError)
    deadline = time.monotonic() + 30
    while _containers_of(future.task_id) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _containers_of(future.task_id) == []


def test_sites_without_a_runtime_are_not_chosen(task_image: str, ray_local: None, tmp_path: Path) -> None:
    with ms.Campaign(f"no-runtime-{os.getpid()}", sites=[ms.LocalSite("local", cores=2)],
                     journal=tmp_path / "n.db") as c:
        error = c.command(["true"], container=ms.Image(task_image)).exception(timeout=60)
    assert isinstance(error, ms.PlacementError)
    assert "needs a container runtime for image" in str(error)
    assert "offers none" in str(error)


def test_campaign_file_with_container_tasks(task_image: str, ray_local: None, tmp_path: Path) -> None:
    """examples/containers.toml, run by the CLI: its tasks print the image's OS and compute in it."""
    from typer.testing import CliRunner

    from metasched.cli import app

    example = Path(__file__).parents[2] / "examples" / "containers.toml"
    name = f"containers-file-{os.getpid()}"
    path = tmp_path / "c.toml"
    path.write_text(example.read_text().replace('name = "containers-example"', f'name = "{name}"'))
    runner = CliRunner()
    result = runner.invoke(app, ["run", str(path)])
    assert result.exit_code == 0, result.output
    logs = runner.invoke(app, ["logs", str(tmp_path / f"{name}.db"), "where-2"])
    assert "os=debian-bookworm python=3.11." in logs.output
    squares = runner.invoke(app, ["logs", str(tmp_path / f"{name}.db"), "square-3"])
    assert "9" in squares.output.split()
