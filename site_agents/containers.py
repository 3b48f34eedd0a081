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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from metasched.attempt_dir import AttemptDir
from metasched.attempt_records import AttemptInputs
from metasched.data.objects import DataContext, store_paths
from metasched.outcomes import TaskOutcome, command_outcome, failed, store_if_big
from metasched.records import STDERR_TAIL, ContainerRuntime, TaskId, TaskKind, TaskSpec

_PYTHON_PROBE = "import sys; print('%d.%d' % sys.version_info[:2])"
_WORKER_GRACE_S = 15.0
_python_versions: dict[tuple[str, str], str] = {}  # (image reference, python) -> "3.11", per worker process
_clients: dict[int, Any] = {}  # process id -> Docker API client


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
    attempt = AttemptDir(Path(work_dir) / attempt_id).create()
    try:
        outcome = _run(site, spec, function, dependency_results, data, attempt, pythonpath, binds)
    except ContainerProblem as exc:
        outcome = failed("ContainerError", str(exc))
    return pickle.dumps(outcome, protocol=pickle.HIGHEST_PROTOCOL)


def _run(site: str, spec: TaskSpec, function: bytes | None, dependency_results: Mapping[TaskId, bytes],
         data: DataContext | None, attempt: AttemptDir, pythonpath: str, binds: tuple[str, ...]
         ) -> TaskOutcome:
    assert spec.container is not None  # noqa: S101  (only container specs come here)
    image = spec.container
    ref = image.source(ContainerRuntime.DOCKER) or image.name
    directory, attempt_id = attempt.path, attempt.attempt_id
    api = _api()
    if image.digest is not None:
        _check_digest(api, ref, image.digest, spec.name, site)
    mounts = _mounts(spec, data, directory, pythonpath, binds)
    environment: dict[str, str] = {}
    if spec.kind is TaskKind.FUNCTION:
        _check_python(api, ref, image.python, image.name, site, task=spec.name)
        attempt.write_inputs(AttemptInputs(spec=spec, function=function,
                                           dependency_results=dict(dependency_results), data=data))
        argv = [image.python, "-m", "metasched.worker", str(directory)]
        environment["PYTHONPATH"] = pythonpath
        workdir = str(directory)
    else:
        assert spec.command is not None  # noqa: S101
        argv = list(spec.command.argv)
        environment.update(dict(spec.command.env))
        workdir = spec.command.cwd or str(directory)
    res = spec.resources
    host_config = api.create_host_config(
        network_mode="host", binds=mounts, nano_cpus=int(res.cores * 1e9),
        mem_limit=f"{res.memory_mb}m" if res.memory_mb else None)
    # A Python task's worker stops itself at its walltime and says so: give it time to.
    grace = _WORKER_GRACE_S if spec.kind is TaskKind.FUNCTION else 0.0
    run = _execute(api, ref, argv, site=site, name=container_name(site, attempt_id), host_config=host_config,
                   environment=environment, workdir=workdir, labels={"metasched.task": spec.task_id,
                                                                     "metasched.name": spec.name},
                   timeout_s=None if res.walltime_s is None else res.walltime_s + grace)
    attempt.container_stdout.write_bytes(run.stdout)
    attempt.container_stderr.write_bytes(run.stderr)
    stderr = run.stderr.decode(errors="replace")
    if spec.kind is TaskKind.COMMAND:
        outcome = command_outcome(spec, returncode=run.returncode, stdout=run.stdout.decode(errors="replace"),
                                  stderr=stderr, walltime_exceeded=run.timed_out)
        return store_if_big(spec, outcome, data)
    found = attempt.worker_outcome()
    if found is not None:
        return found
    why = (f"hit its walltime of {res.walltime_s} s" if run.timed_out
           else f"exited {run.returncode} after {run.seconds:.1f} s without an outcome")
    return failed("WalltimeExceeded" if run.timed_out else "ContainerError", walltime_exceeded=run.timed_out,
                  message=f"the container of task {spec.name!r} ({attempt_id}) {why}; its stderr is below "
                          f"and in {attempt.container_stderr}", traceback=stderr[-STDERR_TAIL:])


def _api() -> Any:
    """This worker process's Docker API client (made once: each new one asks the engine its version)."""
    import docker

    pid = os.getpid()
    if pid not in _clients:
        _clients.clear()
        _clients[pid] = docker.from_env(timeout=120).api
    return _clients[pid]


def _check_digest(api: Any, ref: str, digest: str, task: str, site: str) -> None:
    import docker

    try:
        found = api.inspect_image(ref)["Id"]
    except docker.errors.ImageNotFound:
        raise ContainerProblem(_missing(ref, task, site)) from None
    if found != digest:
        raise ContainerProblem(f"image {ref!r} has id {found}, but task {task!r} asks for {digest}")


def _missing(ref: str, task: str, site: str) -> str:
    return (f"image {ref!r} (of task {task!r}) is not on the Docker engine of site {site}; metasched never "
            "pulls images: build it there or `docker load` it first")


@dataclass(frozen=True, slots=True)
class _Run:
    returncode: int
    stdout: bytes
    stderr: bytes
    seconds: float
    timed_out: bool


def _execute(api: Any, ref: str, argv: list[str], *, site: str, name: str | None = None,
             host_config: Any = None, environment: dict[str, str] | None = None, workdir: str | None = None,
             labels: dict[str, str] | None = None, timeout_s: float | None = None) -> _Run:
    """Create, start, wait (up to `timeout_s`, then kill), read both streams, remove: six API calls.

    The low-level API, because the high-level ``containers.run`` pulls an image it does not find.
    """
    import docker
    import requests

    options = {"name": name, "host_config": host_config or api.create_host_config(network_mode="host"),
               "environment": environment, "working_dir": workdir, "labels": labels,
               "user": f"{os.getuid()}:{os.getgid()}"}
    start = time.monotonic()
    try:
        created = api.create_container(ref, argv, **options)
    except docker.errors.ImageNotFound:
        task = (labels or {}).get("metasched.name", "?")
        raise ContainerProblem(_missing(ref, task, site)) from None
    except docker.errors.APIError as exc:
        if exc.status_code != 409 or name is None:  # 409: a container of a killed worker has the name
            raise
        _remove(api, name)
        created = api.create_container(ref, argv, **options)
    container = created["Id"]
    timed_out = False
    try:
        api.start(container)
        try:
            returncode = int(api.wait(container, timeout=timeout_s).get("StatusCode", -1))
        except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
            timed_out = True
            api.kill(container)
            returncode = int(api.wait(container, timeout=60).get("StatusCode", 137))
        stdout = api.logs(container, stdout=True, stderr=False)
        stderr = api.logs(container, stdout=False, stderr=True)
    finally:
        _remove(api, container)
    return _Run(returncode=returncode, stdout=stdout, stderr=stderr, seconds=time.monotonic() - start,
                timed_out=timed_out)


def _remove(api: Any, container: str) -> None:
    import docker

    with contextlib.suppress(docker.errors.NotFound):
        api.remove_container(container, force=True)


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


def _check_python(api: Any, ref: str, python: str, name: str, site: str, *, task: str) -> None:
    """The image's Python must be the driver's major.minor (asked once per image and worker process)."""
    want = f"{sys.version_info.major}.{sys.version_info.minor}"
    key = (ref, python)
    if key not in _python_versions:
        run = _execute(api, ref, [python, "-c", _PYTHON_PROBE], site=site, timeout_s=60,
                       labels={"metasched.name": task})
        if run.returncode != 0:
            problem = (run.stderr or run.stdout).decode(errors="replace").strip()[-300:]
            raise ContainerProblem(f"image {name!r} cannot run {python!r} for Python tasks: {problem}")
        _python_versions[key] = run.stdout.decode().strip()
    have = _python_versions[key]
    if have != want:
        raise ContainerProblem(python_mismatch(name, have=have, python=python, want=want))


def python_mismatch(name: str, *, have: str, python: str, want: str) -> str:
    """What to tell the user when image `name`'s Python is not the driver's (any runtime)."""
    return (f"image {name!r} has Python {have} ({python}), but this campaign's driver runs Python {want}: a "
            f"function pickled by {want} cannot be loaded by {have}. Use an image with Python {want}, set "
            "Image(python=...) to one, or run the work as a command task.")


def remove_containers(names: list[str]) -> None:
    """Remove these attempts' containers, if they exist (cancel: Ray kills the worker, not the container)."""
    if names:
        api = _api()
        for name in names:
            _remove(api, name)
