"""What one poll of a site over SSH costs: the status command and the attempt records in one round trip
(``SshTransport.run_and_fetch``, what the agent does) vs the two round trips it took before (``squeue``,
then ``fetch``), side by side on the same live jobs.

    .venv/bin/python benchmarks/ssh_poll.py [--jobs 10 100 300] [--rounds 5]

Brings the SSH test site omicron up (ci/ssh-login) if needed, submits N jobs ``sleep 300`` through the
site's master (8 run, the rest wait: squeue lists all N), and sends N attempt directories holding a small
record each (what a poll fetches). Prints the median of `rounds` polls of each kind and their ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), *(str(ROOT / "ci" / sub) for sub in ("", "slurm-cluster", "ssh-login"))]

import slurmsite  # noqa: E402

from site_agents.batch.transport import transport_for  # noqa: E402
from site_agents.slurm.dialect import SlurmDialect  # noqa: E402
from tests.integration.ssh_sites import slurm_ssh_site  # noqa: E402


def median_ms(action: object, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        action()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, nargs="+", default=[10, 100, 300])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    site = slurmsite.up("omicron", ssh=True, cpus=4)
    os.environ.setdefault("METASCHED_HOME", tempfile.mkdtemp(prefix="ssh-poll-"))
    config = slurm_ssh_site(site)
    dialect = SlurmDialect(site=config.name)
    transport = transport_for(config, {"SLURM_CONF": site.slurm_conf}, dialect.give_up_on)
    run = transport.runner.run
    user = run(["id", "-un"]).stdout.strip()
    print("live jobs | one round trip (status + records) | two round trips (status, then records) | ratio")
    job_ids: list[str] = []
    try:
        for n in args.jobs:
            while len(job_ids) < n:
                out = run(["sbatch", "--parsable", "--chdir=/tmp", "--output=/dev/null", "--wrap",
                           "sleep 300"])
                job_ids.append(out.stdout.strip().split(";")[0])
            attempts = [transport.attempt(f"poll-bench-{i}.1") for i in range(n)]
            for attempt in attempts:
                attempt.create()
                (attempt.here / "job.out").write_text("started\n")
            transport.send(attempts)
            status = dialect.status_argv(user, job_ids)
            one = median_ms(lambda: transport.run_and_fetch(status, attempts), args.rounds)  # noqa: B023
            two = median_ms(lambda: (run(status), transport.fetch(attempts)), args.rounds)  # noqa: B023
            print(f"{n:9d} | {one:8.1f} ms | {two:8.1f} ms | {one / two:5.2f}")
    finally:
        for start in range(0, len(job_ids), 100):
            run(["scancel", *job_ids[start:start + 100]])
        transport.close()


if __name__ == "__main__":
    main()
