"""Pure builders of Slurm command lines and job scripts (no I/O)."""

from __future__ import annotations

import math
import shlex
from dataclasses import replace

from metasched.records import CommandSpec, TaskKind, TaskSpec
from site_agents.batch import COMMAND_STDERR as COMMAND_STDERR
from site_agents.batch import COMMAND_STDOUT as COMMAND_STDOUT
from site_agents.batch import EXIT_STATUS_FILE as EXIT_STATUS_FILE
from site_agents.batch import command_job_script as command_job_script
from site_agents.batch import job_script as job_script

CRIU_JOB_SCRIPT = """#!/bin/bash
# metasched attempt {attempt_id}: checkpointable command task {task_name!r} ({task_id})
# The wrapper is the batch shell itself (exec), so Slurm's USR1 warning and scancel --signal reach it.
export PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin
export PYTHONPATH={pythonpath}
cd {attempt_dir} || exit 1
exec {python} -m metasched.checkpoint.criu_job {attempt_dir}
"""


def criu_job_script(*, attempt_id: str, spec: TaskSpec, attempt_dir: str, python: str,
                    pythonpath: str) -> str:
    """The batch script of a checkpointable command task (see metasched.checkpoint.criu_job)."""
    return CRIU_JOB_SCRIPT.format(
        attempt_id=attempt_id, task_name=spec.name.replace("\n", " "), task_id=spec.task_id,
        pythonpath=shlex.quote(pythonpath), attempt_dir=shlex.quote(attempt_dir), python=shlex.quote(python),
    )


def criu_task(spec: TaskSpec, *, workdir: str, criu: str, restore: str | None,
              signal_lead_s: int) -> dict[str, object]:
    """The task.json of a checkpointable command task (time limit and warning lead as sbatch gets them)."""
    command = spec.command
    if command is None:
        raise ValueError(f"task {spec.task_id} is not a command task")
    walltime = spec.resources.walltime_s
    return {"argv": list(command.argv), "env": dict(command.env), "workdir": workdir, "criu": criu,
            "restore": restore, "checkpoint_on_warning": walltime is not None,
            "checkpoint_every_s": spec.checkpoint_every_s,
            "time_limit_s": time_limit_minutes(spec) * 60 if walltime is not None else None,
            "lead_s": warning_lead_s(walltime, signal_lead_s) if walltime is not None else None}


def time_limit_minutes(spec: TaskSpec) -> int:
    """Slurm's --time for a task with a walltime (see sbatch_argv)."""
    assert spec.resources.walltime_s is not None  # noqa: S101  (callers check)
    return math.ceil(spec.resources.walltime_s / 60) + (0 if spec.checkpoint else 1)


def warning_lead_s(walltime_s: float, signal_lead_s: int) -> int:
    """Seconds before the time limit at which Slurm sends USR1: the site's lead, at most half the walltime."""
    return min(signal_lead_s, max(1, int(walltime_s // 2)))


def signal_argv(job_ids: list[str], signal: str) -> list[str]:
    """Send `signal` to the batch shell of these jobs (the checkpoint wrapper)."""
    return ["scancel", "--batch", f"--signal={signal}", *job_ids]


def job_name(site: str, attempt_id: str) -> str:
    """The Slurm job name of an attempt."""
    return f"ms-{site}-{attempt_id}"


def sbatch_argv(
    *,
    spec: TaskSpec,
    name: str,
    attempt_dir: str,
    script: str,
    partition: str | None = None,
    account: str | None = None,
    qos: str | None = None,
    signal_lead_s: int = 60,
) -> list[str]:
    """The sbatch command line of one attempt.

    The walltime given to Slurm is rounded up to whole minutes plus one, so the worker's own (exact)
    walltime stops the task first and reports it precisely. A checkpointable task (``checkpoint``)
    gets exactly its walltime in minutes: its walltime is per attempt, and Slurm's USR1 warning makes
    it checkpoint and continue in a new attempt instead of being killed. The environment is Slurm's default
    (``--export=ALL``) of the small, secret-free environment the runner gives sbatch: ``NONE``/``NIL``
    made each job start 2-4x slower here (they make slurmd rebuild a login environment).
    ``--no-requeue``: when a node dies, metasched (not Slurm) decides about another attempt, so every
    attempt is journaled and counted against the task's retries.
    """
    res = spec.resources
    argv = [
        "sbatch", "--parsable", f"--job-name={name}", f"--chdir={attempt_dir}",
        f"--output={attempt_dir}/job.out", f"--error={attempt_dir}/job.err", "--no-requeue",
        f"--nodes={res.nodes}", f"--cpus-per-task={res.cores}",
    ]
    if res.nodes > 1:
        argv.append("--ntasks-per-node=1")
    if res.memory_mb:
        argv.append(f"--mem={res.memory_mb}M")
    if res.gpus:
        argv.append(f"--gres=gpu:{res.gpus}")
    if res.walltime_s is not None:
        argv.append(f"--time={time_limit_minutes(spec)}")
        argv.append(f"--signal=B:USR1@{warning_lead_s(res.walltime_s, signal_lead_s)}")
    for flag, value in (("partition", partition), ("account", account), ("qos", qos)):
        if value:
            argv.append(f"--{flag}={value}")
    argv.append(script)
    return argv


def launch_spec(spec: TaskSpec) -> TaskSpec:
    """Multi-node command tasks start through ``srun`` (one rank per node) inside their allocation."""
    if spec.kind is not TaskKind.COMMAND or spec.command is None or spec.resources.nodes <= 1:
        return spec
    command: CommandSpec = spec.command
    srun = ("srun", f"--nodes={spec.resources.nodes}", f"--ntasks={spec.resources.nodes}")
    return replace(spec, command=replace(command, argv=srun + command.argv))


def squeue_argv(user: str) -> list[str]:
    """One squeue call for every job of `user`, finished ones included (until MinJobAge)."""
    return ["squeue", "--noheader", "--states=all", f"--user={user}", "--format=%i|%T|%r|%j"]


def sacct_argv(job_ids: list[str]) -> list[str]:
    """Accounting records of several jobs (any user's own jobs, finished or purged from squeue)."""
    return ["sacct", "--noheader", "--parsable2", f"--jobs={','.join(job_ids)}",
            "--format=JobIDRaw,State,ExitCode,JobName"]


def show_config_argv() -> list[str]:
    """The controller's running configuration."""
    return ["scontrol", "show", "config"]


def scancel_argv(job_ids: list[str]) -> list[str]:
    """Cancel several jobs in one call."""
    return ["scancel", *job_ids]


def sinfo_argv(partition: str | None) -> list[str]:
    """Nodes of the partition (or all): name, CPUs, memory, state."""
    argv = ["sinfo", "--noheader", "--Node", "--format=%N|%c|%m|%T"]
    if partition:
        argv.append(f"--partition={partition}")
    return argv
