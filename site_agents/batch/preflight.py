"""``metasched sites check`` for every batch kind: reachable, shared_dir, a smoke job, Python, CRIU.

The smoke job goes through the site's dialect exactly as an attempt does (same submit argv, same status
command), runs ``python -c`` on a compute node with the staged worker on its path, and compares that
Python with this one. A kind adds its own checks (Slurm: partition, account, qos) between reachability
and the smoke job.
"""

from __future__ import annotations

import shlex
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Iterator

from metasched.attempt_dir import AttemptDir
from metasched.errors import SiteAgentError
from metasched.records import CheckpointKind, CommandSpec, Resources, TaskId, TaskKind, TaskSpec
from metasched.sites.kind import Check
from site_agents.batch import scripts
from site_agents.batch.access import SiteUser, group_of
from site_agents.batch.config import BatchSite
from site_agents.batch.dialect import Dialect, JobRequest, JobState
from site_agents.batch.launchers import reaches_criu_wrapper
from site_agents.batch.transport import Transport, worker_path
from site_agents.runner import CommandOutput

HERE = f"{sys.version_info.major}.{sys.version_info.minor}"
PROBE = "import sys, metasched.worker; print('%d.%d' % sys.version_info[:2])"
SMOKE_TIMEOUT_S = 120.0


def batch_preflight(config: BatchSite, dialect: Dialect, transport: Transport, *,
                    explain: Callable[[CommandOutput], str],
                    extra: Callable[[], Iterable[Check]] = lambda: (),
                    probe: list[str] | None = None) -> Iterator[Check]:
    """Every check of a batch site, stopping where later ones would only fail for the same reason.

    `explain` turns the node listing's failure into the fix (it knows the scheduler's own words); `probe`
    lists the nodes for the "reachable" check (default the dialect's own listing; Slurm lists every
    partition there, so a wrong partition is its own check). The transport is closed at the end.
    """
    try:
        yield from _checks(config, dialect, transport, explain=explain, extra=extra, probe=probe)
    finally:
        transport.close()


def _checks(config: BatchSite, dialect: Dialect, transport: Transport, *,
            explain: Callable[[CommandOutput], str], extra: Callable[[], Iterable[Check]],
            probe: list[str] | None) -> Iterator[Check]:
    name, runner = config.name, transport.runner
    try:
        out = runner.run(probe or dialect.nodes_argv())
    except SiteAgentError as exc:
        fix = (f"check that `ssh {config.host}` logs in without a prompt (a key, an agent or Kerberos; the "
               "host key in known_hosts) and that the login node has the scheduler's client"
               if config.transport == "ssh" else
               f"install the {dialect.name} client here, or set login to reach a submit host")
        yield Check(site=name, check="reachable", passed=False, detail=str(exc), fix=fix)
        return
    capacity = dialect.parse_nodes(out)
    if capacity is None or capacity.usable_nodes == 0:
        detail = out.describe() if capacity is None else f"no node takes jobs {capacity.detail}".strip()
        yield Check(site=name, check="reachable", passed=False, detail=detail, fix=explain(out))
        return
    if capacity.memory_untracked:
        memory = "memory not tracked (nodes report none: memory= is neither checked nor asked for)"
    elif capacity.max_memory_mb is not None:
        memory = f"up to {capacity.max_memory_mb} MB per node"
    else:
        memory = (f"memory per node not listed (memory= is asked of the {dialect.name} scheduler, not "
                  "checked at placement)")
    yield Check(site=name, check="reachable", passed=True,
                detail=f"{capacity.usable_nodes} of {capacity.nodes} node(s) take jobs, "
                       f"{capacity.total_cores} cores, {memory}")
    checks = list(extra())
    yield from checks
    if not all(c.passed for c in checks):
        return  # a smoke job would only be refused for the same reason
    problem = transport.shared_dir_problem()
    if problem:
        yield Check(site=name, check="shared_dir", passed=False, detail=problem,
                    fix="create it on the shared filesystem, or point shared_dir at one")
        return
    try:
        user = transport.site_user()
    except SiteAgentError as exc:
        yield Check(site=name, check="shared_dir", passed=False, detail=str(exc),
                    fix="give shared_dir a group both users are in (see detail), or run the commands as this "
                        "user")
        return
    if user.for_group:
        yield Check(site=name, check="shared_dir", passed=True,
                    detail=f"the commands run as {user.name}, who writes attempt directories through their "
                           f"group ({group_of(AttemptDir.root(config.shared_dir))})")
    pythonpath = worker_path(config, transport)
    body = (f"export PYTHONPATH={shlex.quote(pythonpath)}\n"
            f"exec {shlex.quote(config.python)} -c {shlex.quote(PROBE)}\n")
    ok, said = probe_job(config, dialect, transport, "ms-preflight", body, user=user)
    if not ok:
        yield Check(site=name, check="smoke task", passed=False, detail=said,
                    fix=f"make {config.python!r} available on the compute nodes (the site's python), and "
                        "check the queue: the site may be full or the request impossible")
        return
    theirs = said.splitlines()[-1]
    yield Check(site=name, check="smoke task", passed=True, detail=f"{config.python} ran on a compute node")
    yield Check(site=name, check="python", passed=theirs == HERE,
                detail=f"compute nodes: Python {theirs}; here: Python {HERE}",
                fix="" if theirs == HERE else f"use Python {HERE} on the nodes (the site's `python` option)")
    if config.checkpoint_dir:
        yield criu_check(config, dialect, transport, pythonpath, user=user)


def probe_job(config: BatchSite, dialect: Dialect, transport: Transport, name: str, body: str,
              *, user: SiteUser, timeout_s: float = SMOKE_TIMEOUT_S) -> tuple[bool, str]:
    """Run `body` as a short job through the dialect: (it printed something, what it printed or why not)."""
    runner = transport.runner
    attempt = transport.attempt(f"preflight-{uuid.uuid4().hex[:12]}")
    attempt.create(for_group=user.for_group)
    spec = TaskSpec(task_id=TaskId(name), name=name, kind=TaskKind.COMMAND,
                    resources=Resources(walltime_s=60),
                    command=CommandSpec(argv=("true",)))
    request = JobRequest(spec=spec, name=name, attempt=attempt, limit_s=120.0, warning_lead_s=None)
    try:
        header = dialect.header(request)
    except ValueError as exc:  # e.g. a path a directive cannot carry
        return False, str(exc)
    attempt.write_script("\n".join(["#!/bin/bash", *header, scripts.PATH, body]))
    transport.send([attempt])
    out = runner.run(dialect.submit_argv(request, header))
    job_id = dialect.parse_submitted(out) if out.ok else None
    if job_id is None:
        return False, out.describe()
    deadline, gone, ended = time.monotonic() + timeout_s, 0, 0
    while time.monotonic() < deadline:
        time.sleep(0.5)
        statuses = dialect.parse_status(runner.run(dialect.status_argv(user.name, [job_id]))) or {}
        status = statuses.get(dialect.status_key(job_id))
        gone = gone + 1 if status is None else 0
        if status is not None and status.state is JobState.HELD:
            break
        if gone >= 6 or (status is not None and status.state is JobState.FINISHED):
            ended += 1  # its output may reach the shared filesystem a little later
            transport.fetch([attempt])
            printed = attempt.job_output()
            if printed or ended >= 4:
                err = attempt.stderr_tail(300).strip()
                return bool(printed), printed or f"job {job_id} printed nothing{f': {err}' if err else ''}"
    runner.run(dialect.delete_argv([job_id]))
    return False, f"job {job_id} did not finish within {timeout_s:.0f} s (deleted); is the site full?"


def criu_check(config: BatchSite, dialect: Dialect, transport: Transport, pythonpath: str, *,
               user: SiteUser) -> Check:
    """The gate of the CRIU backend at a site: a job dumps and restores a `sleep` in a PID namespace.

    It runs metasched's own checkpoint code (``criu_job --check``) on a compute node, in the site's
    ``checkpoint_dir``, so it fails for every reason a checkpointable task would.
    """
    fix = ("install CRIU >= 4.1 on the nodes (or set the site's criu), let jobs have CAP_SYS_ADMIN, and set "
           "checkpoint_dir to a writable directory at the same path on every site")
    if not reaches_criu_wrapper(config, dialect):
        return Check(site=config.name, check="criu", passed=False,
                     fix="use a Slurm site, or pilot mode, for CRIU tasks",
                     detail=f"{dialect.name} jobs cannot be signalled: checkpoint="
                            f"{CheckpointKind.CRIU.value!r} not offered")
    work = f"{config.checkpoint_dir}/.metasched-criu-check-{uuid.uuid4().hex[:12]}"
    body = (f"{scripts.SBIN_PATH}\nexport PYTHONPATH={shlex.quote(pythonpath)}\n"
            f"exec {shlex.quote(config.python)} -m metasched.checkpoint.criu_job --check {shlex.quote(work)} "
            f"{shlex.quote(config.criu)}\n")
    ok, said = probe_job(config, dialect, transport, "ms-criu-check", body, user=user, timeout_s=180)
    lines = [line for line in said.splitlines() if line.startswith("criu ")]
    detail = lines[-1] if lines else said[-300:]
    passed = ok and detail.startswith("criu works")
    return Check(site=config.name, check="criu", passed=passed, detail=detail, fix="" if passed else fix)
