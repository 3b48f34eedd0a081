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
