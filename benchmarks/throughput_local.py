"""Throughput of no-op tasks: metasched's local site vs raw Ray, side by side on one embedded Ray.

    .venv/bin/python benchmarks/throughput_local.py [--tasks 10000] [--rounds 2]

Both runs use the same Ray cluster (2 CPUs, resource site:local=2). Raw Ray: `noop.remote()` N times
then `ray.get`. metasched: a campaign on LocalSite("local", cores=2) submitting N function tasks and
waiting for all futures, with every transition journaled to SQLite, twice: with packing off
(max_pack=1: one Ray task per attempt) and with the default (short tasks packed up to 32 per Ray task).
Prints tasks/s of each and the ratios to raw Ray.
"""

from __future__ import annotations

import argparse
import time

from campaign_rate import tasks_per_second

import metasched as ms
from metasched.runtime import init_embedded_ray


def noop() -> None:
    return None


def raw_ray(n: int) -> float:
    import ray

    remote = ray.remote(num_cpus=1)(noop)
    start = time.perf_counter()
    ray.get([remote.remote() for _ in range(n)])
    return n / (time.perf_counter() - start)


def through_metasched(n: int, name: str, max_pack: int) -> float:
    site = ms.LocalSite("local", cores=2, max_pack=max_pack)
    return tasks_per_second(name, [site], lambda c: [c.task(noop)() for _ in range(n)])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    init_embedded_ray(num_cpus=2, resources={"site:local": 2.0}, object_store_mb=256, namespace="metasched")
    raw_ray(500)  # warm up the worker pool
    rows = []
    for round_no in range(args.rounds):
        raw = raw_ray(args.tasks)
        unpacked = through_metasched(args.tasks, f"bench-unpacked-{round_no}", max_pack=1)
        packed = through_metasched(args.tasks, f"bench-default-{round_no}", max_pack=32)
        rows.append((raw, unpacked, packed))
        print(f"round {round_no + 1}: raw Ray {raw:6.0f}/s | metasched one Ray task per attempt "
              f"{unpacked:6.0f}/s (ratio {unpacked / raw:.2f}) | metasched default (packing) "
              f"{packed:6.0f}/s (ratio {packed / raw:.2f})", flush=True)
    raw_best = max(r[0] for r in rows)
    unpacked_best, packed_best = max(r[1] for r in rows), max(r[2] for r in rows)
    print(f"best of {args.rounds}: raw Ray {raw_best:.0f} tasks/s; metasched default {packed_best:.0f} "
          f"tasks/s, ratio {packed_best / raw_best:.2f} (target >= 0.70); packing off "
          f"{unpacked_best:.0f} tasks/s, ratio {unpacked_best / raw_best:.2f}")
    import ray

    ray.shutdown()


if __name__ == "__main__":
    main()
