"""What every batch-scheduler agent shares: attempts as directories on the site's shared filesystem.

An attempt's directory holds its job script and inputs and, once it ends, its own record of how: the
worker's ``outcome.pkl`` (Python tasks) or the ``exit-status`` file the command script writes (commands).
Agents trust that record first and ask the scheduler only to explain a job that ended without one. The
scripts here carry no scheduler directives: each agent adds its own (``#SBATCH`` on the command line,
``#$`` lines) around them.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from metasched.data.objects import DataContext
from metasched.records import AttemptId, RemoteFailure, TaskOutcome, TaskSpec
from metasched.worker import command_outcome, store_if_big
from site_agents.base import AttemptUpdate

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
#: A scheduler's own walltime limit is the task's walltime plus this: metasched's worker stops the task at
#: its exact walltime first and reports it precisely; the scheduler's limit only catches a worker that could
#: not (Grid Engine's h_rt, PBS's walltime).
WALLTIME_MARGIN_S = 60
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


def job_script(*, attempt_id: str, spec: TaskSpec, attempt_dir: str, python: str, pythonpath: str) -> str:
    """The batch script: run metasched's worker on the attempt directory (values shell-quoted)."""
    return JOB_SCRIPT.format(
        attempt_id=attempt_id, task_name=spec.name.replace("\n", " "), task_id=spec.task_id,
        pythonpath=shlex.quote(pythonpath), attempt_dir=shlex.quote(attempt_dir), python=shlex.quote(python),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class ExitStatus:
    """What a command job's script recorded: exit status and wall-clock span."""

    returncode: int
    elapsed_s: float


def parse_exit_status(text: str) -> ExitStatus | None:
    """Parse ``<rc> <start> <end>`` written by the command job script; None if incomplete."""
    parts = text.split()
    try:
        return ExitStatus(returncode=int(parts[0]), elapsed_s=max(0.0, float(parts[2]) - float(parts[1])))
    except (IndexError, ValueError):
        return None


def attempts_dir(shared_dir: str) -> Path:
    """Where a site's attempt directories live, in its shared filesystem."""
    return Path(shared_dir) / ".metasched" / "attempts"


def tail(path: Path, limit: int | None = 4000) -> str:
    """The end of a text file (all of it with limit=None); empty if it cannot be read."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return text if limit is None else text[-limit:]


def failed(attempt_id: AttemptId, error_type: str, message: str, *, traceback: str = "",
           native_id: str | None = None) -> AttemptUpdate:
    """An attempt that ended in a failure the task's code did not raise (scheduler, submission...)."""
    return AttemptUpdate(attempt_id=attempt_id, native_id=native_id, outcome=TaskOutcome(
        failure=RemoteFailure(error_type=error_type, message=message, traceback=traceback)))


def command_outcome_in(directory: Path, spec: TaskSpec, data: DataContext | None) -> TaskOutcome | None:
    """A command job's outcome from its exit-status file and output files; None until it is complete.

    A walltime stop is recognised by the exit status of ``timeout`` (124, or 137 after its KILL) and the
    time the command ran; a big output goes to the site's store like any result.
    """
    try:
        status = parse_exit_status((directory / EXIT_STATUS_FILE).read_text())
    except FileNotFoundError:
        return None
    if status is None:
        return None
    walltime = spec.resources.walltime_s
    stopped = (walltime is not None and status.returncode in (124, 137)
               and status.elapsed_s >= walltime - 0.5)
    outcome = command_outcome(spec, returncode=status.returncode, walltime_exceeded=stopped,
                              stdout=tail(directory / COMMAND_STDOUT, None),
                              stderr=tail(directory / COMMAND_STDERR, None))
    return store_if_big(spec, outcome, data)


def check_directives(spec: TaskSpec, lines: Sequence[str], scheduler: str) -> None:
    """Refuse a directive that would span lines (a value with a newline would inject more directives)."""
    for line in lines:
        if any(c in line for c in "\n\r"):
            raise ValueError(f"task {spec.name!r}: a {scheduler} directive would span lines: {line!r}")
