"""Pure builders of Slurm command lines and job scripts (no I/O)."""

from __future__ import annotations

import math
import shlex
from dataclasses import replace

from metasched.records import CommandSpec, TaskKind, TaskSpec

JOB_SCRIPT = """#!/bin/bash
# metasched attempt {attempt_id}: task {task_name!r} ({task_id})
export PATH=/usr/local/bin:/usr/bin:/bin
export PYTHONPATH={pythonpath}
cd {attempt_dir}
exec {python} -m metasched.worker {attempt_dir}
"""


def job_name(site: str, attempt_id: str) -> str:
    """The Slurm job name of an attempt."""
    return f"ms-{site}-{attempt_id}"


def job_script(*, attempt_id: str, spec: TaskSpec, attempt_dir: str, python: str, pythonpath: str) -> str:
    """The batch script: run metasched's worker on the attempt directory (values shell-quoted)."""
    return JOB_SCRIPT.format(
        attempt_id=attempt_id, task_name=spec.name.replace("\n", " "), task_id=spec.task_id,
        pythonpath=shlex.quote(pythonpath), attempt_dir=shlex.quote(attempt_dir), python=shlex.quote(python),
    )


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
    walltime stops the task first and reports it precisely.
    """
    res = spec.resources
    argv = [
        "sbatch", "--parsable", f"--job-name={name}", f"--chdir={attempt_dir}",
        f"--output={attempt_dir}/job.out", f"--error={attempt_dir}/job.err", "--export=NONE",
        f"--nodes={res.nodes}", f"--cpus-per-task={res.cores}",
    ]
    if res.nodes > 1:
        argv.append("--ntasks-per-node=1")
    if res.memory_mb:
        argv.append(f"--mem={res.memory_mb}M")
    if res.gpus:
        argv.append(f"--gres=gpu:{res.gpus}")
    if res.walltime_s is not None:
        minutes = math.ceil(res.walltime_s / 60) + 1
        argv.append(f"--time={minutes}")
        argv.append(f"--signal=B:USR1@{min(signal_lead_s, max(1, int(res.walltime_s // 2)))}")
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
    return ["squeue", "--noheader", "--states=all", f"--user={user}", "--format=%i|%T|%r"]


def scancel_argv(job_ids: list[str]) -> list[str]:
    """Cancel several jobs in one call."""
    return ["scancel", *job_ids]


def sinfo_argv(partition: str | None) -> list[str]:
    """Nodes of the partition (or all): name, CPUs, memory, state."""
    argv = ["sinfo", "--noheader", "--Node", "--format=%N|%c|%m|%T"]
    if partition:
        argv.append(f"--partition={partition}")
    return argv
