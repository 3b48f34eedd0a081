"""Throughput on the containerized Grid Engine site: metasched vs a raw qsub loop, side by side.

    .venv/bin/python benchmarks/gridengine_throughput.py [--tasks 100] [--rounds 2] [--site epsilon]

Brings the site up (ci/gridengine) if needed. Raw: `qsub -terse -b y -o /dev/null -e /dev/null true`
N times through the site's login prefix (docker exec), then `qstat -xml` every 0.2 s until none of the jobs
is listed. metasched: a campaign with one GridEngineSite (poll_interval=0.2, max_jobs=N) running N command
tasks `true` and waiting for every future (each job writes its exit status to the shared directory;
every transition is journaled). Time is from the first submission to the last completion.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "ci"), str(ROOT / "ci" / "gridengine")]

import gesite  # noqa: E402
from campaign_rate import side_by_side, tasks_per_second  # noqa: E402

import metasched as ms  # noqa: E402
from metasched.runtime import init_embedded_ray  # noqa: E402


def raw_qsub_loop(site: gesite.GESiteInfo, n: int) -> float:
    start = time.perf_counter()
    ids = set()
    for _ in range(n):
        out = subprocess.run([*site.login, "qsub", "-terse", "-b", "y", "-o", "/dev/null", "-e", "/dev/null",
                              "true"], capture_output=True, text=True, check=True, timeout=60)
        ids.add(out.stdout.strip())
    while True:
        out = subprocess.run([*site.login, "qstat", "-xml"], capture_output=True, text=True, check=True,
                             timeout=60)
        if not ids & set(re.findall(r"<JB_job_number>(\d+)</JB_job_number>", out.stdout)):
            return n / (time.perf_counter() - start)
        time.sleep(0.2)


def through_metasched(site: gesite.GESiteInfo, n: int, name: str) -> float:
    ge = ms.GridEngineSite(site.name, shared_dir=site.shared_dir, login=tuple(site.login), poll_interval=0.2,
                           max_jobs=n)
    return tasks_per_second(name, [ge], lambda c: [c.command(["true"]) for _ in range(n)])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--site", default="epsilon")
    args = parser.parse_args()
    site = gesite.up(args.site)
    init_embedded_ray(num_cpus=2, resources={}, object_store_mb=256, namespace="metasched")
    side_by_side(args.rounds, lambda: raw_qsub_loop(site, args.tasks),
                 lambda n: through_metasched(site, args.tasks, f"ge-bench-{n}"),
                 raw_label="raw qsub loop", ours_label="metasched")


if __name__ == "__main__":
    main()
