"""``metasched sites check`` of a Slurm site: its configuration and client, then the batch checks.

Slurm's own words decide the fix: a missing slurm.conf, a client that cannot authenticate with the
site's munge, or a controller that does not answer.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

from metasched.errors import SiteAgentError
from metasched.sites.kind import Check
from site_agents.batch.agent import BatchAgent
from site_agents.batch.preflight import batch_preflight
from site_agents.runner import CommandOutput, CommandRunner
from site_agents.slurm.agent import slurm_agent
from site_agents.slurm.config import SlurmSite
from site_agents.slurm.dialect import SlurmDialect

_FIXES = (  # the first that matches wins: the munge messages name a missing file too
    (("munge", "authentication"), "this client cannot authenticate with the site's munge: run the commands "
     "where the site's munged runs (login=), or use the site's munge key"),
    (("cannot stat file", "could not open", "failed to fetch config"), "slurm_conf does not name a readable "
     "slurm.conf on the side that runs the Slurm commands (this machine, or the login node with login=)"),
    (("unable to contact", "connection refused", "socket timed out"), "the controller does not answer: check "
     "that slurmctld runs (scontrol ping) and is reachable from where the commands run"),
    (("zero bytes were transmitted",), "the controller closed the connection: this client's munge key is "
     "likely not the site's (slurm.conf's AuthInfo names another munged's socket), or slurmctld is "
     "restarting; run the commands where the site's munged runs (login=), or use the site's munge key"),
)


def explain_failure(out: CommandOutput) -> str:
    """The fix for a Slurm command that failed, from Slurm's own words."""
    said = (out.stderr + out.stdout).lower()
    for markers, fix in _FIXES:
        if any(marker in said for marker in markers):
            return fix
    return "check that the controller named in slurm_conf is up (scontrol ping) and the partition exists"


def preflight(site: SlurmSite) -> Iterator[Check]:
    """Every check of one Slurm site (see the module docstring)."""
    agent = slurm_agent(site)
    try:
        yield from _checks(site, agent)
    finally:
        agent.transport.close()  # an SSH site's connection


def _readable(runner: CommandRunner, path: str) -> bool:
    try:
        return runner.run(["test", "-r", path]).ok
    except SiteAgentError:
        return True  # the site cannot be reached: the "reachable" check says why


def _checks(site: SlurmSite, agent: BatchAgent) -> Iterator[Check]:
    runner = agent.runner
    remote = bool(site.login) or site.transport == "ssh"  # slurm_conf is a path on the login side
    if site.slurm_conf and not remote and not Path(site.slurm_conf).is_file():
        yield Check(site=site.name, check="slurm_conf", passed=False,
                    detail=f"{site.slurm_conf} does not exist",
                    fix="point slurm_conf at the cluster's slurm.conf")
        return
    if site.slurm_conf and remote and not _readable(runner, site.slurm_conf):
        where = site.host if site.transport == "ssh" else " ".join(site.login)
        yield Check(site=site.name, check="slurm_conf", passed=False,
                    detail=f"{site.slurm_conf} is not readable on the login side ({where})",
                    fix="give the login node's own path of slurm.conf, or leave slurm_conf out")
        return
    if not remote and shutil.which("sinfo") is None:
        yield Check(site=site.name, check="client", passed=False, detail="no Slurm client (sinfo) on PATH",
                    fix="install the Slurm client of the cluster's release on this machine, or set login")
        return
    assert isinstance(agent.dialect, SlurmDialect)  # noqa: S101  (built just above)
    yield from batch_preflight(site, agent.dialect, agent.transport, explain=explain_failure,
                               extra=lambda: _associations(site, runner),
                               probe=SlurmDialect(site=site.name).nodes_argv())


def _associations(site: SlurmSite, runner: CommandRunner) -> Iterator[Check]:
    if site.partition:
        part = runner.run(["sinfo", "--noheader", f"--partition={site.partition}", "--format=%P"])
        found = part.ok and part.stdout.strip() != ""
        yield Check(site=site.name, check="partition", passed=found,
                    detail=f"partition {site.partition!r} " + ("exists" if found else "not found"),
                    fix="" if found else "use one of the partitions `sinfo --summarize` lists")
    for kind, value in (("account", site.account), ("qos", site.qos)):
        if value:
            yield _association(runner, site.name, kind, value)


def _association(runner: CommandRunner, site: str, kind: str, value: str) -> Check:
    out = runner.run(["sacctmgr", "--noheader", "--parsable2", "show", kind, value, "format=name"])
    said = (out.stderr + out.stdout).lower()
    if not out.ok and ("accounting storage is disabled" in said or "accounting_storage plugin" in said):
        return Check(site=site, check=kind, passed=True, detail=f"{kind} {value!r} not checked: the site "
                     "has no accounting (Slurm will check it at submission)")
    found = out.ok and value in out.stdout.split()
    return Check(site=site, check=kind, passed=found, detail=f"{kind} {value!r} " + (
        "exists" if found else f"not found ({out.describe() if not out.ok else 'no such entry'})"),
        fix="" if found else f"use one that `sacctmgr show {kind}` lists for you")
