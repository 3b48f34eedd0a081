"""One task's round trip at the local site, beside raw Ray's, in the same process.

    .venv/bin/python benchmarks/latency_local.py [--rounds 100]

Raw Ray: ``ray.get(noop.remote(i))`` one after the other. metasched: ``c.task(noop)(i).result()`` one
after the other on ``LocalSite("local", cores=2)``: the driver's batch, the scheduler's step and journal,
placement, the agent, Ray, the poll and the event back. Both after a warm-up; the median and the 90th
percentile of `--rounds` round trips are printed, and their ratio to raw Ray's (1.0: no overhead; lower
is better).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import metasched as ms
from metasched.runtime import init_embedded_ray


def noop(i: int) -> int:
    return i


def round_trips(one: Callable[[int], object], rounds: int) -> tuple[float, float]:
    """(median, 90th percentile) seconds of `rounds` calls of `one`, after 10 unmeasured ones."""
    for i in range(10):
        one(i)
    took = []
    for i in range(rounds):
        start = time.perf_counter()
        one(i)
        took.append(time.perf_counter() - start)
    return statistics.median(took), statistics.quantiles(took, n=10)[-1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=100)
    args = parser.parse_args()
    ray = init_embedded_ray(num_cpus=2, resources={"site:local": 2.0}, object_store_mb=256,
                            namespace="metasched")
    remote = ray.remote(noop)
    raw = round_trips(lambda i: ray.get(remote.remote(i)), args.rounds)
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp, \
            ms.Campaign(f"latency-{os.getpid()}", sites=[ms.LocalSite("local", cores=2)],
                        journal=Path(tmp) / "latency.db") as campaign:
        task = campaign.task(noop)
        ours = round_trips(lambda i: task(i).result(timeout=60), args.rounds)
    print(f"raw Ray:   median {raw[0] * 1000:.2f} ms, p90 {raw[1] * 1000:.2f} ms ({args.rounds} round trips)")
    print(f"metasched: median {ours[0] * 1000:.2f} ms, p90 {ours[1] * 1000:.2f} ms; ratio to raw Ray "
          f"{ours[0] / raw[0]:.1f} (median), {ours[1] / raw[1]:.1f} (p90)")


if __name__ == "__main__":
    main()
