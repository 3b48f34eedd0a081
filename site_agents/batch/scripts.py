"""Job scripts of batch attempts (pure: text in, text out; every value shell-quoted).

Every script starts the same way: the scheduler's directive lines, ``cd`` into the attempt directory and
the **run-once claim**: the first run makes the attempt's claim marker (``mkdir``, atomic); a scheduler
that runs the same job again (OpenPBS requeues jobs still starting when its server stops, even with
``-r n``; a Slurm controller that lost its state may start finished jobs again) finds the marker, records
the refused run and exits at once without touching the attempt's records. Then the body: the worker, a
command, Apptainer or the CRIU wrapper (see ``launchers``).
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Sequence

from metasched.attempt_dir import AttemptDir
from metasched.records import TaskSpec

PATH = "export PATH=/usr/local/bin:/usr/bin:/bin"
SBIN_PATH = "export PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"
#: The job's id in whichever scheduler runs it (for the record of a refused second run).
JOB_ID = "${SLURM_JOB_ID:-${PBS_JOBID:-${JOB_ID:-unknown}}}"
NODE = "${SLURMD_NODENAME:-$(hostname)}"  # the node's name as the scheduler knows it, where it says

PROLOGUE = """#!/bin/bash
# metasched attempt {attempt_id}: {what} {task_name!r} ({task_id})
{path}
cd {attempt_dir} || exit 1
if ! mkdir {claim} 2>/dev/null; then
    printf '%s %s %s\\n' "$(date +%s)" "{job_id}" "$(hostname)" >> {refused}
    exit 0
fi
"""

COMMAND_BODY = """warned() {{ date +%s > {warning}; }}
trap warned USR1
record() {{ times > {status_tmp}; t=$(tail -n 1 {status_tmp})
    echo "$1 $start $(date +%s.%N) $t" > {status_tmp} && mv {status_tmp} {status}; }}
start=$(date +%s.%N)
{precheck}cd {cwd} || {{ echo "metasched: cannot enter {cwd_text}" > {err}; record 126; exit 126; }}
{launch} > {out} 2> {err} < /dev/null &
child=$!
while :; do wait "$child"; rc=$?; kill -0 "$child" 2>/dev/null || break; done
cd {attempt_dir} && record "$rc"
exit "$rc"
"""

PYTHON_MODULE_BODY = """export PYTHONPATH={pythonpath}
exec {python} -m {module} {attempt_dir}
"""

APPTAINER_PYTHON_BODY = """{missing}
{mkdir}
have=$({apptainer} {sif} {python} -c {probe} 2>&1 | tail -n 1)
if [ "$have" != {want} ]; then printf 'python %s\\n%s\\n' "{node}" "$have" > {check}; exit 1; fi
exec {apptainer} --bind {binds} --pwd {attempt_dir} --env PYTHONPATH={pythonpath} {sif} \\
    {python} -m metasched.worker {attempt_dir}
"""
PYTHON_VERSION_PROBE = "import sys; print('%d.%d' % sys.version_info[:2])"


def q(value: object) -> str:
    """One shell word."""
    return shlex.quote(str(value))


def script(attempt: AttemptDir, spec: TaskSpec, *, what: str, body: str, path: str = PATH) -> str:
    """A whole job script (without directives): the prologue with the run-once claim, then `body`."""
    return PROLOGUE.format(
        attempt_id=attempt.attempt_id, what=what, task_name=spec.name.replace("\n", " "),
        task_id=spec.task_id, path=path, attempt_dir=q(attempt.path), claim=q(attempt.claim_marker),
        job_id=JOB_ID, refused=q(attempt.refused_runs_file)) + body


def python_module_body(attempt: AttemptDir, *, module: str, python: str, pythonpath: str) -> str:
    """Run a metasched module (the worker, the CRIU wrapper) on the attempt directory."""
    return PYTHON_MODULE_BODY.format(pythonpath=q(pythonpath), python=q(python), module=module,
                                     attempt_dir=q(attempt.path))


def command_body(attempt: AttemptDir, spec: TaskSpec, *, prefix: Sequence[str] = (), wrap: Sequence[str] = (),
                 precheck: str = "") -> str:
    """Run a command task's argv directly (no Python on the node) and record its exit status atomically.

    A walltime runs it under ``timeout`` (TERM, then KILL 5 s later); a walltime stop is recognised by the
    exit status (124 or 137) and the elapsed time. `prefix` starts it once per node (``srun``); `wrap`
    goes right before the argv (``apptainer exec ... IMAGE``); `precheck` is script lines run first (they
    may ``record`` and exit). USR1 (the scheduler's warning before its time limit) is recorded.
    """
    command = spec.command
    if command is None:
        raise ValueError(f"task {spec.task_id} is not a command task")
    launch: list[str] = list(prefix)
    if spec.resources.walltime_s is not None:
        launch += ["timeout", "--kill-after=5s", f"{spec.resources.walltime_s:g}s"]
    if command.env:
        launch += ["env", *(f"{key}={value}" for key, value in command.env)]
    launch += [*wrap, *command.argv]
    cwd = command.cwd or str(attempt.path)
    status = attempt.exit_status_file
    return COMMAND_BODY.format(
        precheck=f"{precheck}\n" if precheck else "", attempt_dir=q(attempt.path), cwd=q(cwd),
        cwd_text=cwd.replace("\n", " ").replace('"', "'").replace("$", "").replace("`", ""),
        warning=q(attempt.warning_file), status=q(status), status_tmp=q(status.with_name(".exit-status.tmp")),
        out=q(attempt.command_stdout), err=q(attempt.command_stderr),
        launch=" ".join(q(arg) for arg in launch))


def _bound(paths: Iterable[str]) -> list[str]:
    """The paths to bind: each once, in a stable order."""
    return sorted({p for p in paths if p})


def binds(paths: Iterable[str]) -> str:
    """Apptainer's --bind value: each path at its own place."""
    return ",".join(_bound(paths))


def make_binds(paths: Iterable[str]) -> str:
    """A script line that makes the directories to bind (apptainer refuses what does not exist).

    E.g. a store nobody wrote to yet; made on the node, so also at a site whose files only it sees (SSH).
    """
    return f"mkdir -p -- {' '.join(q(p) for p in _bound(paths))}"


def missing_image_check(attempt: AttemptDir, sif: str, then: str) -> str:
    """A script line: if the SIF is not readable on this node, record it (and `then`)."""
    return f'[ -r {q(sif)} ] || {{ echo "missing {NODE}" > {q(attempt.container_check_file)}; {then}; }}'


def apptainer_python_body(attempt: AttemptDir, *, apptainer: Sequence[str], sif: str, python: str,
                          bind: Iterable[str], pythonpath: str, want: str) -> str:
    """Check the SIF and the image's Python on the node, then run the worker in the image."""
    bind = list(bind)
    return APPTAINER_PYTHON_BODY.format(
        missing=missing_image_check(attempt, sif, "exit 1"), mkdir=make_binds(bind),
        apptainer=" ".join(q(a) for a in apptainer),
        sif=q(sif), python=q(python), probe=q(PYTHON_VERSION_PROBE), want=q(want), node=NODE,
        check=q(attempt.container_check_file), binds=q(binds([str(attempt.path), *bind])),
        attempt_dir=q(attempt.path), pythonpath=q(pythonpath))
