"""The main job of `make demo`: a small parameter sweep on the embedded default site (this machine).

A Monte Carlo estimate of pi split into 40 tasks, a command task, and a reduction that depends on
every sample task (a DAG edge through a list of futures). Runs on an embedded Ray bound to 127.0.0.1;
the journal goes to a temporary directory. Later issues grow this into a multi-site run.
"""

from __future__ import annotations

import random
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

import metasched as ms


def sample(seed: int, n: int) -> int:
    rng = random.Random(seed)
    return sum(1 for _ in range(n) if rng.random() ** 2 + rng.random() ** 2 <= 1.0)


def estimate(hits: list[int], n: int) -> float:
    return 4.0 * sum(hits) / (len(hits) * n)


def main() -> None:
    console = Console()
    n = 50_000
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="metasched-demo-") as tmp:
        journal = Path(tmp) / "demo.db"
        with ms.Campaign("demo", sites=[ms.LocalSite("local", cores=2)], journal=journal) as c:
            sample_task = c.task(cores=1, walltime="00:05:00", retries=1)(sample)
            hits = [sample_task(seed, n) for seed in range(40)]
            pi = c.task(name="estimate")(estimate)(hits, n)
            host = c.command([sys.executable, "-c", "import platform; print(platform.python_version())"])
            value = pi.result()
            python = host.result().stdout.strip()
            summary = c.status()
        table = Table(title=f"campaign 'demo' (journal {journal.name})")
        for column in ("site", "queued", "running", "done", "failed"):
            table.add_column(column, justify="left" if column == "site" else "right")
        for row in summary:
            table.add_row(row.site, str(row.queued), str(row.running), str(row.done), str(row.failed))
        console.print(table)
    console.print(f"pi ~ {value:.4f} from {40 * n:,} samples in 40 tasks; command task ran Python {python}")
    console.print(f"metasched {ms.__version__}: {len(summary)} site(s), {time.monotonic() - start:.1f} s")


if __name__ == "__main__":
    main()
