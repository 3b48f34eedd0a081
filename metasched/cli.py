"""The ``metasched`` command line.

Exit codes: 0 success; 1 the campaign ran but some task failed (or a journal has failed tasks);
2 bad input (a campaign file with problems, a missing journal); 130 interrupted.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from metasched import __version__
from metasched.config import (
    CampaignFileError,
    EndpointStoreModel,
    FileStoreModel,
    GlobusComputeSiteModel,
    GridEngineSiteModel,
    LoadedCampaign,
    LocalSiteModel,
    PBSSiteModel,
    RedisStoreModel,
    load_campaign_file,
)

app = typer.Typer(
    name="metasched",
    help="Run science campaigns across several computing sites.",
    no_args_is_help=True,
    add_completion=False,
)
config_app = typer.Typer(help="Check campaign files.", no_args_is_help=True)
app.add_typer(config_app, name="config")
console = Console(soft_wrap=True)
CampaignFileArg = Annotated[Path, typer.Argument(help="The campaign file (TOML).")]
CampaignArg = Annotated[str, typer.Argument(help="A campaign's name or its journal path.")]
err_console = Console(stderr=True, soft_wrap=True)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"metasched {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Run science campaigns across several computing sites."""


def _load(file: Path) -> LoadedCampaign:
    try:
        return load_campaign_file(file)
    except CampaignFileError as exc:
        for problem in exc.problems:
            err_console.print(problem, markup=False, highlight=False, soft_wrap=True)
        err_console.print(f"{len(exc.problems)} problem(s) in {file}", style="bold red")
        raise typer.Exit(2) from None


@config_app.command("check")
def config_check(file: CampaignFileArg) -> None:
    """Validate a campaign file and report every problem with its line and field."""
    loaded = _load(file)
    console.print(f"{file}: OK: campaign {loaded.spec.campaign.name!r}, {len(loaded.spec.sites) or 1} "
                  f"site(s), {len(loaded.tasks)} task(s) after sweeps")


def store_of(model: FileStoreModel | RedisStoreModel | EndpointStoreModel | None) -> Any:
    """The store spec a campaign file's ``store`` table describes (None: the default)."""
    from metasched.data.stores import EndpointStore, FileStore, RedisStore

    if model is None:
        return None
    if isinstance(model, FileStoreModel):
        return FileStore(model.path)
    if isinstance(model, EndpointStoreModel):
        return EndpointStore(model.endpoint, proxystore_dir=model.proxystore_dir)
    return RedisStore(model.port, host=model.host)


def build_sites(loaded: LoadedCampaign) -> list[Any]:
    """The site configurations of a loaded campaign file (LocalSite, SlurmSite, ... records)."""
    from site_agents.local import LocalSite
    from site_agents.slurm.config import SlurmSite

    sites: list[Any] = []
    for model in loaded.spec.sites:
        options = model.model_dump(exclude={"kind", "name", "store"})
        options["store"] = store_of(model.store)
        if isinstance(model, LocalSiteModel):
            sites.append(LocalSite(model.name, **options))
        elif isinstance(model, GridEngineSiteModel):
            from site_agents.gridengine.config import GridEngineSite

            options["login"] = tuple(options["login"])
            sites.append(GridEngineSite(model.name, **options))
        elif isinstance(model, PBSSiteModel):
            from site_agents.pbs.config import PBSSite

            options["login"] = tuple(options["login"])
            sites.append(PBSSite(model.name, **options))
        elif isinstance(model, GlobusComputeSiteModel):
            from site_agents.globus_compute.config import GlobusComputeSite

            sites.append(GlobusComputeSite(model.name, **options))
        else:
            sites.append(SlurmSite(model.name, **options))
    return sites or [LocalSite("local")]


@app.command()
def run(
    file: CampaignFileArg,
    headless: Annotated[bool, typer.Option("--headless", hidden=True, help="No live display.")] = False,
) -> None:
    """Run a campaign file attached: a live display (progress, ETA, per-site counts, recent events).

    Ctrl-C asks whether to detach (the campaign goes on in the background) or cancel it.
    """
    import metasched as ms

    loaded = _load(file)
    if _journal_holds(loaded.journal, loaded.spec.campaign.name):
        # Running the same file again after a stop or a crash continues the campaign.
        console.print(f"resuming campaign {loaded.spec.campaign.name!r} from {loaded.journal}")
        _drive(lambda: ms.Campaign.resume(loaded.journal), lambda c: c.futures(), loaded.journal,
               headless=headless)
        return

    def start() -> Any:
        section = loaded.spec.campaign
        return ms.Campaign(section.name, sites=build_sites(loaded), journal=loaded.journal,
                           policy=section.policy, store=store_of(section.store),
                           data_threshold=section.data_threshold).start()

    def submit_all(c: Any) -> list[Any]:
        futures: dict[str, Any] = {}
        for task in loaded.tasks:
            m = task.model
            futures[task.name] = c.command(
                [task.render(a) for a in m.command], env={k: task.render(v) for k, v in m.env.items()},
                cwd=task.render(m.cwd) if m.cwd else None, check=m.check,
                after=[futures[d] for d in loaded.dependencies[task.name]], name=task.name,
                cores=m.cores, memory=m.memory, gpus=m.gpus, nodes=m.nodes, walltime=m.walltime,
                retries=m.retries, sites=m.sites, tags=m.tags, checkpoint=m.checkpoint,
                checkpoint_every=m.checkpoint_every, container=m.image(),
            )
        return list(futures.values())

    _drive(start, submit_all, loaded.journal, headless=headless)


@app.command()
def resume(
    campaign: CampaignArg,
    headless: Annotated[bool, typer.Option("--headless", hidden=True, help="No live display.")] = False,
) -> None:
    """Resume a campaign from its journal, attached: finished tasks stay finished, the rest runs."""
    import metasched as ms

    journal = _journal_of(campaign)
    _drive(lambda: ms.Campaign.resume(journal), lambda c: c.futures(), journal, headless=headless)


@app.command()
def retry(
    campaign: CampaignArg,
    tasks: Annotated[list[str] | None, typer.Argument(help="Task names; none means every failed task.")]
    = None,
    headless: Annotated[bool, typer.Option("--headless", hidden=True, help="No live display.")] = False,
) -> None:
    """Run a campaign's failed or cancelled tasks again (with what they depend on), attached."""
    import metasched as ms

    journal = _journal_of(campaign)
    _drive(lambda: ms.Campaign.resume(journal), lambda c: c.retry(tasks or None), journal, headless=headless)


def _journal_holds(journal: Path, name: str) -> bool:
    """True if `journal` already has tasks of campaign `name`."""
    if not journal.is_file():
        return False
    counts, owner = _counts(journal)
    return owner == name and bool(counts)


def _drive(start: Any, submit_all: Any, journal: Path, *, headless: bool) -> None:
    """Start a campaign, follow it, handle Ctrl-C, print the summary and exit with a status."""
    from metasched.errors import MetaschedError
    from metasched.live import follow, site_table

    choice = "stop"
    try:
        with start() as campaign:
            futures = submit_all(campaign)
            try:
                failed = _wait_quietly(futures) if headless else follow(campaign, futures, console)
            except KeyboardInterrupt:
                choice = "stop" if headless else _detach_or_cancel()
                if choice == "cancel":
                    campaign.cancel(*[f for f in futures if not f.done()])
                raise
            summary = campaign.status()
    except MetaschedError as exc:
        err_console.print(f"error: {exc}", markup=False, highlight=False)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        if choice == "detach":
            _background("resume", str(journal), journal)
        elif choice == "cancel":
            err_console.print(f"cancelled the unfinished tasks; the journal {journal} keeps what finished",
                              style="yellow")
        else:
            err_console.print(f"stopped; unfinished tasks stay in {journal} (metasched resume {journal})",
                              style="yellow")
        raise typer.Exit(130) from None
    console.print()
    console.print(site_table(summary))
    for future in futures:
        error = future.exception()
        if error is not None:
            err_console.print(f"{future.name}: {str(error).splitlines()[0]}", markup=False, highlight=False)
    raise typer.Exit(1 if failed else 0)


def _detach_or_cancel() -> str:
    import sys

    from rich.prompt import Prompt

    if not sys.stdin.isatty():
        return "stop"
    return Prompt.ask("\n[bold]detach[/] (the campaign goes on in the background) or [bold]cancel[/] it?",
                      choices=["detach", "cancel"], default="detach", console=console)


def _background(command: str, target: str, journal: Path) -> None:
    import subprocess
    import sys

    log = journal.with_suffix(".log")
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "metasched", command, "--headless", target],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    console.print(f"campaign running in the background (pid {proc.pid}); journal {journal}; log {log}")
    console.print(f"follow it with: metasched watch {journal}")


def _wait_quietly(futures: list[Any]) -> int:
    import metasched as ms

    ms.wait(futures)
    return sum(1 for f in futures if f.exception() is not None)


@app.command()
def submit(file: CampaignFileArg) -> None:
    """Start a campaign file in the background and return; follow it with `watch` or `status`."""
    loaded = _load(file)
    console.print(f"campaign {loaded.spec.campaign.name!r} submitted")
    _background("run", str(file), loaded.journal)


def _counts(journal: Path) -> tuple[dict[str, dict[str, int]], str | None]:
    import pickle

    db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=10)
    try:
        rows = db.execute("SELECT COALESCE(site, '-'), state, COUNT(*) FROM tasks "
                          "WHERE superseded_by IS NULL GROUP BY 1, 2").fetchall()
        name = db.execute("SELECT value FROM meta WHERE key = 'campaign'").fetchone()
    finally:
        db.close()
    counts: dict[str, dict[str, int]] = {}
    for site, state, count in rows:
        counts.setdefault(site, {})[state] = count
    return counts, pickle.loads(name[0]) if name else None


_STATES = ["pending", "ready", "staging", "submitted", "running", "done", "failed", "cancelled"]


def _totals(counts: dict[str, dict[str, int]]) -> tuple[int, int, int]:
    """(done, failed or cancelled, unfinished) over every site of `_counts`."""
    done = sum(by.get("done", 0) for by in counts.values())
    failed = sum(by.get("failed", 0) + by.get("cancelled", 0) for by in counts.values())
    return done, failed, sum(sum(by.values()) for by in counts.values()) - done - failed


def _status_table(journal: Path, counts: dict[str, dict[str, int]]) -> Table:
    table = Table(title=f"journal {journal}")
    table.add_column("site")
    for state in _STATES:
        table.add_column(state, justify="right")
    for site, by_state in sorted(counts.items()):
        table.add_row(site, *(str(by_state.get(s, 0)) for s in _STATES))
    return table


def _journal_of(campaign: str) -> Path:
    """The journal of a campaign given by name (as recorded when it started) or by journal path."""
    from metasched.catalog import known, resolve

    journal = resolve(campaign)
    if journal is None:
        names = ", ".join(sorted(known())) or "none recorded"
        err_console.print(f"{campaign}: no such journal or campaign name (known campaigns: {names})",
                          style="bold red")
        raise typer.Exit(2)
    return journal


@app.command()
def watch(
    campaign: CampaignArg,
    interval: Annotated[float, typer.Option(help="Seconds between refreshes.")] = 1.0,
) -> None:
    """Follow a campaign's per-site counts until every task has finished (Ctrl-C stops watching only)."""
    from rich.live import Live

    journal = _journal_of(campaign)
    counts, _ = _counts(journal)
    with Live(_status_table(journal, counts), console=console, auto_refresh=False) as live:
        while True:
            counts, _ = _counts(journal)
            live.update(_status_table(journal, counts), refresh=True)
            if not _totals(counts)[2]:
                break
            time.sleep(interval)
    raise typer.Exit(1 if _totals(counts)[1] else 0)


@app.command()
def logs(
    campaign: CampaignArg,
    task: Annotated[str, typer.Argument(help="The task's name (or id).")],
) -> None:
    """Print what a finished task left: a command's stdout and stderr, or the error and its traceback."""
    import pickle


    journal = _journal_of(campaign)
    db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=10)
    try:
        row = db.execute("SELECT name, task_id, state, result, error FROM tasks "
                         "WHERE name = ? OR task_id = ? ORDER BY seq LIMIT 1", (task, task)).fetchone()
    finally:
        db.close()
    if row is None:
        err_console.print(f"{journal}: no task named {task!r}", style="bold red")
        raise typer.Exit(2)
    name, task_id, state, result, error = row
    console.print(f"task {name!r} ({task_id}): {state}", style="bold")
    if result is not None:
        from metasched.data.driver import load_result

        try:
            value = load_result(result)
            value = value.__proxy_wrapped__ if type(value).__name__ == "Proxy" else value
        except Exception as exc:  # a stored result that was evicted or whose store is unreachable
            err_console.print(f"the result of {name!r} cannot be read: {exc}", markup=False)
            raise typer.Exit(1) from None
        if hasattr(value, "stdout") and hasattr(value, "stderr"):
            console.print(f"--- exit status {value.returncode}; stdout:", markup=False)
            console.out(value.stdout, end="", highlight=False)
            console.print("--- stderr:", markup=False)
            console.out(value.stderr, end="", highlight=False)
        else:
            console.out(repr(value), highlight=False)
    if error is not None:
        console.out(str(pickle.loads(error)), highlight=False)
    if result is None and error is None:
        console.print("(not finished yet)")


sites_app = typer.Typer(help="Check the sites of a campaign file.", no_args_is_help=True)
app.add_typer(sites_app, name="sites")


@sites_app.command("check")
def sites_check(file: CampaignFileArg) -> None:
    """Preflight every site of a campaign file: reachable, partition/account/qos, a smoke task, Python."""
    from metasched.preflight import check_site

    loaded = _load(file)
    sites = loaded.spec.sites or [LocalSiteModel(kind="local", name="local")]
    table = Table(title=f"sites of {file}")
    for column in ("site", "check", "result", "detail", "fix"):
        table.add_column(column, overflow="fold")
    failures = 0
    for site in sites:
        for check in check_site(site):
            failures += not check.passed
            table.add_row(check.site, check.check, "[green]pass[/]" if check.passed else "[red]FAIL[/]",
                          check.detail, check.fix)
    console.print(table)
    raise typer.Exit(1 if failures else 0)


@app.command("testmatrix")
def matrix_command(
    sites: Annotated[Path | None, typer.Option("--sites", help="A campaign file: run the conformance suite "
                                               "against its [[sites]] instead of the built-in test sites.")]
    = None,
    only: Annotated[list[str] | None, typer.Option("--only", help="Built-in rows to run (repeatable).")]
    = None,
    markdown: Annotated[Path | None, typer.Option("--markdown", help="Table to write (default "
                                                  "docs/test-matrix.md, or test-matrix.md with --sites).")]
    = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="JSON to write (next to the table).")]
    = None,
    root: Annotated[Path, typer.Option("--root", help="A metasched checkout (the suite lives in tests/).")]
    = Path("."),
) -> None:
    """Run the conformance suite (and fault injection) per scheduler; write the matrix as Markdown + JSON."""
    from metasched import testmatrix as tm

    if not (root / tm.CONTRACT).is_file():
        err_console.print(f"{root.resolve()} is not a metasched checkout ({tm.CONTRACT} is missing): run "
                          "this from the repository, or pass --root", style="bold red")
        raise typer.Exit(2)
    env: dict[str, str] = {}
    if sites is not None:
        try:
            loaded = load_campaign_file(sites)
        except CampaignFileError as exc:
            err_console.print(str(exc), style="bold red")
            raise typer.Exit(2) from None
        rows = tm.user_rows([site.name for site in loaded.spec.sites])
        env["METASCHED_CONTRACT_SITES"] = str(sites.resolve())
        command = f"metasched testmatrix --sites {sites}"
    else:
        try:
            rows = tm.rows_named(only or [])
        except ValueError as exc:
            err_console.print(str(exc), style="bold red")
            raise typer.Exit(2) from None
        command = "make matrix" if not only else "metasched testmatrix " + " ".join(f"--only {o}"
                                                                                    for o in only)
    md_path = markdown or (root / "docs" / "test-matrix.md" if sites is None else Path("test-matrix.md"))
    json_path = json_out or md_path.with_suffix(".json")
    results = tm.run(rows, root=root, env=env)
    table = tm.cells(rows, results)
    generated = tm.generated_now()
    md_path.parent.mkdir(parents=True, exist_ok=True)
    md_path.write_text(tm.render_markdown(table, generated=generated, command=command))
    json_path.write_text(json.dumps({"generated": generated, "columns": list(tm.COLUMNS), "rows": table},
                                    indent=2) + "\n")
    failed = [f"{row['name']} / {column}" for row in table for column, cell in row["cells"].items()
              if cell["outcome"] == "fail"]
    verdict = f"[red]{len(failed)} failed[/]: {', '.join(failed)}" if failed else "[green]no failure[/]"
    console.print(f"test matrix written to {md_path} and {json_path}: {verdict}")
    raise typer.Exit(1 if failed else 0)


@app.command()
def report(
    campaign: CampaignArg,
    out: Annotated[Path | None, typer.Option("--out", help="Output directory (default: <journal>-report).")]
    = None,
) -> None:
    """Write an HTML report with a Gantt chart, utilization and queue-wait figures."""
    from metasched.report import write_report

    journal = _journal_of(campaign)
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
) -> None:
    """Task counts by site and state, read from a campaign's journal (works while it runs)."""
    if campaign is None:
        _list_campaigns(as_json)
        return
    journal = _journal_of(campaign)
    counts, name = _counts(journal)
    failed = _totals(counts)[1]
    if as_json:
        typer.echo(json.dumps({"campaign": name, "sites": counts}))
    else:
        console.print(_status_table(journal, counts))
    raise typer.Exit(1 if failed else 0)


def _list_campaigns(as_json: bool) -> None:
    from metasched.catalog import known

    rows = []
    table = Table(title="campaigns started on this machine")
    for column in ("campaign", "journal", "done", "failed", "unfinished"):
        table.add_column(column)
    for name, journal in sorted(known().items()):
        exists = Path(journal).is_file()
        counts = _counts(Path(journal))[0] if exists else {}
        tasks: dict[str, int] = {}
        for by_state in counts.values():
            for state, count in by_state.items():
                tasks[state] = tasks.get(state, 0) + count
        rows.append({"campaign": name, "journal": journal, "exists": exists, "tasks": tasks})
        table.add_row(name, journal + ("" if exists else " (missing)"), *map(str, _totals(counts)))
    if as_json:
        typer.echo(json.dumps(rows))
    else:
        console.print(table)


def main() -> None:
    """Console-script entry point."""
    app()


# Commands that steer a running campaign or its stored data through the journal (registered on `app`).
from metasched import cli_journal  # noqa: E402,F401
