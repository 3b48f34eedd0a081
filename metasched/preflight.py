"""Preflight of a campaign's sites, each failed check with its fix.

Can we reach each site, does what the file names exist, does a smoke task run there, and is its Python
compatible with ours.
"""

from __future__ import annotations

import shlex
import shutil
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from metasched.config import (
    GlobusComputeSiteModel,
    GridEngineSiteModel,
    LocalSiteModel,
    PBSSiteModel,
    SlurmSiteModel,
)
from metasched.errors import SiteAgentError
from site_agents.runner import CommandRunner
from site_agents.slurm import parsers


@dataclass(frozen=True, slots=True, kw_only=True)
class Check:
    """One line of the preflight table."""

    site: str
    check: str
    passed: bool
    detail: str
    fix: str = ""


def check_site(site: LocalSiteModel | SlurmSiteModel | GlobusComputeSiteModel | GridEngineSiteModel
               | PBSSiteModel) -> list[Check]:
    """Every check of one site, in order; later checks are skipped once the site is unreachable."""
    if isinstance(site, LocalSiteModel):
        return list(_local(site))
    if isinstance(site, GridEngineSiteModel):
        return list(_gridengine(site))
    if isinstance(site, GlobusComputeSiteModel):
        return list(_globus_compute(site))
    if isinstance(site, PBSSiteModel):
        return list(_pbs(site))
    return list(_slurm(site))


def _gridengine(site: GridEngineSiteModel) -> Iterator[Check]:
    """Reach the cell (qstat -f) and count its slots."""
    from site_agents.gridengine import commands as ge_commands
    from site_agents.gridengine import parsers as ge_parsers

    def summary(stdout: str) -> tuple[bool, str, str]:
        capacity = ge_parsers.parse_qstat_f_xml(stdout)
        return (capacity.total_slots > 0, f"{capacity.hosts} queue instance(s), {capacity.total_slots} slots",
                "" if capacity.total_slots else "the cell has no queue instance with slots")

    yield _reachable(site.name, site.environment, site.login, ge_commands.qstat_f_argv(), summary,
                     client="the Grid Engine client",
                     running="check SGE_ROOT/SGE_CELL (environment) and that the qmaster runs")


def _pbs(site: PBSSiteModel) -> Iterator[Check]:
    """Reach the server (pbsnodes in the site's dialect) and count the cores of usable nodes."""
    from site_agents.pbs.agent import DIALECTS

    dialect = DIALECTS[site.dialect]

    def summary(stdout: str) -> tuple[bool, str, str]:
        capacity = dialect.parse_nodes(stdout)
        return (capacity.total_cores > 0,
                f"{capacity.nodes} usable node(s), {capacity.total_cores} cores ({site.dialect})",
                "" if capacity.total_cores else "every node is down or offline (pbsnodes)")

    yield _reachable(site.name, site.environment, site.login, dialect.nodes_argv(), summary,
                     client="the PBS client",
                     running="check PBS_SERVER (environment) and that the server runs")


def _reachable(name: str, environment: dict[str, str], login: list[str], argv: list[str],
               summary: Callable[[str], tuple[bool, str, str]], *, client: str, running: str) -> Check:
    """One "reachable" check of a batch site: run `argv` there and summarize what it printed."""
    runner = CommandRunner(site=name, env=environment, timeout_s=30, login=login)
    try:
        out = runner.run(argv)
    except SiteAgentError as exc:
        return Check(site=name, check="reachable", passed=False, detail=str(exc),
                     fix=f"install {client} here, or set login to reach a submit host")
    if not out.ok:
        return Check(site=name, check="reachable", passed=False, detail=out.describe(), fix=running)
    passed, detail, fix = summary(out.stdout)
    return Check(site=name, check="reachable", passed=passed, detail=detail, fix=fix)


def _globus_compute(site: GlobusComputeSiteModel) -> Iterator[Check]:
    """Reach the endpoint and run the agent's probe task (Python, dill and metasched at the endpoint)."""
    try:
        from site_agents.globus_compute import GlobusComputeAgent, GlobusComputeSite
    except ImportError as exc:
        yield Check(site=site.name, check="globus", passed=False, detail=str(exc),
                    fix="pip install 'metasched[globus]'")
        return
    options = site.model_dump(exclude={"kind", "name", "store"})
    agent = GlobusComputeAgent(GlobusComputeSite(site.name, **options))
    try:
        agent.start()
    except SiteAgentError as exc:
        yield Check(site=site.name, check="endpoint", passed=False, detail=str(exc).splitlines()[0],
                    fix="see docs/sites/globus-compute.md")
        return
    finally:
        agent.close()
    details = agent.endpoint_details
    yield Check(site=site.name, check="endpoint", passed=True,
                detail=f"probe task ran: Python {details.get('python_version', '?')}, dill "
                       f"{details.get('dill_version', '?')}")


def _local(site: LocalSiteModel) -> Iterator[Check]:
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    try:
        import ray

        yield Check(site=site.name, check="ray", passed=True, detail=f"ray {ray.__version__} importable")
    except ImportError as exc:
        yield Check(site=site.name, check="ray", passed=False, detail=str(exc),
                    fix="install metasched's dependencies in this environment (pip install metasched)")
    yield Check(site=site.name, check="python", passed=True, detail=f"Python {here} (this process)")


def _slurm(site: SlurmSiteModel) -> Iterator[Check]:
    name = site.name
    if not Path(site.slurm_conf).is_file():
        yield Check(site=name, check="slurm_conf", passed=False, detail=f"{site.slurm_conf} does not exist",
                    fix="point slurm_conf at the cluster's slurm.conf")
        return
    if not site.login and shutil.which("sinfo") is None:
        yield Check(site=name, check="client", passed=False, detail="no Slurm client (sinfo) on PATH",
                    fix="install the Slurm client of the cluster's release on this machine, or set login")
        return
    runner = CommandRunner(site=name, env={"SLURM_CONF": site.slurm_conf}, timeout_s=30, login=site.login)
    try:
        out = runner.run(["sinfo", "--noheader", "--Node", "--format=%N|%c|%m|%T"])
    except SiteAgentError as exc:
        yield Check(site=name, check="reachable", passed=False, detail=str(exc),
                    fix="check that the controller is up and reachable from this machine")
        return
    nodes = parsers.parse_sinfo_nodes(out.stdout) if out.ok else []
    if not nodes:
        yield Check(site=name, check="reachable", passed=False, detail=out.describe(),
                    fix="check that the controller named in slurm_conf is up (scontrol ping)")
        return
    yield Check(site=name, check="reachable", passed=True,
                detail=f"{len(nodes)} node(s), {sum(n.cpus for n in nodes)} CPUs")
    checks: list[Check] = []
    if site.partition:
        part = runner.run(["sinfo", "--noheader", f"--partition={site.partition}", "--format=%P"])
        found = part.ok and part.stdout.strip() != ""
        checks.append(Check(site=name, check="partition", passed=found,
                            detail=f"partition {site.partition!r} " + ("exists" if found else "not found"),
                            fix="" if found else "use one of the partitions `sinfo --summarize` lists"))
    checks += [_association(runner, name, kind, value)
               for kind, value in (("account", site.account), ("qos", site.qos)) if value]
    yield from checks
    if not all(c.passed for c in checks):
        return  # a smoke job would only be refused for the same reason
    if not Path(site.shared_dir).is_dir():
        yield Check(site=name, check="shared_dir", passed=False,
                    detail=f"{site.shared_dir} is not a directory",
                    fix="create it on the shared filesystem, or point shared_dir at one")
        return
    smoke = list(_smoke(runner, site))
    yield from smoke
    if site.checkpoint_dir and all(c.passed for c in smoke):
        yield criu_check(site, runner)


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


def _smoke(runner: CommandRunner, site: SlurmSiteModel) -> Iterator[Check]:
    """Run a one-line Python job through sbatch and compare its Python with ours.

    Not srun: its I/O sockets would listen on this machine's hostname address, not on loopback.
    """
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    directory = Path(site.shared_dir) / ".metasched" / "preflight" / uuid.uuid4().hex[:12]
    directory.mkdir(parents=True, exist_ok=True)
    script = directory / "job.sh"
    probe = "import sys; print('%d.%d' % sys.version_info[:2])"
    script.write_text("#!/bin/bash\nexport PATH=/usr/local/bin:/usr/bin:/bin\n"
                      f"exec {shlex.quote(site.python)} -c {shlex.quote(probe)}\n")
    try:
        out = runner.run(_job_argv(site, directory, "ms-preflight", minutes=1), timeout_s=120)
    except SiteAgentError as exc:
        yield Check(site=site.name, check="smoke task", passed=False, detail=str(exc),
                    fix="check the queue (squeue): the site may be full or the request impossible")
        return
    printed = (directory / "out.txt").read_text().strip() if (directory / "out.txt").exists() else ""
    if not out.ok or not printed:
        err = (directory / "err.txt").read_text().strip()[-300:] if (directory / "err.txt").exists() else ""
        yield Check(site=site.name, check="smoke task", passed=False,
                    detail=f"{out.describe()} {err}".strip(),
                    fix=f"make {site.python!r} available on the compute nodes, or set the site's python")
        return
    theirs = printed.splitlines()[-1]
    yield Check(site=site.name, check="smoke task", passed=True,
                detail=f"{site.python} ran on a compute node")
    yield Check(site=site.name, check="python", passed=theirs == here,
                detail=f"compute nodes: Python {theirs}; here: Python {here}",
                fix="" if theirs == here else f"use Python {here} on the nodes (the site's `python` option)")


def criu_check(site: SlurmSiteModel, runner: CommandRunner | None = None) -> Check:
    """The gate of the CRIU backend at a site: a job dumps and restores a `sleep` in a PID namespace.

    It runs metasched's own checkpoint code (``criu_job --check``) on a compute node, in the site's
    ``checkpoint_dir``, so it fails for every reason a checkpointable task would.
    """
    runner = runner or CommandRunner(site=site.name, env={"SLURM_CONF": site.slurm_conf}, timeout_s=30,
                                     login=site.login)
    fix = ("install CRIU >= 4.1 on the nodes (or set the site's criu), let jobs have CAP_SYS_ADMIN, and "
           "set checkpoint_dir to a writable directory at the same path on every site")
    if not site.checkpoint_dir:
        return Check(site=site.name, check="criu", passed=False, detail="no checkpoint_dir", fix=fix)
    from site_agents.staging import stage_worker

    directory = Path(site.shared_dir) / ".metasched" / "preflight" / uuid.uuid4().hex[:12]
    directory.mkdir(parents=True, exist_ok=True)
    work = f"{site.checkpoint_dir}/.metasched-criu-check-{directory.name}"
    (directory / "job.sh").write_text(
        "#!/bin/bash\nexport PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin\n"
        f"export PYTHONPATH={shlex.quote(str(stage_worker(site.shared_dir)))}\n"
        f"exec {shlex.quote(site.python)} -m metasched.checkpoint.criu_job --check {shlex.quote(work)} "
        f"{shlex.quote(site.criu)}\n")
    try:
        out = runner.run(_job_argv(site, directory, "ms-criu-check", minutes=2), timeout_s=180)
    except SiteAgentError as exc:
        return Check(site=site.name, check="criu", passed=False, detail=str(exc), fix=fix)
    said = ""
    for name in ("out.txt", "err.txt"):
        if (directory / name).exists():
            said += (directory / name).read_text()
    lines = [line for line in said.splitlines() if line.startswith("criu ")]
    detail = lines[-1] if lines else f"{out.describe()} {said.strip()[-300:]}".strip()
    passed = out.ok and detail.startswith("criu works")
    return Check(site=site.name, check="criu", passed=passed, detail=detail, fix="" if passed else fix)


def _job_argv(site: SlurmSiteModel, directory: Path, name: str, *, minutes: int) -> list[str]:
    """The sbatch --wait of DIRECTORY/job.sh, output in DIRECTORY, with the site's partition/account/qos.

    Not srun: its I/O sockets would listen on this machine's hostname address, not on loopback.
    """
    argv = ["sbatch", "--wait", "--parsable", f"--job-name={name}", "--nodes=1", f"--time={minutes}",
            f"--chdir={directory}", f"--output={directory}/out.txt", f"--error={directory}/err.txt"]
    for flag, value in (("partition", site.partition), ("account", site.account), ("qos", site.qos)):
        if value:
            argv.append(f"--{flag}={value}")
    return [*argv, str(directory / "job.sh")]
