"""The ``metasched`` Typer application and what every command shares (consoles, argument types, lookups).

Exit codes: 0 success; 1 the campaign ran but some task failed (or a journal has failed tasks);
2 bad input (a campaign file with problems, a missing journal); 130 interrupted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from metasched import __version__
from metasched.config import CampaignFileError, LoadedCampaign, load_campaign_file

app = typer.Typer(name="metasched", help="Run science campaigns across several computing sites.",
                  no_args_is_help=True, add_completion=False)
config_app = typer.Typer(help="Check campaign files.", no_args_is_help=True)
app.add_typer(config_app, name="config")
sites_app = typer.Typer(help="Check the sites of a campaign file.", no_args_is_help=True)
app.add_typer(sites_app, name="sites")
console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)
CampaignFileArg = Annotated[Path, typer.Argument(help="The campaign file (TOML).")]
CampaignArg = Annotated[str, typer.Argument(help="A campaign's name or its journal path.")]


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


def load_file(file: Path) -> LoadedCampaign:
    """A validated campaign file; its problems printed (exit 2) if it has any."""
    try:
        return load_campaign_file(file)
    except CampaignFileError as exc:
        for problem in exc.problems:
            err_console.print(problem, markup=False, highlight=False, soft_wrap=True)
        err_console.print(f"{len(exc.problems)} problem(s) in {file}", style="bold red")
        raise typer.Exit(2) from None


def journal_of(campaign: str) -> Path:
    """The journal of a campaign given by name (as recorded when it started) or by journal path."""
    from metasched.catalog import known, resolve

    journal = resolve(campaign)
    if journal is None:
        names = ", ".join(sorted(known())) or "none recorded"
        err_console.print(f"{campaign}: no such journal or campaign name (known campaigns: {names})",
                          style="bold red")
        raise typer.Exit(2)
    return journal


def main() -> None:
    """Console-script entry point: metasched's own errors (bad journal, bad configuration) as one line."""
    from metasched.errors import MetaschedError

    try:
        app()
    except MetaschedError as exc:
        err_console.print(f"error: {exc}", style="bold red", markup=False, highlight=False)
        raise SystemExit(2) from None
