"""A campaign of many small tasks on the local site (packing on): memory, journal size, resume and status.

    .venv/bin/python benchmarks/million_tasks.py [--tasks 1000000] [--command-every 50]

Submits `--tasks` no-op Python tasks, every `--command-every`-th one a `true` command instead, waits for
all, and reports: tasks/s (beside raw Ray running the same number of no-op calls as a baseline, in the
same process); the peak resident memory the driver and the scheduler actor gained over their size before
the first submission, per task; the journal's size per task; the time `Campaign.resume` takes to reopen
the finished campaign; and the time `metasched status` takes on the journal. Every result is read back
(and checked) before the numbers are printed. Targets (issue 20): driver and actor <= 1 KB per task,
journal <= 0.5 KB per task, status < 1 s.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

import metasched as ms
from metasched.runtime import init_embedded_ray


def noop(i: int) -> int:
    return i


class PeakRss:
    """Samples a process's resident memory every 0.2 s in a thread; `peak` is the largest seen."""

    def __init__(self, find: object) -> None:
        self.find, self.peak, self.base = find, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._process: psutil.Process | None = None

    def start(self) -> PeakRss:
        self._process = self.find()  # type: ignore[operator]
        self.base = self.peak = self._process.memory_info().rss if self._process else 0
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            if self._process is None:
                self._process = self.find()  # type: ignore[operator]
            if self._process is not None:
                try:
                    self.peak = max(self.peak, self._process.memory_info().rss)
                except psutil.NoSuchProcess:
                    return

    def stop(self) -> int:
        """Peak minus the size at start, in bytes."""
        self._stop.set()
        self._thread.join()
        return self.peak - self.base


def scheduler_actor() -> psutil.Process | None:
    for proc in psutil.process_iter(["cmdline"]):
        if any("SchedulerActor" in part for part in proc.info["cmdline"] or []):
            return proc
    return None


def raw_ray(n: int) -> float:
    import ray

    remote = ray.remote(num_cpus=1)(noop)
    start = time.perf_counter()
    for offset in range(0, n, 100_000):
        ray.get([remote.remote(i) for i in range(offset, min(n, offset + 100_000))])
    return n / (time.perf_counter() - start)


def journal_breakdown(path: Path) -> list[tuple[str, int]]:
    """Bytes of the journal's pages each table and index holds (SQLite's dbstat), largest first."""
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC").fetchall()
    return [(name, int(used)) for name, used in rows]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--command-every", type=int, default=50)
    parser.add_argument("--raw-ray-tasks", type=int, default=100_000)
    args = parser.parse_args()
    init_embedded_ray(num_cpus=2, resources={"site:local": 2.0}, object_store_mb=256, namespace="metasched")
    raw = raw_ray(args.raw_ray_tasks)
    print(f"raw Ray: {raw:,.0f} no-op tasks/s ({args.raw_ray_tasks:,} tasks)", flush=True)
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
        journal = Path(tmp) / "million.db"
        driver = PeakRss(lambda: psutil.Process()).start()
        campaign = ms.Campaign(f"million-{os.getpid()}", sites=[ms.LocalSite("local", cores=2)],
                               journal=journal).start()
        actor = PeakRss(scheduler_actor).start()
        start = time.perf_counter()
        task = campaign.task(noop)
        futures = []
        for i in range(args.tasks):
            futures.append(campaign.command(["true"]) if i % args.command_every == 0 else task(i))
            if i and i % 100_000 == 0:
                print(f"  submitted {i:,} in {time.perf_counter() - start:.0f} s", flush=True)
        ms.wait(futures)
        elapsed = time.perf_counter() - start
        bad = [i for i, f in enumerate(futures)
               if f.exception() is not None or (i % args.command_every and f.result() != i)]
        driver_gain, actor_gain = driver.stop(), actor.stop()
        campaign.close()
        if bad:
            raise SystemExit(f"{len(bad)} tasks failed or returned the wrong value, e.g. task {bad[0]}")
        del futures
        size = journal.stat().st_size + sum(p.stat().st_size for p in Path(tmp).glob("million.db-*"))
        where = journal_breakdown(journal)
        t0 = time.perf_counter()
        resumed = ms.Campaign.resume(journal)
        resume_s = time.perf_counter() - t0
        sample = resumed.futures()[:: max(1, args.tasks // 1000)]
        assert all(f.exception() is None for f in sample)  # results still there after resume
        resumed.close()
        t0 = time.perf_counter()
        status = subprocess.run([sys.executable, "-m", "metasched", "status", str(journal)],
                                capture_output=True, text=True, check=False)
        status_s = time.perf_counter() - t0
    n = args.tasks
    print(f"metasched: {n:,} tasks ({n // args.command_every:,} commands) in {elapsed:.0f} s = "
          f"{n / elapsed:,.0f} tasks/s (ratio to raw Ray {n / elapsed / raw:.2f})")
    print(f"driver peak gain {driver_gain / 2**20:,.0f} MB = {driver_gain / n:,.0f} B/task (target <= 1024)")
    print(f"actor peak gain {actor_gain / 2**20:,.0f} MB = {actor_gain / n:,.0f} B/task (target <= 1024)")
    print(f"journal {size / 2**20:,.0f} MB = {size / n:,.0f} B/task (target <= 512); per task: "
          + ", ".join(f"{name} {used / n:,.0f} B" for name, used in where if used >= n))
    print(f"Campaign.resume of the finished campaign: {resume_s:.1f} s; "
          f"metasched status: {status_s:.2f} s (exit {status.returncode}; target < 1 s)")


if __name__ == "__main__":
    main()
