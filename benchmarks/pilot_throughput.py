"""Pilot mode vs batch mode vs Parsl's HighThroughputExecutor on one Slurm site, side by side in one run.

    .venv/bin/python benchmarks/pilot_throughput.py [--tasks 5000] [--batch-tasks 1000] [--blocks 2]

Runs itself inside the loopback-only network namespace (ci/netns.py: pilot mode's Ray listens on every
interface, and so do Parsl's interchange and workers). The site is kappa (ci/slurm-cluster, 2 nodes,
brought up if needed), its compute nodes mounting this machine's Python and virtualenv.

- **metasched pilot mode**: `--blocks` blocks of one node and 2 cores each. *Time to first result*: from
  `Campaign.start()` (blocks submitted) to the first no-op task's result. Then N no-op Python tasks,
  timed from the first submission to the last result, with the blocks already running.
- **metasched batch mode**: the same site, one job per task, `--batch-tasks` no-op tasks.
- **Parsl**: HighThroughputExecutor with SlurmProvider, the same node count and workers per node (2),
  `--blocks` blocks of one node; time to first result from `parsl.load()`, then the same N no-op apps.
  Run with Parsl's defaults (strategy period 5 s, heartbeat 30 s) and tuned (strategy period 0.5 s,
  heartbeat 2 s).

Prints each rate and the ratios; numbers go into docs/performance.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "ci"), str(ROOT / "ci" / "slurm-cluster"), str(ROOT)]

import netns  # noqa: E402
import slurmsite  # noqa: E402

import metasched as ms  # noqa: E402
from metasched.journal import Journal  # noqa: E402
from metasched.scheduler.blocks import journaled_blocks  # noqa: E402

HEAD_IP = "127.0.0.2"
CORES = 2


def noop(i: int) -> int:
    return i


def site_info() -> slurmsite.SiteInfo:
    return slurmsite.up("kappa", nodes=2, cpus=4, network=f"container:{netns.HOLDER}",
                        binds=netns.this_python())


def metasched_pilot(info: slurmsite.SiteInfo, n: int, blocks: int) -> tuple[float, float, float, str]:
    """(seconds from start to the first result, one task's latency and tasks per second with the blocks
    running, and where the first result's time went)."""
    site = ms.SlurmSite(info.name, slurm_conf=info.slurm_conf, login=tuple(info.login),
                        shared_dir=info.shared_dir, python=f"{sys.prefix}/bin/python", mode="pilot",
                        cores_per_node=CORES, init_blocks=blocks, max_blocks=blocks, poll_interval=0.2,
                        block_object_store_mb=200)
    with tempfile.TemporaryDirectory() as tmp:
        start, epoch = time.perf_counter(), time.time()
        with ms.Campaign("bench-pilot", sites=[site], journal=os.path.join(tmp, "c.db"),
                         ray_node_ip=HEAD_IP) as campaign:
            started = time.perf_counter() - start
            task = campaign.task(noop)
            task(-1).result(timeout=300)
            first = time.perf_counter() - start
            timeline = first_block(os.path.join(tmp, "c.db"), epoch, started, first)
            while len(_running_blocks(info)) < blocks:
                time.sleep(0.2)
            latency = warm_latency(lambda: task(-2).result(timeout=60))
            begin = time.perf_counter()
            futures = [task(i) for i in range(n)]
            results = [f.result(timeout=900) for f in futures]
            rate = n / (time.perf_counter() - begin)
    if results != list(range(n)):
        raise SystemExit("pilot mode returned wrong results")
    return first, latency, rate, timeline


def first_block(journal: str, epoch: float, started: float, first: float) -> str:
    """Where the time to the first result went: the head and scheduler, the first block's job, the task."""
    stored = Journal(journal).open(read_only=True)
    try:
        joined_blocks = [b for b in journaled_blocks(stored)["kappa"] if b.joined_at]
        block = min(joined_blocks, key=lambda b: b.joined_at or 0.0)
    finally:
        stored.close()
    submitted, joined = (block.submitted_at or epoch) - epoch, (block.joined_at or epoch) - epoch
    return (f"campaign started (Ray head, scheduler, site) {started:.2f} s, first block submitted "
            f"{submitted:.2f} s, joined {joined:.2f} s (+{joined - submitted:.2f}), first result "
            f"{first:.2f} s (+{first - joined:.2f})")


def warm_latency(one: Callable[[], object], rounds: int = 5) -> float:
    """Median seconds from submitting one no-op task to its result, with the blocks running."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        one()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def metasched_batch(info: slurmsite.SiteInfo, n: int) -> float:
    site = ms.SlurmSite(info.name, slurm_conf=info.slurm_conf, login=tuple(info.login),
                        shared_dir=info.shared_dir, python=f"{sys.prefix}/bin/python", poll_interval=0.2,
                        max_jobs=n)
    with tempfile.TemporaryDirectory() as tmp, \
            ms.Campaign("bench-batch", sites=[site], journal=os.path.join(tmp, "c.db"),
                        ray_node_ip=HEAD_IP) as campaign:
        task = campaign.task(noop)
        begin = time.perf_counter()
        futures = [task(i) for i in range(n)]
        results = [f.result(timeout=1800) for f in futures]
        rate = n / (time.perf_counter() - begin)
    if results != list(range(n)):
        raise SystemExit("batch mode returned wrong results")
    return rate


def _running_blocks(info: slurmsite.SiteInfo) -> list[str]:
    out = subprocess.run(info.client(["squeue", "--noheader", "--states=RUNNING", "--format=%j"]),
                         capture_output=True, text=True, timeout=60, check=True).stdout
    return [line for line in out.split() if line.startswith(("ms-kappa-pilot", "parsl"))]


def parsl_htex(info: slurmsite.SiteInfo, n: int, blocks: int, *, tuned: bool) -> tuple[float, float, float]:
    """(seconds from parsl.load to the first result, one app's latency and apps per second with the blocks
    running)."""
    import parsl
    from parsl.config import Config
    from parsl.executors import HighThroughputExecutor
    from parsl.launchers import SingleNodeLauncher
    from parsl.providers import SlurmProvider

    os.environ["SLURM_CONF"] = info.slurm_conf  # the host's Slurm client, inside the namespace
    run_dir = tempfile.mkdtemp(prefix="parsl-", dir=info.shared_dir)
    os.environ["PATH"] = f"{sys.prefix}/bin:{os.environ['PATH']}"  # interchange.py, process_worker_pool.py
    provider = SlurmProvider(partition=info.partition, nodes_per_block=1, init_blocks=blocks,
                             min_blocks=blocks, max_blocks=blocks, walltime="00:30:00",
                             launcher=SingleNodeLauncher(),
                             exclusive=False, cmd_timeout=60,
                             worker_init=f"export PATH={sys.prefix}/bin:$PATH; cd {run_dir}")
    executor = HighThroughputExecutor(label="htex", address=HEAD_IP, loopback_address=HEAD_IP,
                                      max_workers_per_node=CORES, cores_per_worker=1, provider=provider,
                                      heartbeat_period=2 if tuned else 30,
                                      heartbeat_threshold=10 if tuned else 120,
                                      worker_logdir_root=run_dir)
    config = Config(executors=[executor], run_dir=run_dir, strategy_period=0.5 if tuned else 5,
                    initialize_logging=False)
    app = parsl.python_app(noop)
    start = time.perf_counter()
    dfk = parsl.load(config)
    try:
        app(-1).result()
        first = time.perf_counter() - start
        while len(_running_blocks(info)) < blocks:
            time.sleep(0.2)
        latency = warm_latency(lambda: app(-2).result())
        begin = time.perf_counter()
        futures = [app(i) for i in range(n)]
        results = [f.result() for f in futures]
        rate = n / (time.perf_counter() - begin)
    finally:
        dfk.cleanup()
        parsl.clear()
    if results != list(range(n)):
        raise SystemExit("Parsl returned wrong results")
    return first, latency, rate


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--batch-tasks", type=int, default=1000)
    parser.add_argument("--blocks", type=int, default=2)
    parser.add_argument("--skip-parsl", action="store_true")
    args = parser.parse_args(argv)
    info = site_info()
    first, latency, pilot, timeline = metasched_pilot(info, args.tasks, args.blocks)
    print(f"metasched pilot: first result {first:.2f} s after start, one task {latency * 1000:.0f} ms with "
          f"blocks running; {args.tasks} tasks at {pilot:,.0f} tasks/s ({1e6 / pilot:,.0f} us per task)\n"
          f"  first result: {timeline}", flush=True)
    if not args.skip_parsl:
        for tuned in (False, True):
            label = "tuned" if tuned else "defaults"
            p_first, p_latency, p_rate = parsl_htex(info, args.tasks, args.blocks, tuned=tuned)
            print(f"Parsl HTEX ({label}): first result {p_first:.2f} s after load, one app "
                  f"{p_latency * 1000:.0f} ms with blocks running; {args.tasks} apps at {p_rate:,.0f} "
                  "apps/s. "
                  f"Ratios pilot/Parsl: throughput {pilot / p_rate:.2f}, first result {first / p_first:.2f}, "
                  f"one task {latency / p_latency:.2f}", flush=True)
    batch = metasched_batch(info, args.batch_tasks)
    print(f"metasched batch: {args.batch_tasks} tasks at {batch:,.1f} tasks/s; pilot/batch "
          f"{pilot / batch:,.1f}", flush=True)


if __name__ == "__main__":
    if not netns.inside():
        here: list[str] = [sys.executable, str(Path(__file__).resolve()), *sys.argv[1:]]
        sys.exit(netns.main(["run", "--", *here]))
    main(sys.argv[1:])
