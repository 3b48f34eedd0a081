"""Per-task resource use as `metasched status` and the report show it: per site, and the heaviest attempts.

The numbers are what each attempt's worker measured (metasched.worker.usage), journaled in the table
``usage``: two SQL queries, the per-site sums reading every measured attempt (0.7 s per million).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from metasched.journal import Journal
from metasched.journal_schema import AttemptUsage, SiteUsage

SITE_COLUMNS = ("site", "measured attempts", "wall (h)", "CPU (h)", "cores busy", "peak memory (MB)")
ATTEMPT_COLUMNS = ("task", "attempt", "site", "state", "wall (s)", "CPU (s)", "CPU efficiency",
                   "peak memory (MB)", "memory asked (MB)")
HEAVIEST = 10


def read_use(journal: Path, limit: int = HEAVIEST) -> tuple[list[SiteUsage], list[AttemptUsage]]:
    """Each site's totals and the `limit` attempts that ran longest (read-only)."""
    with Journal(journal).open(read_only=True) as stored:
        return stored.usage_by_site(), stored.heaviest_attempts(limit)


def _number(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def site_rows(sites: list[SiteUsage]) -> list[tuple[str, ...]]:
    """SITE_COLUMNS of each site; "cores busy" is CPU time over wall time (1.0: one core throughout)."""
    return [(u.site, str(u.attempts), _number(u.wall_s / 3600, 3), _number(u.cpu_s / 3600, 3),
             _number(u.cpu_s / u.wall_s if u.wall_s > 0 else None), _number(u.max_rss_mb, 1)) for u in sites]


def attempt_rows(attempts: list[AttemptUsage]) -> list[tuple[str, ...]]:
    """ATTEMPT_COLUMNS of each attempt; CPU efficiency is CPU time over (wall time x cores asked)."""
    return [(a.task_name, a.attempt_id, a.site, a.state, _number(a.wall_s), _number(a.cpu_s),
             _number(a.cpu_efficiency), _number(a.max_rss_mb, 1), str(a.memory_mb) if a.memory_mb else "-")
            for a in attempts]


def as_json(sites: list[SiteUsage], attempts: list[AttemptUsage]) -> dict[str, Any]:
    """The ``usage`` and ``heaviest`` members of ``metasched status --json``."""
    return {"usage": {u.site: {k: v for k, v in asdict(u).items() if k != "site"} for u in sites},
            "heaviest": [{**asdict(a), "cpu_efficiency": a.cpu_efficiency} for a in attempts]}
