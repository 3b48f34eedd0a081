"""Every attempt's output is kept: a Python task's prints when it succeeds too, a failed attempt's before
its retry; `metasched logs TASK --attempt N` shows one attempt (where, how it ended, printed, used)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import slurmsite

import metasched as ms

pytestmark = [pytest.mark.slurm, pytest.mark.ray]


def flaky(marker: str) -> str:
    """Fails the first time (the marker is not there yet), succeeds the second; prints each time."""
    if not os.path.exists(marker):
        print("first try: making the marker")
        open(marker, "w").close()
        raise RuntimeError("not this time")
    print("second try: the marker is there")
    print("a warning on stderr", file=sys.stderr)
    return "done"


def logs(journal: Path, task: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "metasched", "logs", str(journal), task, *args],
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("site", ["local", "alpha"])
def test_each_attempts_output_is_kept_and_shown_by_attempt(site: str, alpha: slurmsite.SiteInfo,
                                                          ray_local: None, tmp_path: Path) -> None:
    sites = [ms.LocalSite("local", cores=2),
             ms.SlurmSite("alpha", slurm_conf=alpha.slurm_conf, shared_dir=alpha.shared_dir,
                          poll_interval=0.3)]
    marker = Path(alpha.shared_dir) / f"marker-{os.getpid()}-{site}"  # seen by alpha's nodes and here
    marker.unlink(missing_ok=True)
    journal = tmp_path / "c.db"
    with ms.Campaign(f"outputs-{site}-{os.getpid()}", sites=sites, journal=journal) as c:
        task = c.task(name="flaky", sites=[site], retries=1)(flaky)
        assert task(str(marker)).result(timeout=180) == "done"
    shown = logs(journal, "flaky")
    assert shown.returncode == 0, shown.stderr
    assert "'done'" in shown.stdout
    assert "second try: the marker is there" in shown.stdout
    assert "a warning on stderr" in shown.stdout
    assert "first try" not in shown.stdout  # the default shows the attempt that finished the task
    first = logs(journal, "flaky", "--attempt", "1")
    assert first.returncode == 0, first.stderr
    assert "attempt 1 " in first.stdout
    assert f"at {site}" in first.stdout
    assert ": failed" in first.stdout
    assert "first try: making the marker" in first.stdout
    assert "used: " in first.stdout  # the failed attempt was measured too
    second = logs(journal, "flaky", "--attempt", "2")
    assert "second try" in second.stdout
    assert ": succeeded" in second.stdout
    missing = logs(journal, "flaky", "--attempt", "3")
    assert missing.returncode == 2
    assert "has no attempt 3 (it has 2)" in missing.stderr
    marker.unlink(missing_ok=True)
