"""Shared by the benchmarks: time a campaign from its first submission to its last result."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

import metasched as ms


def tasks_per_second(name: str, sites: Sequence[Any], submit: Callable[[ms.Campaign], list[Any]]) -> float:
    """Run `submit(campaign)` in a fresh campaign, wait for every future, return tasks per second.

    Exits with a message if any task failed: a fast wrong answer is not a benchmark result.
    """
    with tempfile.TemporaryDirectory() as tmp, \
            ms.Campaign(name, sites=sites, journal=os.path.join(tmp, "bench.db")) as campaign:
        start = time.perf_counter()
        futures = submit(campaign)
        ms.wait(futures)
        elapsed = time.perf_counter() - start
        failed = [f for f in futures if f.exception() is not None]
        if failed:
            raise SystemExit(f"{len(failed)} tasks failed, e.g. {failed[0].exception()}")
    return len(futures) / elapsed


def side_by_side(rounds: int, raw: Callable[[], float], ours: Callable[[int], float], *, raw_label: str,
                 ours_label: str, target: str = "") -> None:
    """Alternate the raw baseline and metasched (`ours(round)`) for `rounds` rounds, printing each ratio
    and the best-of ratio (rates in jobs or tasks per second)."""
    rows = []
    for round_no in range(rounds):
        base, mine = raw(), ours(round_no)
        rows.append((base, mine))
        print(f"round {round_no + 1}: {raw_label} {base:5.1f} jobs/s | {ours_label} {mine:5.1f} tasks/s | "
              f"ratio {mine / base:.2f}", flush=True)
    raw_best, ours_best = max(r for r, _ in rows), max(o for _, o in rows)
    print(f"best of {rounds}: raw {raw_best:.1f}/s, metasched {ours_best:.1f}/s, "
          f"ratio {ours_best / raw_best:.2f}" + (f" (target {target})" if target else ""))
