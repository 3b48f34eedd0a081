"""Container tasks on Slurm sites: Apptainer job scripts and the check they run first (pure, no I/O).

A container attempt's job first checks, on the compute node, that the image's SIF is readable and (for
Python tasks) that the image's Python has the driver's major.minor version. A failed check writes
``container-check`` in the attempt directory (``missing HOST``, or ``python HOST`` and what the image's
Python answered on the next line) and ends the
job; the agent turns it into a ``ContainerError`` that says what to fix. Then the task runs in
``apptainer exec`` with the attempt directory, the site's shared directory, the task's working directory
and its file stores bound at their own paths.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Sequence

from metasched.records import Image, TaskSpec
from site_agents.containers import python_mismatch
from site_agents.slurm.commands import command_job_script as plain_command_script

CHECK_FILE = "container-check"
_PYTHON_VERSION = "import sys; print('%d.%d' % sys.version_info[:2])"
_NODE = "${SLURMD_NODENAME:-$(hostname)}"  # the Slurm node name (the host name where Slurm sets none)

PYTHON_SCRIPT = """#!/bin/bash
# metasched attempt {attempt_id}: Python task {task_name!r} ({task_id}) in {image}
export PATH=/usr/local/bin:/usr/bin:/bin
cd {attempt_dir} || exit 1
{missing}
have=$({apptainer} {sif} {python} -c {probe} 2>&1 | tail -n 1)
if [ "$have" != {want} ]; then printf 'python %s\n%s\n' "{node}" "$have" > {check}; exit 1; fi
exec {apptainer} --bind {binds} --pwd {attempt_dir} --env PYTHONPATH={pythonpath} {sif} \\
    {python} -m metasched.worker {attempt_dir}
"""


def _missing_check(sif: str, attempt_dir: str, then: str) -> str:
    check = shlex.quote(f"{attempt_dir}/{CHECK_FILE}")
    return f'[ -r {shlex.quote(sif)} ] || {{ echo "missing {_NODE}" > {check}; {then}; }}'


def binds(paths: Iterable[str]) -> str:
    """Apptainer's --bind value: each path at its own place, once, in a stable order."""
    return ",".join(sorted({p for p in paths if p}))


def python_job_script(*, attempt_id: str, spec: TaskSpec, attempt_dir: str, apptainer: Sequence[str],
                      bind: Iterable[str], pythonpath: str, want: str) -> str:
    """The batch script of a Python task in its image: check the SIF and the Python, then the worker."""
    image = _image(spec)
    sif = image.sif or ""
    return PYTHON_SCRIPT.format(
        attempt_id=attempt_id, task_name=spec.name.replace("\n", " "), task_id=spec.task_id, image=image.name,
        attempt_dir=shlex.quote(attempt_dir), missing=_missing_check(sif, attempt_dir, "exit 1"),
        apptainer=" ".join(shlex.quote(a) for a in apptainer), sif=shlex.quote(sif),
        python=shlex.quote(image.python), probe=shlex.quote(_PYTHON_VERSION), want=shlex.quote(want),
        check=shlex.quote(f"{attempt_dir}/{CHECK_FILE}"), node=_NODE,
        binds=shlex.quote(binds([attempt_dir, *bind])), pythonpath=shlex.quote(pythonpath),
    )


def command_job_script(*, attempt_id: str, spec: TaskSpec, attempt_dir: str, apptainer: Sequence[str],
                       bind: Iterable[str]) -> str:
    """The batch script of a command task in its image (the plain command script, wrapped)."""
    image = _image(spec)
    sif = image.sif or ""
    cwd = spec.command.cwd if spec.command is not None and spec.command.cwd else attempt_dir
    wrap = [*apptainer, "--bind", binds([attempt_dir, cwd, *bind]), "--pwd", cwd, sif]
    return plain_command_script(attempt_id=attempt_id, spec=spec, attempt_dir=attempt_dir, wrap=wrap,
                                precheck=_missing_check(sif, attempt_dir, "record 127; exit 127"))


def _image(spec: TaskSpec) -> Image:
    if spec.container is None or spec.container.sif is None:
        raise ValueError(f"task {spec.task_id} has no Apptainer image (Image(sif=...))")
    return spec.container


def check_problem(text: str, spec: TaskSpec, site: str, want: str) -> str:
    """The user's message for a ``container-check`` file's content."""
    image = _image(spec)
    first, _, answer = text.partition("\n")
    kind, _, host = first.partition(" ")
    if kind == "missing":
        return (f"image {image.name!r}: {image.sif} is not readable on node {host or '?'} of site {site}; "
                "put the SIF on a filesystem the compute nodes share (build it with `apptainer build`)")
    have = answer.strip()
    if not re.fullmatch(r"\d+\.\d+", have):
        return (f"image {image.name!r} cannot run {image.python!r} for Python tasks on node {host}: "
                f"{have[-300:]}")
    return python_mismatch(image.name, have=have, python=image.python, want=want)
