"""Following a campaign while it runs: its events (every state change), and a running task's output.

Both read only the journal and the files attempts write, so they work from another terminal, attached or
not, while the scheduler runs (or after it stopped: then they print what there is and end).
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from metasched.attempt_dir import AttemptDir
from metasched.cli.app import CampaignArg, app, console, err_console, journal_of
from metasched.journal import Journal
from metasched.journal_schema import JournalEvent, LiveAttempt, StoredTask
from metasched.records import TaskId, TaskKind
from metasched.scheduler.states import TaskState
from metasched.ssh import SSH_FAILED, shared_master

POLL_S = 0.5
LAST_READS = 20  # after the task ended, polls that may try again to read the rest of its output


class Unreadable(Exception):
    """A site's file could not be read just now (its SSH master is down): what ssh said."""


@app.command()
def events(
    campaign: CampaignArg,
    task: Annotated[str | None, typer.Option("--task", help="Only this task's (by name or id).")] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new events until every task "
                                         "has finished (Ctrl-C stops following only).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line (JSON Lines) instead of "
                                          "text.")] = False,
) -> None:
    """Every state change of the campaign's tasks, oldest first.

    Each with its time, task, change, site, attempt, job id and why.
    """
    journal = journal_of(campaign)
    task_id = None
    if task is not None:
        with Journal(journal).open(read_only=True) as stored:
            found = stored.task_named(task)
        if found is None:
            err_console.print(f"{journal}: no task named {task!r}", style="bold red")
            raise typer.Exit(2)
        task_id = found.spec.task_id
    for event in _events(journal, task_id, follow=follow):
        if as_json:
            print(json.dumps(dataclasses.asdict(event)), flush=True)
        else:
            console.out(event.line(), highlight=False)


def _events(journal: Path, task_id: TaskId | None, *, follow: bool) -> Iterator[JournalEvent]:
    after = 0
    while True:
        with Journal(journal).open(read_only=True) as stored:
            new = stored.events(after=after, task_id=task_id)
        yield from new
        after = new[-1].seq if new else after
        if not follow or (not new and _finished(journal, task_id)):
            return
        time.sleep(POLL_S)


def _finished(journal: Path, task_id: TaskId | None) -> bool:
    with Journal(journal).open(read_only=True) as stored:
        if task_id is not None:
            found = stored.task_named(task_id)
            return found is None or found.state.terminal
        by_site = stored.counts()
    return all(TaskState(state).terminal for by_state in by_site.values() for state in by_state)


def wait_for_task(journal: Path, task: str, *, wait: bool) -> StoredTask | None:
    """The task by name or id; with `wait`, until it is submitted (a campaign may still be starting)."""
    said = False
    while True:
        with Journal(journal).open(read_only=True) as stored:
            found = stored.task_named(task)
        if found is not None or not wait:
            return found
        if not said:
            err_console.print(f"waiting for a task named {task!r} in {journal} (Ctrl-C to stop)",
                              markup=False)
            said = True
        time.sleep(POLL_S)


def follow_output(journal: Path, task: str) -> None:
    """Print a task's output as its attempts write it, until it has finished.

    Works where attempts write to a directory this machine sees (batch sites: the shared directory) or
    reaches over SSH (a site with ``transport = "ssh"``); elsewhere it says so and waits for the end.
    """
    with Journal(journal).open(read_only=True) as stored:
        sites: dict[str, Any] = {site.name: site for site in stored.get_meta("sites") or []}
    shown: dict[Path, int] = {}
    current: str | None = None
    read: Callable[[Path, int], bytes] = _read_here
    last_reads = 0  # reads since the task ended (the site may be out of reach for a moment)
    while True:
        with Journal(journal).open(read_only=True) as stored:
            found = stored.task_named(task)
            assert found is not None  # noqa: S101  (the caller found it; tasks are never removed)
            live: LiveAttempt | None = next((a for a in stored.live_attempts()
                                              if a.task_id == found.spec.task_id), None)
        if live is not None and live.attempt_id != current:
            current = live.attempt_id
            site = sites.get(live.site)
            shared = getattr(site, "shared_dir", None)
            job = f" (job {live.native_id})" if live.native_id else ""
            err_console.print(f"--- attempt {live.attempt_id} at {live.site}{job}"
                              + ("" if shared else ": this site keeps no output files here; its output is "
                                 "shown when the task ends"), markup=False)
            files = _output_files(AttemptDir.of(shared, live.attempt_id), found.spec.kind) if shared else []
            shown = dict.fromkeys(files, 0)
            read = _reader(site)
        unread: dict[Path, str] = {}
        for path in shown:
            try:
                shown[path] = _print_new(path, shown[path], read)
            except Unreadable as exc:  # read again at the next poll, from the same offset
                unread[path] = str(exc)
        if found.state.terminal:
            last_reads += 1
            if not unread:
                return
            if last_reads >= LAST_READS:
                for path, said in unread.items():
                    err_console.print(f"could not read the end of {path}: {said}; `metasched logs "
                                      f"{journal} {task}` prints the output the journal keeps",
                                      markup=False)
                return
        time.sleep(POLL_S)


def _output_files(attempt: AttemptDir, kind: TaskKind) -> list[Path]:
    """A command's own output files, or the job's (a Python task's prints)."""
    if kind is TaskKind.COMMAND:
        return [attempt.command_stdout, attempt.command_stderr]
    return [attempt.job_stdout, attempt.job_stderr]


def _reader(site: Any) -> Callable[[Path, int], bytes]:
    """How to read a file of the site's shared directory from an offset, here or at the site.

    At a site over SSH, through this process's SSH master to it (``tail -c``: a round trip per file and
    poll; the master closes when this process exits); ``Unreadable`` while the site cannot be reached.
    """
    if getattr(site, "transport", "local") != "ssh":
        return _read_here
    master = shared_master(site.name, site.host, site.ssh_options, site.ssh_control_path)

    def read_there(path: Path, offset: int) -> bytes:
        said = master.reopen_if_due()
        if said:
            raise Unreadable(said)
        try:
            out = subprocess.run(master.argv(["tail", "-c", f"+{offset + 1}", "--", str(path)]),
                                 stdin=subprocess.DEVNULL, capture_output=True, timeout=30, check=False)
        except subprocess.TimeoutExpired as exc:
            raise Unreadable(f"ssh {site.host} did not answer within 30 s") from exc
        if out.returncode == SSH_FAILED:
            raise Unreadable(" ".join(out.stderr.decode(errors="replace").split())[-300:])
        return out.stdout if out.returncode == 0 else b""  # (tail: not written yet)

    return read_there


def _read_here(path: Path, offset: int) -> bytes:
    try:
        with path.open("rb") as source:
            source.seek(offset)
            return source.read()
    except FileNotFoundError:
        return b""


def _print_new(path: Path, offset: int, read: Callable[[Path, int], bytes]) -> int:
    """Write what `path` gained since `offset` to our stdout (its stderr for *.err files).

    ``Unreadable`` if the site cannot be reached just now.
    """
    data = read(path, offset)
    if data:
        out = sys.stderr if path.suffix == ".err" else sys.stdout
        out.write(data.decode(errors="replace"))
        out.flush()
    return offset + len(data)
