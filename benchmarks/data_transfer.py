"""Moving data between two sites' stores: metasched's transfer step vs a raw file copy, side by side.

    .venv/bin/python benchmarks/data_transfer.py [--objects 10] [--mb 100] [--rounds 3]

Puts N objects of M MB (random bytes, pickled) into store A (a ProxyStore file store, as on a Slurm
site's shared filesystem), then in each round:
  raw        shutil.copyfile of the same N files into a plain directory, one after the other (what `cp`
             does: an in-kernel copy, no verification);
  metasched  the scheduler's transfer step: TransferManager with RayTransferRunner (each copy a Ray task
             in another process), copying into store B, verifying size + xxh3-128 hash of what arrived,
             writing ProxyStore's ready marker, polled the way the scheduler loop polls it.
Both run in this process against the same bytes (warm page cache for both). Prints both times, the
throughput and the ratio metasched / raw per round, and the best round's ratio.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cloudpickle

from metasched.data.objects import DataRef, put_blob
from metasched.data.stores import FileStore
from metasched.data.transfers import RayTransferRunner, TransferManager
from metasched.runtime import init_embedded_ray


def raw_copy(refs: list[DataRef], source: FileStore, target: Path) -> float:
    os.sync()  # start from clean page cache state: earlier rounds' writeback must not land in this one
    start = time.perf_counter()
    for ref in refs:
        shutil.copyfile(os.path.join(source.path, ref.key.filename), target / ref.key.filename)
    return time.perf_counter() - start


def metasched_copy(refs: list[DataRef], target: FileStore, runner: RayTransferRunner) -> float:
    manager = TransferManager(runner)
    os.sync()
    start = time.perf_counter()
    for ref in refs:
        manager.request(ref.object_id, [ref], target)
    ready: list[str] = []
    while manager.in_flight:
        report = manager.poll()
        if report.failed:
            raise RuntimeError(f"transfer failed: {report.failed}")
        ready += report.ready
        time.sleep(0.002)  # the scheduler loop's pause while work is in flight
    elapsed = time.perf_counter() - start
    assert sorted(ready) == sorted(r.object_id for r in refs)  # noqa: S101
    return elapsed


def raw_side(refs: list[DataRef], source: FileStore, directory: Path) -> float:
    """One raw round; its copies are deleted afterwards so each side starts with the same free cache."""
    directory.mkdir()
    seconds = raw_copy(refs, source, directory)
    shutil.rmtree(directory)
    return seconds


def our_side(refs: list[DataRef], target: FileStore, runner: RayTransferRunner) -> float:
    """One metasched round, its copies deleted afterwards."""
    seconds = metasched_copy(refs, target, runner)
    shutil.rmtree(target.path)
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=10)
    parser.add_argument("--mb", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--dir", default="/var/tmp", help="where the stores live (default /var/tmp)")
    args = parser.parse_args()
    ray = init_embedded_ray(num_cpus=2, resources={}, object_store_mb=256, namespace="bench")
    work = Path(tempfile.mkdtemp(prefix="metasched-bench-", dir=args.dir))
    try:
        source = FileStore(str(work / "alpha-store"))
        refs = [put_blob(source, cloudpickle.dumps(os.urandom(args.mb * 2**20)), object_id=f"obj{i}")
                for i in range(args.objects)]
        total_mb = sum(r.size for r in refs) / 2**20
        print(f"{args.objects} objects, {total_mb:.0f} MB in all, stores under {work}")
        runner = RayTransferRunner()  # as in the scheduler: one transfer actor for the campaign
        ratios = []
        for round_ in range(1, args.rounds + 1):
            raw_dir = work / f"raw-{round_}"
            target = FileStore(str(work / f"beta-store-{round_}"))
            if round_ % 2:  # alternate which goes first
                raw_s, ms_s = raw_side(refs, source, raw_dir), our_side(refs, target, runner)
            else:
                ms_s, raw_s = our_side(refs, target, runner), raw_side(refs, source, raw_dir)
            ratios.append(ms_s / raw_s)
            print(f"round {round_}: raw copy {raw_s:.3f} s ({total_mb / raw_s:.0f} MB/s), metasched "
                  f"{ms_s:.3f} s ({total_mb / ms_s:.0f} MB/s), ratio metasched/raw {ms_s / raw_s:.2f}")
        print(f"best ratio {min(ratios):.2f}, median {sorted(ratios)[len(ratios) // 2]:.2f} (target <= 1.3)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
        ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
