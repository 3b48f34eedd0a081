"""The live terminal display of an attached campaign: progress with ETA, per-site counts, recent events."""

from __future__ import annotations

import time
from collections import Counter, deque
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

_STATUS_EVERY_S = 1.0


def site_table(rows: list[Any], title: str = "per-site summary") -> Table:
    """A table of SiteSummary rows; a last column says why a site takes no new work, if one does not."""
    out = any(row.problem for row in rows)
    table = Table(title=title)
    for column in ("site", "queued", "running", "done", "failed", "predicted wait"):
        table.add_column(column, justify="left" if column == "site" else "right")
    if out:
        table.add_column("takes no new work")
    for row in rows:
        wait = "-" if row.predicted_wait_s is None else f"{row.predicted_wait_s:.0f} s"
        cells = [row.site, str(row.queued), str(row.running), str(row.done), str(row.failed), wait]
        table.add_row(*cells, *([row.problem[:100]] if out else []))
    return table


def blocks_line(journal: Path) -> str:
    """The pilot blocks of each pilot site, by state ("" for a campaign without pilot sites)."""
    from metasched.journal import Journal
    from metasched.scheduler.blocks import journaled_blocks

    with Journal(journal).open(read_only=True) as stored:
        by_site = journaled_blocks(stored)
    parts = []
    for site, records in sorted(by_site.items()):
        states = Counter(r.state for r in records if r.state != "ended")
        nodes = sum(r.nodes for r in records if r.state == "running")
        said = ", ".join(f"{n} {state}" for state, n in sorted(states.items())) or "none live"
        parts.append(f"{site}: {said} ({nodes} nodes joined)")
    return "pilot blocks: " + "; ".join(parts) if parts else ""


def failure_line(name: str, error: BaseException) -> str:
    """One line for a failed task: what happened and why.

    A TaskError's message leads with the task's name and id; they are dropped here (the line starts with
    the name), so a long reason is not cut down to "task 'x' (id) failed at site s (attempt 1): ".
    """
    first = str(error).splitlines()[0] if str(error) else type(error).__name__
    task_id = getattr(error, "task_id", "")
    said = first.split(f"({task_id}) ", 1)[1] if task_id and f"({task_id}) " in first else first
    return f"{name}: FAILED: {said[:200]}"


def follow(campaign: Any, futures: list[Any], console: Console) -> int:
    """Show the campaign until every future is done; return how many failed."""
    progress = Progress(TextColumn("[bold]tasks"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[failed]} failed"), TimeElapsedColumn(),
                        TextColumn("ETA"), TimeRemainingColumn(), console=console)
    job = progress.add_task("tasks", total=len(futures), failed=0)
    recent: deque[str] = deque(maxlen=6)
    seen: set[int] = set()
    failed = 0
    table = site_table([])
    blocks = ""
    pilots = any(getattr(site, "mode", "") == "pilot" for site in campaign.sites)
    last_status = 0.0
    with Live(Group(progress, table), console=console, refresh_per_second=4) as live:
        while True:
            for index, future in enumerate(futures):
                if index in seen or not future.done():
                    continue
                seen.add(index)
                error = future.exception()
                failed += error is not None
                recent.append(f"{future.name}: done" if error is None else failure_line(future.name, error))
            progress.update(job, completed=len(seen), failed=failed)
            now = time.monotonic()
            if now - last_status >= _STATUS_EVERY_S or len(seen) == len(futures):
                table = site_table(campaign.status())
                blocks = blocks_line(campaign.journal_path) if pilots else ""
                last_status = now
            live.update(Group(progress, table, *([Text(blocks)] if blocks else []),
                              Text("\n".join(recent), style="dim")))
            if len(seen) == len(futures):
                return failed
            time.sleep(0.25)
