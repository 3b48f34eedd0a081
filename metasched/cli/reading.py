"""Commands that read a campaign's journal (also while it runs): status, watch, logs, report."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Group
from rich.table import Table

from metasched import resource_use
from metasched.cli.app import CampaignArg, app, console, err_console, journal_of
from metasched.cli.following import follow_output, wait_for_task
from metasched.journal import Journal
from metasched.journal_schema import AttemptRecord
from metasched.scheduler.blocks import journaled_blocks
from metasched.scheduler.site_health import SiteProblem, journaled_problems
from metasched.scheduler.states import TaskState
from metasched.sites.base import BlockRecord

STATES = [state.value for state in TaskState]  # the columns of the status table, in a task's order


def counts(journal: Path) -> tuple[dict[str, dict[str, int]], str | None]:
    """Task counts by site and state, and the campaign's name, from a journal (read-only)."""
    with Journal(journal).open(read_only=True) as stored:
        return stored.counts(), stored.campaign()


def pilot_blocks(journal: Path) -> dict[str, list[BlockRecord]]:
    """Each pilot site's journaled blocks (read-only)."""
    with Journal(journal).open(read_only=True) as stored:
        return journaled_blocks(stored)


def site_problems(journal: Path) -> dict[str, SiteProblem]:
    """The sites taking no new work, and why, as the running scheduler last journaled (read-only)."""
    with Journal(journal).open(read_only=True) as stored:
        return journaled_problems(stored)


def _problems_table(problems: dict[str, SiteProblem]) -> Table:
    table = Table(title="sites taking no new work")
    for column in ("site", "since", "why"):
        table.add_column(column)
    for site, said in sorted(problems.items()):
        table.add_row(site, time.strftime("%H:%M:%S", time.localtime(said["since"])), said["problem"])
    return table


def _blocks_table(blocks: dict[str, list[BlockRecord]]) -> Table:
    """Live blocks one per row; ended ones counted per site."""
    table = Table(title="pilot blocks")
    for column in ("site", "block", "job", "state", "nodes", "detail"):
        table.add_column(column)
    for site, records in sorted(blocks.items()):
        for record in records:
            if record.state != "ended":
                table.add_row(site, record.block_id, record.job_id, record.state, str(record.nodes),
                              record.detail)
        ended = [r for r in records if r.state == "ended"]
        if ended:
            table.add_row(site, f"{len(ended)} ended", "", "ended", "", f"last: {ended[-1].detail}")
    return table


def totals(by_site: dict[str, dict[str, int]]) -> tuple[int, int, int]:
    """(done, failed or cancelled, unfinished) over every site of `counts`."""
    done = sum(by.get("done", 0) for by in by_site.values())
    failed = sum(by.get("failed", 0) + by.get("cancelled", 0) for by in by_site.values())
    return done, failed, sum(sum(by.values()) for by in by_site.values()) - done - failed


def journal_holds(journal: Path, name: str) -> bool:
    """True if `journal` already has tasks of campaign `name`."""
    if not journal.is_file():
        return False
    by_site, owner = counts(journal)
    return owner == name and bool(by_site)


def _table(title: str, columns: tuple[str, ...], rows: list[tuple[str, ...]]) -> Table:
    table = Table(title=title)
    for i, column in enumerate(columns):
        table.add_column(column, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*row)
    return table


def _status_table(journal: Path, by_site: dict[str, dict[str, int]]) -> Table:
    table = Table(title=f"journal {journal}")
    table.add_column("site")
    for state in STATES:
        table.add_column(state, justify="right")
    for site, by_state in sorted(by_site.items()):
        table.add_row(site, *(str(by_state.get(s, 0)) for s in STATES))
    return table


@app.command()
def watch(
    campaign: CampaignArg,
    interval: Annotated[float, typer.Option(help="Seconds between refreshes.")] = 1.0,
) -> None:
    """Follow a campaign's per-site counts until every task has finished (Ctrl-C stops watching only)."""
    from rich.live import Live

    journal = journal_of(campaign)

    def table(by_site: dict[str, dict[str, int]]) -> Table | Group:
        """The counts, and the sites taking no new work if any."""
        problems = site_problems(journal)
        counted = _status_table(journal, by_site)
        return Group(counted, _problems_table(problems)) if problems else counted

    by_site, _ = counts(journal)
    with Live(table(by_site), console=console, auto_refresh=False) as live:
        while True:
            by_site, _ = counts(journal)
            live.update(table(by_site), refresh=True)
            if not totals(by_site)[2]:
                break
            time.sleep(interval)
    raise typer.Exit(1 if totals(by_site)[1] else 0)


@app.command()
def logs(
    campaign: CampaignArg,
    task: Annotated[str, typer.Argument(help="The task's name (or id).")],
    placement: Annotated[bool, typer.Option(
        "--placement", help="Also say where each attempt went and why: the predicted start at each site.")]
    = False,
    events: Annotated[bool, typer.Option(
        "--events", help="Also list every state change of the task: time, site, attempt, job id, why.")]
    = False,
    follow: Annotated[bool, typer.Option(
        "--follow", "-f", help="Print the output of the running attempt as it is written, until the task "
        "has finished (batch sites), then what it left.")] = False,
    attempt: Annotated[int | None, typer.Option(
        "--attempt", help="Show only attempt N (1, 2, ...): where it ran, how it ended, what it printed "
        "and used.")] = None,
) -> None:
    """Print what a finished task left, and what was noted about its attempts.

    A command's stdout and stderr, or the error and its traceback (with what the failed attempt printed);
    a Python task's result and what it printed.
    """
    journal = journal_of(campaign)
    found = wait_for_task(journal, task, wait=follow)
    if found is None:
        err_console.print(f"{journal}: no task named {task!r}", style="bold red")
        raise typer.Exit(2)
    if follow:
        follow_output(journal, task)
    with Journal(journal).open(read_only=True) as stored:
        found = stored.task_named(task) or found
        notes = stored.notes_of(found.spec.task_id)
        placed = stored.placements_of(found.spec.task_id) if placement else []
        changes = stored.events(task_id=found.spec.task_id) if events else []
        tries = stored.attempts_of(found.spec.task_id)
    name = found.spec.name
    if attempt is not None:
        _show_attempt(name, tries, attempt)
        return
    console.print(f"task {name!r} ({found.spec.task_id}): {found.state.value}", style="bold")
    for change in changes:
        console.out(change.line(), highlight=False)
    for attempt_id, site, why in placed:
        console.print(f"placed: attempt {attempt_id} at {site}: {why}", markup=False)
    for note in notes:
        console.print(f"note (attempt {note.attempt_id} at {note.site}): {note.note}", markup=False)
    if found.result is not None:
        from metasched.data.driver import load_result

        try:
            value = load_result(found.result)
            value = value.__proxy_wrapped__ if type(value).__name__ == "Proxy" else value
        except Exception as exc:  # a stored result that was evicted or whose store is unreachable
            err_console.print(f"the result of {name!r} cannot be read: {exc}", markup=False)
            raise typer.Exit(1) from None
        if hasattr(value, "stdout") and hasattr(value, "stderr"):
            said = f"--- exit status {value.returncode}"
            console.print(said if follow else f"{said}; stdout:", markup=False)
            if not follow:  # followed: its output was printed as it came
                console.out(value.stdout, end="", highlight=False)
                console.print("--- stderr:", markup=False)
                console.out(value.stderr, end="", highlight=False)
        else:
            console.out(repr(value), highlight=False)
            if tries and (tries[-1].stdout or tries[-1].stderr):
                _printed(tries[-1])
    if found.error is not None:  # followed: without the output tails it was printed as it came
        console.out(found.error.message if follow else str(found.error), highlight=False)
    if found.result is None and found.error is None:
        console.print("(not finished yet)")
    if follow and found.state in (TaskState.FAILED, TaskState.CANCELLED):
        raise typer.Exit(1)


def _printed(record: AttemptRecord) -> None:
    for stream, text in (("stdout", record.stdout), ("stderr", record.stderr)):
        if text:
            console.print(f"--- {stream} (its end, as the attempt printed it):", markup=False)
            console.out(text, end="" if text.endswith("\n") else "\n", highlight=False)


def _show_attempt(name: str, tries: list[AttemptRecord], number: int) -> None:
    record = next((r for r in tries if r.number == number), None)
    if record is None:
        err_console.print(f"task {name!r} has no attempt {number} (it has {len(tries)})", style="bold red")
        raise typer.Exit(2)
    job = f", job {record.native_id}" if record.native_id else ""
    console.print(f"attempt {number} ({record.attempt_id}) of {name!r} at {record.site}{job}: {record.state}",
                  markup=False)
    used = record.usage
    if used is not None:
        peak = "-" if used.max_rss_mb is None else f"{used.max_rss_mb:.1f} MB"
        console.print(f"used: {used.wall_s:.2f} s wall, {used.cpu_s:.2f} s CPU, peak memory {peak}",
                      markup=False)
    if not (record.stdout or record.stderr):
        console.print("(no output recorded for this attempt)")
    _printed(record)


@app.command()
def report(
    campaign: CampaignArg,
    out: Annotated[Path | None, typer.Option("--out", help="Output directory (default: <journal>-report).")]
    = None,
) -> None:
    """Write an HTML report with a Gantt chart, utilization and queue-wait figures."""
    from metasched.report import write_report

    journal = journal_of(campaign)
    target = out or journal.with_name(journal.stem + "-report")
    try:
        index = write_report(journal, target)
    except ValueError as exc:
        err_console.print(str(exc), style="bold red")
        raise typer.Exit(2) from None
    console.print(f"report written to {index}")


@app.command()
def status(
    campaign: Annotated[str | None, typer.Argument(help="A campaign's name or journal; none lists all.")]
    = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    usage: Annotated[bool, typer.Option(
        "--usage", help="Also the resource use per site and the longest attempts (reads every measured "
        "attempt: ~1 s per million).")] = False,
) -> None:
    """Task counts by site and state, read from a campaign's journal (works while it runs)."""
    if campaign is None:
        _list_campaigns(as_json)
        return
    journal = journal_of(campaign)
    by_site, name = counts(journal)
    blocks = pilot_blocks(journal)
    problems = site_problems(journal)
    used, heaviest = resource_use.read_use(journal) if usage else ([], [])
    failed = totals(by_site)[1]
    if as_json:
        by_block = {site: [asdict(r) for r in records] for site, records in blocks.items()}
        typer.echo(json.dumps({"campaign": name, "sites": by_site, "blocks": by_block,
                               "site_problems": problems,
                               **(resource_use.as_json(used, heaviest) if usage else {})}))
    else:
        console.print(_status_table(journal, by_site))
        if problems:
            console.print(_problems_table(problems))
        if blocks:
            console.print(_blocks_table(blocks))
        if used:
            console.print(_table("resource use (as each attempt's worker measured it)",
                                 resource_use.SITE_COLUMNS, resource_use.site_rows(used)))
            console.print(_table("longest attempts", resource_use.ATTEMPT_COLUMNS,
                                 resource_use.attempt_rows(heaviest[:5])))
    raise typer.Exit(1 if failed else 0)


def _list_campaigns(as_json: bool) -> None:
    from metasched.catalog import known

    rows = []
    table = Table(title="campaigns started on this machine")
    for column in ("campaign", "journal", "done", "failed", "unfinished"):
        table.add_column(column)
    for name, journal in sorted(known().items()):
        exists = Path(journal).is_file()
        by_site = counts(Path(journal))[0] if exists else {}
        tasks: dict[str, int] = {}
        for by_state in by_site.values():
            for state, count in by_state.items():
                tasks[state] = tasks.get(state, 0) + count
        rows.append({"campaign": name, "journal": journal, "exists": exists, "tasks": tasks})
        table.add_row(name, journal + ("" if exists else " (missing)"), *map(str, totals(by_site)))
    if as_json:
        typer.echo(json.dumps(rows))
    else:
        console.print(table)
