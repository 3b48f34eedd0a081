"""Running one attempt inside a container on this machine's Docker engine (the local site's runtime).

``run_in_docker`` is the Ray task of a container attempt. It talks to the engine through the ``docker``
library: host networking only (the project never uses Docker's bridge), the attempt's directory, the
task's working directory, the file stores it reads or writes and the staged worker mounted at their own
paths, CPU and memory limits from the task's resources, and the container removed afterwards. Its stdout
and stderr stay in the attempt directory. Images are never pulled: a missing image fails the attempt at
once, with how to get the image onto the engine.

A Python function task runs the worker (``python -m metasched.worker DIR``) with the image's Python. Its
major.minor version is checked first, in a throw-away container, because a function pickled by
another Python version cannot be loaded: the mismatch fails the attempt before the task runs.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from metasched.data.objects import DataContext, store_paths
from metasched.records import RemoteFailure, TaskId, TaskKind, TaskOutcome, TaskSpec
from metasched.worker import command_outcome, read_outcome, store_if_big, write_attempt

STDOUT_FILE = "container.out"
STDERR_FILE = "container.err"
_PYTHON_PROBE = "import sys; print('%d.%d' % sys.version_info[:2])"
_WORKER_GRACE_S = 15.0
_python_versions: dict[tuple[str, str], str] = {}  # (image id, python) -> "3.11", per worker process


class ContainerProblem(Exception):
    """Why an attempt cannot start in its container (missing image, wrong digest, other Python)."""


def container_name(site: str, attempt_id: str) -> str:
    """The Docker name of an attempt's container (cancel and clean-up find it by this name)."""
    return f"ms-{site}-{attempt_id}".replace(".", "-")


def run_in_docker(packed: bytes) -> bytes:
    """Ray task entry point: run one attempt in its container; returns the pickled TaskOutcome.

    `packed` is ``pickle.dumps((site, attempt_id, spec, function, dependency_results, data, work_dir,
    pythonpath, binds))``.
    """
    (site, attempt_id, spec, function, dependency_results, data, work_dir, pythonpath,
     binds) = pickle.loads(packed)
    directory = Path(work_dir) / attempt_id
    directory.mkdir(parents=True, exist_ok=True)
    try:
        outcome = _run(site, attempt_id, spec, function, dependency_results, data, directory, pythonpath,
                       binds)
    except ContainerProblem as exc:
        outcome = TaskOutcome(failure=RemoteFailure(error_type="ContainerError", message=str(exc),
                                                    traceback=""))
    return pickle.dumps(outcome, protocol=pickle.HIGHEST_PROTOCOL)


def _run(site: str, attempt_id: str, spec: TaskSpec, function: bytes | None,
         dependency_results: Mapping[TaskId, bytes], data: DataContext | None, directory: Path,
         pythonpath: str, binds: tuple[str, ...]) -> TaskOutcome:
    import docker

    client = docker.from_env(timeout=120)
    try:
        image = _image(client, spec, site)
        mounts = _mounts(spec, data, directory, pythonpath, binds)
        environment: dict[str, str] = {}
        if spec.kind is TaskKind.FUNCTION:
            assert spec.container is not None  # noqa: S101  (only container specs come here)
            _check_python(client, image, spec.container.python, spec.container.name)
            write_attempt(directory, spec, function, dependency_results, data)
            argv = [spec.container.python, "-m", "metasched.worker", str(directory)]
            environment["PYTHONPATH"] = pythonpath
            workdir = str(directory)
        else:
            assert spec.command is not None  # noqa: S101
            argv = list(spec.command.argv)
            environment.update(dict(spec.command.env))
            workdir = spec.command.cwd or str(directory)
        returncode, elapsed, timed_out = _run_container(client, image, argv, name=container_name(
            site, attempt_id), mounts=mounts, environment=environment, workdir=workdir, spec=spec,
            directory=directory)
    finally:
        client.close()
    stdout = (directory / STDOUT_FILE).read_text(errors="replace")
    stderr = (directory / STDERR_FILE).read_text(errors="replace")
    if spec.kind is TaskKind.COMMAND:
        outcome = command_outcome(spec, returncode=returncode, stdout=stdout, stderr=stderr,
                                  walltime_exceeded=timed_out)
        return store_if_big(spec, outcome, data)
    found = read_outcome(directory)
    if found is not None:
        return found
    why = (f"hit its walltime of {spec.resources.walltime_s} s" if timed_out
           else f"exited {returncode} after {elapsed:.1f} s without an outcome")
    return TaskOutcome(failure=RemoteFailure(
        error_type="WalltimeExceeded" if timed_out else "ContainerError", walltime_exceeded=timed_out,
        message=f"the container of task {spec.name!r} ({attempt_id}) {why}; its stderr is below and in "
                f"{directory / STDERR_FILE}", traceback=stderr[-4000:]))


def _image(client: Any, spec: TaskSpec, site: str) -> Any:
    import docker

    assert spec.container is not None  # noqa: S101
    ref = spec.container.source("docker")
    try:
        image = client.images.get(ref)
    except docker.errors.ImageNotFound:
        raise ContainerProblem(
            f"image {ref!r} (of task {spec.name!r}) is not on the Docker engine of site {site}; metasched "
            "never pulls images: build it there or `docker load` it first") from None
    if spec.container.digest is not None and image.id != spec.container.digest:
        raise ContainerProblem(f"image {ref!r} has id {image.id}, but task {spec.name!r} asks for "
                               f"{spec.container.digest}")
    return image


def _mounts(spec: TaskSpec, data: DataContext | None, directory: Path, pythonpath: str,
            binds: tuple[str, ...]) -> dict[str, Any]:
    """Bind mounts at their own paths: site binds, attempt and working dirs, file stores, worker (ro)."""
    paths = dict.fromkeys(binds, "rw")
    paths[str(directory)] = "rw"
    if spec.command is not None and spec.command.cwd:
        paths[spec.command.cwd] = "rw"
    for path in store_paths(data):
        Path(path).mkdir(parents=True, exist_ok=True)
        paths[path] = "rw"
    if spec.kind is TaskKind.FUNCTION:
        paths[pythonpath] = "ro"
    return {path: {"bind": path, "mode": mode} for path, mode in paths.items()}


def _check_python(client: Any, image: Any, python: str, name: str) -> None:
    want = f"{sys.version_info.major}.{sys.version_info.minor}"
    key = (image.id, python)
    if key not in _python_versions:
        try:
            out = client.containers.run(image, [python, "-c", _PYTHON_PROBE], network_mode="host",
                                        remove=True, stdout=True, stderr=True)
        except Exception as exc:  # docker.errors.ContainerError / APIError: no such Python in the image
            raise ContainerProblem(f"image {name!r} cannot run {python!r} for Python tasks: "
                                   f"{str(exc).strip()[-300:]}") from None
        _python_versions[key] = out.decode().strip()
    have = _python_versions[key]
    if have != want:
        raise ContainerProblem(python_mismatch(name, have=have, python=python, want=want))


def python_mismatch(name: str, *, have: str, python: str, want: str) -> str:
    """What to tell the user when image `name`'s Python is not the driver's (any runtime)."""
    return (f"image {name!r} has Python {have} ({python}), but this campaign's driver runs Python {want}: a "
            f"function pickled by {want} cannot be loaded by {have}. Use an image with Python {want}, set "
            "Image(python=...) to one, or run the work as a command task.")


def _run_container(client: Any, image: Any, argv: list[str], *, name: str, mounts: dict[str, Any],
                   environment: dict[str, str], workdir: str, spec: TaskSpec,
                   directory: Path) -> tuple[int, float, bool]:
    """Start, wait (up to the walltime), keep the logs, remove; (exit status, seconds, timed out)."""
    import docker
    import requests

    res = spec.resources
    _remove_stale(client, name)
    start = time.monotonic()
    container = client.containers.run(
        image, argv, name=name, detach=True, network_mode="host", volumes=mounts, environment=environment,
        working_dir=workdir, user=f"{os.getuid()}:{os.getgid()}", nano_cpus=int(res.cores * 1e9),
        mem_limit=f"{res.memory_mb}m" if res.memory_mb else None,
        labels={"metasched.task": spec.task_id, "metasched.name": spec.name})
    timed_out = False
    try:
        try:
            # A Python task's worker stops itself at its walltime and says so: give it time to.
            grace = _WORKER_GRACE_S if spec.kind is TaskKind.FUNCTION else 0.0
            status = container.wait(timeout=None if res.walltime_s is None else res.walltime_s + grace)
            returncode = int(status.get("StatusCode", -1))
        except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
            timed_out = True
            container.kill()
            returncode = int(container.wait(timeout=60).get("StatusCode", 137))
        (directory / STDOUT_FILE).write_bytes(container.logs(stdout=True, stderr=False))
        (directory / STDERR_FILE).write_bytes(container.logs(stdout=False, stderr=True))
    finally:
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True)
    return returncode, time.monotonic() - start, timed_out


def _remove_stale(client: Any, name: str) -> None:
    """A container of the same name left by a killed worker (the attempt id is unique otherwise)."""
    import docker

    with contextlib.suppress(docker.errors.NotFound):
        client.containers.get(name).remove(force=True)


def remove_containers(names: list[str]) -> None:
    """Remove these attempts' containers, if they exist (cancel: Ray kills the worker, not the container)."""
    import docker

    if not names:
        return
    client = docker.from_env(timeout=60)
    try:
        for name in names:
            _remove_stale(client, name)
    finally:
        client.close()
