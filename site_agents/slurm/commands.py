"""Pure builders of Slurm command lines and job scripts (no I/O)."""

from __future__ import annotations

import math
import shlex
from collections.abc import Sequence
from dataclasses import replace

from metasched.records import CommandSpec, TaskKind, TaskSpec

JOB_SCRIPT = """#!/bin/bash
# metasched attempt {attempt_id}: task {task_name!r} ({task_id})
export PATH=/usr/local/bin:/usr/bin:/bin
export PYTHONPATH={pythonpath}
cd {attempt_dir}
exec {python} -m metasched.worker {attempt_dir}
"""


COMMAND_SCRIPT = """#!/bin/bash
# metasched attempt {attempt_id}: command task {task_name!r} ({task_id})
# Runs the command directly (no Python on the compute node) and writes EXIT_STATUS_FILE atomically:
# "<exit status> <start epoch> <end epoch>". USR1 (Slurm's warning before the time limit) is recorded.
export PATH=/usr/local/bin:/usr/bin:/bin
cd {attempt_dir} || exit 1
trap 'date +%s > {warning}' USR1
record() {{ echo "$1 $start $(date +%s.%N)" > .exit-status.tmp && mv .exit-status.tmp {status}; }}
start=$(date +%s.%N)
{precheck}cd {cwd} || {{ echo "metasched: cannot enter {cwd_text}" > {err}; record 126; exit 126; }}
{launch} > {out} 2> {err} < /dev/null &
child=$!
while :; do wait "$child"; rc=$?; kill -0 "$child" 2>/dev/null || break; done
cd {attempt_dir} && record "$rc"
exit "$rc"
"""
EXIT_STATUS_FILE = "exit-status"
COMMAND_STDOUT = "cmd.out"
COMMAND_STDERR = "cmd.err"


def command_job_script(*, attempt_id: str, spec: TaskSpec, attempt_dir: str, wrap: Sequence[str] = (),
                       precheck: str = "") -> str:
    """The batch script of a command task: its argv run directly, every value shell-quoted.

    A walltime runs the command under ``timeout`` (TERM, then KILL 5 s later); the agent recognises a
    walltime stop by the exit status (124 or 137) and the elapsed time. `wrap` goes before the argv
    (e.g. ``apptainer exec ... IMAGE``); `precheck` is a script line run first (it may `record` and exit).
    """
    command = spec.command
    if command is None:
        raise ValueError(f"task {spec.task_id} is not a command task")
    launch: list[str] = []
    if spec.resources.walltime_s is not None:
        launch += ["timeout", "--kill-after=5s", f"{spec.resources.walltime_s:g}s"]
    if command.env:
        launch += ["env", *(f"{key}={value}" for key, value in command.env)]
    launch += [*wrap, *command.argv]
    directory = shlex.quote(attempt_dir)
    return COMMAND_SCRIPT.format(precheck=f"{precheck}\n" if precheck else "",
        attempt_id=attempt_id, task_name=spec.name.replace("\n", " "), task_id=spec.task_id,
        attempt_dir=directory, cwd=shlex.quote(command.cwd or attempt_dir),
        cwd_text=(command.cwd or attempt_dir).replace("\n", " ").replace('"', "'"),
        warning=f"{directory}/walltime-warning", status=f"{directory}/{EXIT_STATUS_FILE}",
        out=f"{directory}/{COMMAND_STDOUT}", err=f"{directory}/{COMMAND_STDERR}",
        launch=" ".join(shlex.quote(arg) for arg in launch),
    )


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


def scancel_argv(job_ids: list[str]) -> list[str]:
    """Cancel several jobs in one call."""
    return ["scancel", *job_ids]


def sinfo_argv(partition: str | None) -> list[str]:
    """Nodes of the partition (or all): name, CPUs, memory, state."""
    argv = ["sinfo", "--noheader", "--Node", "--format=%N|%c|%m|%T"]
    if partition:
        argv.append(f"--partition={partition}")
    return argv
