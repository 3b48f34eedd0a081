"""The main job of `make demo`.

With a Docker engine and the host Slurm client: bring up the containerized Slurm sites alpha and beta,
run examples/campaign.toml across this machine, alpha and beta with the live display, and write the
HTML report; then move a running command task with 30 MB of state from one Slurm site to the other
(CRIU) and show that it went on where it was (examples/migration-report/). Without them: run the
local-only Python campaign below and say why.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

import metasched as ms

ROOT = Path(__file__).resolve().parent.parent
console = Console()


def sample(seed: int, n: int) -> int:
    rng = random.Random(seed)
    return sum(1 for _ in range(n) if rng.random() ** 2 + rng.random() ** 2 <= 1.0)


def estimate(hits: list[int], n: int) -> float:
    return 4.0 * sum(hits) / (len(hits) * n)


def why_no_sites() -> str | None:
    if shutil.which("docker") is None:
        return "no docker client"
    if subprocess.run(["docker", "info"], capture_output=True, timeout=30, check=False).returncode != 0:
        return "no running Docker engine (make test starts one)"
    if shutil.which("sbatch") is None:
        return "no host Slurm client (make test installs slurm-client)"
    return None


def multi_site() -> int:
    sys.path[:0] = [str(ROOT / "ci"), str(ROOT / "ci" / "slurm-cluster")]
    import slurmsite

    for name in ("alpha", "beta"):
        info = slurmsite.up(name)
        console.print(f"site {name} up: {', '.join(info.nodes)}")
    campaign = ROOT / "examples" / "campaign.toml"
    journal = ROOT / "examples" / "showcase.db"
    for stale in journal.parent.glob("showcase.db*"):
        stale.unlink()
    metasched = [sys.executable, "-m", "metasched"]
    subprocess.run([*metasched, "sites", "check", str(campaign)], check=False)
    ran = subprocess.run([*metasched, "run", str(campaign)], check=False)
    subprocess.run([*metasched, "report", str(journal)], check=False)
    moved = migration_showcase(slurmsite)
    return ran.returncode or moved


COUNTER = """
import sys, time
state = bytearray(30 * 2**20)
for i in range(int(sys.argv[1])):
    state[i] = i % 256
    print(i, flush=True)
    time.sleep(0.1)
"""


def migration_showcase(slurmsite: Any) -> int:
    """A long command task with 30 MB of state moves from one Slurm site to the other, mid-run (CRIU)."""
    console.rule("migration: a running task moves to another site and goes on")
    sites = [ms.SlurmSite(name, slurm_conf=f"/var/tmp/metasched-sites/{name}/etc/slurm.conf",
                          shared_dir=f"/var/tmp/metasched-sites/{name}/shared", poll_interval=0.3,
                          checkpoint_dir=slurmsite.SCRATCH) for name in ("alpha", "beta")]
    journal = ROOT / "examples" / "migration.db"
    for stale in journal.parent.glob("migration.db*"):
        stale.unlink()
    with ms.Campaign("migration-demo", sites=sites, journal=journal) as c:
        counter = c.command(["python3", "-c", COUNTER, "60"], checkpoint="criu", name="counter")
        while (where := _running_at(journal, counter.task_id)) is None:
            time.sleep(0.2)
        time.sleep(2)
        to = "beta" if where == "alpha" else "alpha"
        console.print(c.migrate(counter, to=to))
        result = counter.result(timeout=300)
    lines = result.stdout.split()
    console.print(f"counter printed {lines[0]} .. {lines[-1]}, one process across two sites:")
    import sqlite3

    with sqlite3.connect(journal) as db:
        for site, detail in db.execute("SELECT site, detail FROM transitions WHERE detail LIKE "
                                       "'%checkpoint%' OR detail LIKE 'site %moving%'"):
            console.print(f"  {site or ''} {detail}", markup=False)
    subprocess.run([sys.executable, "-m", "metasched", "report", str(journal), "--out",
                    str(ROOT / "examples" / "migration-report")], check=False)
    ok = lines == [str(i) for i in range(60)]
    console.print("[green]migration ok[/]" if ok else "[red]the counter's output has a gap[/]")
    return 0 if ok else 1


def _running_at(journal: Path, task_id: str) -> str | None:
    import sqlite3

    with sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=5) as db:
        row = db.execute("SELECT state, site FROM tasks WHERE task_id = ?", (task_id,)).fetchone()
    return str(row[1]) if row and row[0] == "running" else None


def local_only(reason: str) -> int:
    console.print(f"[yellow]running the local-only demo: {reason}[/]")
    n = 50_000
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="metasched-demo-") as tmp, \
            ms.Campaign("demo", sites=[ms.LocalSite("local", cores=2)], journal=Path(tmp) / "demo.db") as c:
        sample_task = c.task(cores=1, walltime="00:05:00", retries=1)(sample)
        hits = [sample_task(seed, n) for seed in range(40)]
        pi = c.task(name="estimate")(estimate)(hits, n)
        host = c.command([sys.executable, "-c", "import platform; print(platform.python_version())"])
        value, python, summary = pi.result(), host.result().stdout.strip(), c.status()
    table = Table(title="campaign 'demo'")
    for column in ("site", "queued", "running", "done", "failed"):
        table.add_column(column, justify="left" if column == "site" else "right")
    for row in summary:
        table.add_row(row.site, str(row.queued), str(row.running), str(row.done), str(row.failed))
    console.print(table)
    console.print(f"pi ~ {value:.4f} from {40 * n:,} samples in 40 tasks; command task ran Python {python}")
    console.print(f"metasched {ms.__version__}: {len(summary)} site(s), {time.monotonic() - start:.1f} s")
    return 0


def main() -> int:
    reason = why_no_sites()
    return local_only(reason) if reason else multi_site()


if __name__ == "__main__":
    sys.exit(main())
