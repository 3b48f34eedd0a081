"""The ``metasched`` command line."""

from __future__ import annotations

import typer

from metasched import __version__

app = typer.Typer(
    name="metasched",
    help="Run science campaigns across several computing sites.",
    no_args_is_help=True,
    add_completion=False,
)


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


def main() -> None:
    """Console-script entry point."""
    app()
