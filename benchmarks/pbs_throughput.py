"""Throughput of the PBS agent (Torque dialect) on the site zeta: metasched vs a raw qsub loop, side by side.

    .venv/bin/python benchmarks/pbs_throughput.py [--tasks 100] [--rounds 2] [--site zeta]

Brings the site up if needed (Slurm 22.05 behind Debian's Torque-style wrappers, 2 nodes x 4 CPUs; the
wrappers run in its controller container). Raw: `qsub -N bench -o /dev/null -e /dev/null -l nodes=1:ppn=1
SCRIPT` N times through the same `docker exec` prefix, then `qstat -f` every 0.2 s until every job is
completed (C). metasched: a campaign with one PBSSite (dialect "torque", poll_interval=0.2, max_jobs=N)
running N command tasks `true` and waiting for every future. Time is from the first submission to the
last completion. Both pay the wrappers' cost: each qsub is a Perl program that runs sbatch.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "ci"), str(ROOT / "ci" / "slurm-cluster")]

import slurmsite  # noqa: E402
from campaign_rate import side_by_side, tasks_per_second  # noqa: E402

from metasched.runtime import init_embedded_ray  # noqa: E402
from tests.integration.pbs_sites import torque_site  # noqa: E402


def raw_qsub_loop(site: slurmsite.SiteInfo, n: int) -> float:
    script = Path(site.shared_dir) / "bench-true.sh"
    script.write_text("#!/bin/bash\ntrue\n")
    client = [*site.login, "env", f"SLURM_CONF={site.slurm_conf}"]
    start = time.perf_counter()
    ids = set()
    for _ in range(n):
        out = subprocess.run([*client, "qsub", "-N", "bench", "-o", "/dev/null", "-e", "/dev/null",
                              "-l", "nodes=1:ppn=1", str(script)], capture_output=True, text=True, check=True,
                             timeout=60)
        ids.add(out.stdout.strip().splitlines()[-1])
    while True:
        out = subprocess.run([*client, "qstat", "-f"], capture_output=True, text=True, check=True, timeout=60)
        states = dict(re.findall(r"Job Id:\s*(\S+)\n(?:\s+.*\n)*?\s+job_state = (\S)", out.stdout))
        if all(states.get(job_id) == "C" for job_id in ids):
            return n / (time.perf_counter() - start)
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--site", default="zeta")
    args = parser.parse_args()
    site = slurmsite.up(args.site, flavor="torque", cpus=4)
    init_embedded_ray(num_cpus=2, resources={}, object_store_mb=256, namespace="metasched")
    pbs = torque_site(site, poll_interval=0.2, max_jobs=args.tasks)
    side_by_side(args.rounds, lambda: raw_qsub_loop(site, args.tasks),
                 lambda n: tasks_per_second(f"pbs-bench-{n}", [pbs],
                                            lambda c: [c.command(["true"]) for _ in range(args.tasks)]),
                 raw_label="raw qsub loop", ours_label="metasched")


if __name__ == "__main__":
    main()
