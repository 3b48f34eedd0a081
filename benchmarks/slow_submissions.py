"""What a batch site slow to take jobs costs a campaign's other sites: local alone vs local + a slow alpha.

    .venv/bin/python benchmarks/slow_submissions.py [--rounds 3] [--tasks 12] [--submit-s 6] [--keep]

The Slurm site ``alpha`` is brought up here; every job submission there takes ``--submit-s`` seconds (a
login prefix that sleeps before each sbatch: a busy controller, a site's own checks of every job, a far
login node; squeue answers at once). Each round runs the same campaign of half-second commands twice, in
alternating order: on the local site alone (2 cores), and on the local site with the slow alpha beside it.
Printed: each run's first and last result after the tasks were submitted, where the attempts ran, and the
ratios slow-alpha / local-alone. The first-result ratio shows what the slow site costs the other's results
(near 1: the scheduler's step waits for no site's submissions). The makespan ratio shows what it costs the
campaign: a batch site takes only the submissions it can make in about a second at its recent pace (four
before it has answered any), so the slow site gets the first four and the rest run at the local cores as
they free; what is left is those four's own slow submission.
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
sys.path[:0] = [str(ROOT), str(ROOT / "ci" / "slurm-cluster")]

import slurmsite  # noqa: E402

import metasched as ms  # noqa: E402
from tests.integration.batch_faults import slow_submissions_login  # noqa: E402

TASK = ["python3", "-c", "import time; time.sleep(0.5)"]


def run(sites: list[object], tasks: int, journal: Path) -> tuple[float, float, dict[str, int]]:
    """First and last result after submission (s), and attempts done per site."""
    with ms.Campaign(f"slow-submissions-{os.getpid()}-{journal.stem}", sites=sites, journal=journal) as c:
        began = time.perf_counter()
        futures = [c.command(TASK, name=f"t{i}") for i in range(tasks)]
        first = None
        while not all(f.done() for f in futures):
            if first is None and any(f.done() for f in futures):
                first = time.perf_counter() - began
            time.sleep(0.02)
        last = time.perf_counter() - began
        assert all(f.result().returncode == 0 for f in futures)
        done = {row.site: row.done for row in c.status()}
    return first if first is not None else last, last, done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=12)
    parser.add_argument("--submit-s", type=float, default=6.0, help="seconds each submission at alpha takes")
    parser.add_argument("--keep", action="store_true", help="leave alpha up afterwards")
    args = parser.parse_args()
    alpha = slurmsite.up("alpha")
    slow = ms.SlurmSite("alpha", slurm_conf=alpha.slurm_conf, shared_dir=alpha.shared_dir, poll_interval=0.3,
                        login=slow_submissions_login(args.submit_s))
    kinds = {"local alone": lambda: [ms.LocalSite("local", cores=2)],
             "local + slow alpha": lambda: [ms.LocalSite("local", cores=2), slow]}
    results: dict[str, list[tuple[float, float]]] = {kind: [] for kind in kinds}
    try:
        with tempfile.TemporaryDirectory() as work:
            for round_ in range(args.rounds):
                order = list(kinds) if round_ % 2 == 0 else list(reversed(kinds))
                for kind in order:
                    journal = Path(work) / f"r{round_}-{len(kinds[kind]())}.db"
                    first, last, done = run(kinds[kind](), args.tasks, journal)
                    results[kind].append((first, last))
                    print(f"round {round_ + 1}, {kind}: first result {first:.2f} s, last {last:.2f} s, "
                          f"done {done}", flush=True)
    finally:
        if not args.keep:
            slurmsite.down("alpha")
    alone, beside = results["local alone"], results["local + slow alpha"]
    for name, index in (("first result", 0), ("last result", 1)):
        a = statistics.median(r[index] for r in alone)
        b = statistics.median(r[index] for r in beside)
        print(f"{name}: local alone {a:.2f} s, with a slow alpha {b:.2f} s (median of {args.rounds}); "
              f"ratio {b / a:.2f}")


if __name__ == "__main__":
    main()
