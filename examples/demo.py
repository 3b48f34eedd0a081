"""The main job of `make demo`.

With a Docker engine and the host Slurm client: bring up the containerized Slurm sites alpha and beta,
run examples/campaign.toml across this machine, alpha and beta with the live display, and write the
HTML report. Without them: run the local-only Python campaign below and say why.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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
    return ran.returncode


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
