"""A Slurm site reached over SSH: metasched vs a raw ``ssh host sbatch`` loop, side by side, one connection.

    .venv/bin/python benchmarks/ssh_site.py [--tasks 200] [--rounds 2]

Brings the SSH test site omicron up (ci/ssh-login) if needed. Raw: a ControlMaster opened once, then
``ssh host -- sbatch --wrap true`` N times through it, then ``ssh host -- squeue`` every 0.2 s until every
job has left the PENDING/RUNNING states (no files moved: the jobs write nothing back). metasched: a
campaign with one SlurmSite (transport="ssh", poll_interval=0.2, max_jobs=N) running N command tasks
`true`: each attempt's directory is written here, sent in one tar stream per batch, and its exit status
fetched back in the poll's stream; every transition is journaled. Time is from the first submission to the
last completion. Target ratio >= 1.0 (issue 19).
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), *(str(ROOT / "ci" / sub) for sub in ("", "slurm-cluster", "ssh-login"))]

import slurmsite  # noqa: E402
import sshlogin  # noqa: E402
from campaign_rate import side_by_side, tasks_per_second  # noqa: E402

from metasched.runtime import init_embedded_ray  # noqa: E402
from tests.integration.ssh_sites import slurm_ssh_site  # noqa: E402

LIVE = ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING")


def raw_ssh_loop(site: slurmsite.SiteInfo, n: int) -> float:
    host = sshlogin.alias(site.name)
    socket = Path(tempfile.mkdtemp()) / "master"
    ssh = ["ssh", "-F", str(sshlogin.client_config(site.directory)), "-o", f"ControlPath={socket}"]
    subprocess.run([*ssh, "-o", "ControlMaster=yes", "-o", "ControlPersist=60", "-N", "-f", host], check=True,
                   timeout=30, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    env = ["env", f"SLURM_CONF={site.slurm_conf}"]  # ssh joins its arguments into one string: quote it once
    try:
        start = time.perf_counter()
        ids = []
        for _ in range(n):
            sbatch = [*env, "sbatch", "--parsable", "--chdir=/tmp", "--output=/dev/null", "--wrap", "true"]
            out = subprocess.run([*ssh, host, "--", shlex.join(sbatch)], capture_output=True, text=True,
                                 check=True, timeout=60)
            ids.append(out.stdout.strip().split(";")[0])
        wanted = set(ids)
        while True:
            squeue = [*env, "squeue", "--noheader", "--states=all", "--format=%i|%T"]
            out = subprocess.run([*ssh, host, "--", shlex.join(squeue)], capture_output=True, text=True,
                                 check=True, timeout=60)
            live = {line.split("|")[0] for line in out.stdout.splitlines() if line.split("|")[1] in LIVE}
            if not live & wanted:
                return n / (time.perf_counter() - start)
            time.sleep(0.2)
    finally:
        subprocess.run([*ssh, "-O", "exit", host], capture_output=True, timeout=30, check=False)


def through_metasched(site: slurmsite.SiteInfo, n: int, name: str) -> float:
    remote = slurm_ssh_site(site, poll_interval=0.2, max_jobs=n)
    return tasks_per_second(name, [remote], lambda c: [c.command(["true"]) for _ in range(n)])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    site = slurmsite.up("omicron", ssh=True, cpus=4)
    os.environ.setdefault("METASCHED_HOME", tempfile.mkdtemp(prefix="ssh-bench-"))
    init_embedded_ray(num_cpus=2, resources={}, object_store_mb=256, namespace="metasched")
    side_by_side(args.rounds, lambda: raw_ssh_loop(site, args.tasks),
                 lambda n: through_metasched(site, args.tasks, f"ssh-bench-{n}"),
                 raw_label="raw ssh+sbatch loop", ours_label="metasched over SSH", target=">= 1.0")


if __name__ == "__main__":
    main()
