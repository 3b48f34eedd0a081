"""Commands that drive a campaign attached or in the background: run, resume, retry, submit."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from metasched.cli.app import CampaignArg, CampaignFileArg, app, console, err_console, journal_of, load_file
from metasched.cli.reading import journal_holds


@app.command()
def run(
    file: CampaignFileArg,
    headless: Annotated[bool, typer.Option("--headless", hidden=True, help="No live display.")] = False,
) -> None:
    """Run a campaign file attached: a live display (progress, ETA, per-site counts, recent events).

    Ctrl-C asks whether to detach (the campaign goes on in the background) or cancel it.
    """
    import metasched as ms

    loaded = load_file(file)
    if journal_holds(loaded.journal, loaded.spec.campaign.name):
        # Running the same file again after a stop or a crash continues the campaign.
        console.print(f"resuming campaign {loaded.spec.campaign.name!r} from {loaded.journal}")
        node_ip = loaded.spec.campaign.ray_node_ip
        _drive(lambda: ms.Campaign.resume(loaded.journal, ray_node_ip=node_ip), lambda c: c.futures(),
               loaded.journal, headless=headless)
        return

    def start() -> Any:
        section = loaded.spec.campaign
        return ms.Campaign(section.name, sites=loaded.sites, journal=loaded.journal,
                           policy=section.placement_policy(), store=section.store,
                           data_threshold=section.data_threshold, ray_node_ip=section.ray_node_ip).start()

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

    journal = journal_of(campaign)
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

    journal = journal_of(campaign)
    _drive(lambda: ms.Campaign.resume(journal), lambda c: c.retry(tasks or None), journal, headless=headless)


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
    loaded = load_file(file)
    console.print(f"campaign {loaded.spec.campaign.name!r} submitted")
    _background("run", str(file), loaded.journal)


