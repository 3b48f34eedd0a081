"""Batch-mode throughput on a containerized Slurm site: metasched vs a raw sbatch loop, side by side.

    .venv/bin/python benchmarks/slurm_throughput.py [--tasks 200] [--rounds 2] [--site alpha]

Brings the site up (ci/slurm-cluster) if needed. Raw: `sbatch --wrap true` N times, then poll squeue
every 0.2 s until every job has left the PENDING/RUNNING states. metasched: a campaign with one
SlurmSite (batch mode, poll_interval=0.2, max_jobs=N) running N command tasks `true` and waiting for
every future (each job's worker writes its outcome to the shared filesystem; every transition is
journaled). Time is from the first submission to the last completion.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "ci"), str(ROOT / "ci" / "slurm-cluster")]

import slurmsite  # noqa: E402
from campaign_rate import side_by_side, tasks_per_second  # noqa: E402

import metasched as ms  # noqa: E402
from metasched.runtime import init_embedded_ray  # noqa: E402


def raw_sbatch_loop(site: slurmsite.SiteInfo, n: int, workdir: Path) -> float:
    env = site.client_env()
    start = time.perf_counter()
    ids = []
    for _ in range(n):
        out = subprocess.run(["sbatch", "--parsable", f"--chdir={workdir}", "--output=/dev/null",
                              "--wrap", "true"], env=env, capture_output=True, text=True, check=True,
                             timeout=60)
        ids.append(out.stdout.strip().split(";")[0])
    wanted = set(ids)
    while True:
        out = subprocess.run(["squeue", "--noheader", "--states=all", "--format=%i|%T"], env=env,
                             capture_output=True, text=True, check=True, timeout=60)
        live = {line.split("|")[0] for line in out.stdout.splitlines()
                if line.split("|")[1] in ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING")}
        if not live & wanted:
            return n / (time.perf_counter() - start)
        time.sleep(0.2)


def through_metasched(site: slurmsite.SiteInfo, n: int, name: str) -> float:
    slurm = ms.SlurmSite(site.name, slurm_conf=site.slurm_conf, shared_dir=site.shared_dir, poll_interval=0.2,
                         max_jobs=n)
    return tasks_per_second(name, [slurm], lambda c: [c.command(["true"]) for _ in range(n)])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--site", default="alpha")
    args = parser.parse_args()
    site = slurmsite.up(args.site)
    init_embedded_ray(num_cpus=2, resources={}, object_store_mb=256, namespace="metasched")
    workdir = Path(site.shared_dir) / "bench-raw"
    workdir.mkdir(exist_ok=True)
    side_by_side(args.rounds, lambda: raw_sbatch_loop(site, args.tasks, workdir),
                 lambda n: through_metasched(site, args.tasks, f"slurm-bench-{n}"),
                 raw_label="raw sbatch loop", ours_label="metasched batch mode", target=">= 0.90")


if __name__ == "__main__":
    main()
