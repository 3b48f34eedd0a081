"""Commands that check or prepare before (or instead of) running.

config check, sites check, testmatrix; upgrade (a journal an earlier metasched wrote).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from metasched.cli.app import (
    CampaignArg,
    CampaignFileArg,
    app,
    config_app,
    console,
    err_console,
    journal_of,
    load_file,
    sites_app,
)


@config_app.command("check")
def config_check(file: CampaignFileArg) -> None:
    """Validate a campaign file and report every problem with its line and field."""
    loaded = load_file(file)
    console.print(f"{file}: OK: campaign {loaded.spec.campaign.name!r}, {len(loaded.sites)} site(s), "
                  f"{len(loaded.tasks)} task(s) after sweeps")


@sites_app.command("check")
def sites_check(file: CampaignFileArg) -> None:
    """Preflight every site of a campaign file, each as its kind checks it (reachable, a smoke task...)."""
    from metasched.sites.preflight import check_site

    loaded = load_file(file)
    table = Table(title=f"sites of {file}")
    for column in ("site", "check", "result", "detail", "fix"):
        table.add_column(column, overflow="fold")
    failures = 0
    for site in loaded.sites:
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
        loaded = load_file(sites)
        rows = tm.user_rows([site.name for site in loaded.sites])
        env["METASCHED_CONTRACT_SITES"] = str(sites.resolve())
        command = f"metasched testmatrix --sites {sites}"
    else:
        try:
            rows = tm.rows_named(only or [])
        except ValueError as exc:
            err_console.print(str(exc), style="bold red")
            raise typer.Exit(2) from None
        command = ("make matrix" if not only
                   else "metasched testmatrix " + " ".join(f"--only {o}" for o in only))
    md_path = markdown or (root / "docs" / "test-matrix.md" if sites is None else Path("test-matrix.md"))
    json_path = json_out or md_path.with_suffix(".json")
    results = tm.run(rows, root=root, env=env)
    table = tm.cells(rows, results)
    generated = tm.generated_now()
    md_path.parent.mkdir(parents=True, exist_ok=True)
    md_path.write_text(tm.render_markdown(table, generated=generated, command=command,
                                          user_sites=None if sites is None else str(sites)))
    json_path.write_text(json.dumps({"generated": generated, "columns": list(tm.COLUMNS), "rows": table},
                                    indent=2) + "\n")
    failed = [f"{row['name']} / {column}" for row in table for column, cell in row["cells"].items()
              if cell["outcome"] == "fail"]
    verdict = f"[red]{len(failed)} failed[/]: {', '.join(failed)}" if failed else "[green]no failure[/]"
    console.print(f"test matrix written to {md_path} and {json_path}: {verdict}")
    raise typer.Exit(1 if failed else 0)


@app.command()
def upgrade(
    campaign: CampaignArg,
    force: Annotated[bool, typer.Option("--force", help="Upgrade even if the journal changed in the last "
                                        "minute (its campaign may still be running).")] = False,
) -> None:
    """Upgrade a journal an earlier metasched wrote to this version's format, in place (campaign stopped)."""
    import time

    from metasched.journal import Journal
    from metasched.journal_schema import SCHEMA_VERSION
    from metasched.journal_upgrade import last_state

    journal = journal_of(campaign)
    version, last, tasks = last_state(journal)
    if version == SCHEMA_VERSION:
        console.print(f"{journal}: already schema {SCHEMA_VERSION}; nothing to do")
        return
    if last is not None and time.time() - last < 60 and not force:
        err_console.print(f"{journal} changed {time.time() - last:.0f} s ago: is its campaign still running? "
                          "A scheduler of the earlier version fails at its next write once the journal is "
                          "upgraded. Stop it first, or pass --force.", style="bold red")
        raise typer.Exit(2)
    before, start = _megabytes(journal), time.perf_counter()
    Journal(journal).open().close()
    took = time.perf_counter() - start
    console.print(f"{journal}: upgraded from schema {version} to {SCHEMA_VERSION} ({tasks:,} tasks, "
                  f"{before:,.1f} MB -> {_megabytes(journal):,.1f} MB) in {took:.1f} s")


def _megabytes(journal: Path) -> float:
    files = (journal, journal.with_name(journal.name + "-wal"))
    return sum(f.stat().st_size for f in files if f.exists()) / 2**20
