"""The CLI end to end (subprocesses) on the containerized Slurm sites: run, status, cancel, report."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
import slurmsite

from tests.integration.cli_helpers import METASCHED, cli

pytestmark = [pytest.mark.slurm, pytest.mark.ray]


def test_campaign_file_across_alpha_and_beta(alpha: slurmsite.SiteInfo, beta: slurmsite.SiteInfo,
                                             tmp_path: Path) -> None:
    name = f"clisites-{os.getpid()}"
    path = tmp_path / "c.toml"
    sites = "".join(f'\n[[sites]]\nkind = "slurm"\nname = "{s.name}"\nslurm_conf = "{s.slurm_conf}"\n'
                    f'shared_dir = "{s.shared_dir}"\npoll_interval = 0.3\nmax_jobs = 6\n'
                    for s in (alpha, beta))
    path.write_text(f"""
[campaign]
name = "{name}"
{sites}
[[tasks]]
name = "work-{{i}}"
command = ["sh", "-c", "echo $SLURM_CLUSTER_NAME"]
sweep = {{ i = {{ range = [0, 16] }} }}

[[tasks]]
name = "long"
command = ["sleep", "300"]
""")
    run = subprocess.Popen([*METASCHED, "run", "--headless", str(path)], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    journal = tmp_path / f"{name}.db"
    deadline = time.monotonic() + 120
    while True:
        status = cli("status", str(journal), "--json", timeout=60)
        counts = json.loads(status.stdout)["sites"] if status.stdout.startswith("{") else {}
        done = sum(by.get("done", 0) for by in counts.values())
        if done >= 16:
            break
        assert time.monotonic() < deadline, status.stdout + status.stderr
        time.sleep(0.5)
    cancel = cli("cancel", name, "long", timeout=60)
    assert cancel.returncode == 0
    out, _ = run.communicate(timeout=120)
    assert run.returncode == 1, out  # the cancelled task counts as not done
    counts = json.loads(cli("status", name, "--json", timeout=60).stdout)["sites"]
    assert counts["alpha"].get("done", 0) > 0
    assert counts["beta"].get("done", 0) > 0
    assert sum(by.get("done", 0) for by in counts.values()) == 16
    assert sum(by.get("cancelled", 0) for by in counts.values()) == 1
    logs = cli("logs", name, "work-0", timeout=60)
    assert logs.stdout.split("stdout:")[1].split()[0] in ("alpha", "beta")
    report = cli("report", name, "--out", str(tmp_path / "rep"), timeout=120)
    assert report.returncode == 0, report.stderr
    page = (tmp_path / "rep" / "index.html").read_text()
    assert "data-attempt-bars='17'" in page
    assert "waits.png" in page  # Slurm sites report when jobs start running
