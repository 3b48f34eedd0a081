"""CLI commands that act on a campaign through its journal.

Steering a running scheduler (cancel, migrate, checkpoint, drain: requests it answers within about a
second) and the campaign's stored data (data, delete).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from metasched.cli.app import CampaignArg, app, console, err_console, journal_of
from metasched.cli.reading import counts, totals
from metasched.journal import Journal
from metasched.journal_schema import RequestKind
from metasched.records import TaskId


@app.command()
def cancel(
    campaign: CampaignArg,
    tasks: Annotated[list[str] | None, typer.Argument(help="Task names; none means every task.")] = None,
) -> None:
    """Ask the campaign's running scheduler to cancel tasks (it acts within about a second)."""
    journal = journal_of(campaign)
    store = Journal(journal).open()
    try:
        store.request(RequestKind.CANCEL, tasks)
    finally:
        store.close()
    what = ", ".join(tasks) if tasks else "every unfinished task"
    console.print(f"cancellation of {what} requested")


@app.command()
def drain(
    campaign: CampaignArg,
    site: Annotated[str, typer.Argument(help="The site to drain.")],
    undo: Annotated[bool, typer.Option("--undo", help="Let the site take new work again.")] = False,
    wait: Annotated[float, typer.Option(help="Seconds to wait for the scheduler's answer.")] = 30.0,
) -> None:
    """Stop placing work at a site and move its running checkpointable tasks to other sites.

    Tasks that cannot be checkpointed finish where they are. Exit status as for migrate.
    """
    _ask_scheduler(campaign, RequestKind.UNDRAIN if undo else RequestKind.DRAIN, None, wait, target=site)


@app.command()
def checkpoint(
    campaign: CampaignArg,
    task: Annotated[str, typer.Argument(help="The task's name (submitted with checkpoint='criu').")],
    wait: Annotated[float, typer.Option(help="Seconds to wait for the scheduler's answer.")] = 30.0,
) -> None:
    """Take a restart point of a running task now; it keeps running (if it is later lost, it restores).

    Exit status: 0 requested, 1 refused (the reason is printed), 2 no answer (is the campaign running?).
    """
    _ask_scheduler(campaign, RequestKind.CHECKPOINT, task, wait)


@app.command()
def migrate(
    campaign: CampaignArg,
    task: Annotated[str, typer.Argument(help="The task's name (checkpoint='criu' or 'cooperative').")],
    to: Annotated[str, typer.Option("--to", help="The site to continue the task at.")],
    wait: Annotated[float, typer.Option(help="Seconds to wait for the scheduler's answer.")] = 30.0,
) -> None:
    """Checkpoint a running task and continue it at another site (the running scheduler does it).

    Exit status: 0 the checkpoint was requested, 1 refused (the reason is printed), 2 no answer
    (is the campaign running?).
    """
    _ask_scheduler(campaign, RequestKind.MIGRATE, task, wait, target=to)


def _ask_scheduler(campaign: str, kind: RequestKind, task: str | None, wait: float, *,
                   target: str | None = None) -> None:
    """Leave a request in the journal and print the running scheduler's answer; exit 0/1/2."""
    journal = journal_of(campaign)
    store = Journal(journal).open()
    try:
        request = store.request(kind, [task] if task else None, target=target)
        deadline = time.monotonic() + wait
        handled, outcome = store.outcome_of(request)
        while outcome is None and time.monotonic() < deadline:
            time.sleep(0.2)
            handled, outcome = store.outcome_of(request)
    finally:
        store.close()
    if outcome is None:
        state = "taken but not answered" if handled else "not taken"
        err_console.print(f"the {kind.value} request was {state} within {wait:g} s: is campaign "
                          f"{campaign} running (metasched status)?", style="bold red")
        raise typer.Exit(2)
    accepted = outcome.startswith("ok: ")
    (console if accepted else err_console).print(outcome.split(": ", 1)[1], markup=False)
    raise typer.Exit(0 if accepted else 1)


@app.command()
def data(
    campaign: CampaignArg,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List the objects a campaign stored: task, store, size, transfer time; evicted ones marked."""
    journal = journal_of(campaign)
    with Journal(journal).open(read_only=True) as stored:
        names = {task_id: name for task_id, name, _ in stored.task_index()}
        replicas = stored.objects()
    rows: list[dict[str, Any]] = [
        {"object": oid, "task": names.get(TaskId(oid.split(".")[0]), "?"), "store": store, "bytes": size,
         "copy": not origin, "transfer_s": transfer_s, "evicted": evicted}
        for oid, store, size, origin, transfer_s, evicted in replicas]
    if as_json:
        typer.echo(json.dumps(rows, indent=1))
        return
    table = Table(title=f"stored objects of {journal}")
    for column in ("object", "task", "store", "MB", "kind", "transfer s", "state"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["object"], row["task"], row["store"], f"{row['bytes'] / 1e6:.1f}",
                      "copy" if row["copy"] else "origin",
                      f"{row['transfer_s']:.2f}" if row["transfer_s"] is not None else "",
                      "evicted" if row["evicted"] else "stored")
    console.print(table)


@app.command()
def delete(
    campaign: CampaignArg,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a finished campaign: evict every object it stored (outputs too), then remove its journal."""
    from metasched.catalog import forget
    from metasched.data.objects import evict

    journal = journal_of(campaign)
    by_site, _ = counts(journal)
    if totals(by_site)[2]:
        err_console.print(f"{campaign} has unfinished tasks; cancel it first (metasched cancel {campaign})",
                          style="bold red")
        raise typer.Exit(2)
    if not yes and not typer.confirm(f"delete {journal} and every object it stored?"):
        raise typer.Exit(1)
    stored = Journal(journal).open()
    try:
        replicas = stored.replicas()
    finally:
        stored.close()
    failures = 0
    for ref, _ in replicas:
        try:
            evict(ref)
        except Exception as exc:  # report and go on: the journal stays so the user can retry
            failures += 1
            err_console.print(f"could not evict {ref.describe()}: {exc}", markup=False)
    if failures:
        err_console.print(f"{failures} object(s) could not be evicted; the journal {journal} is kept",
                          style="bold red")
        raise typer.Exit(1)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{journal}{suffix}").unlink(missing_ok=True)
    forget(journal)
    console.print(f"deleted {journal} and {len(replicas)} stored object(s)")
