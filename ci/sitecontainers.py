"""The test sites' containers through docker-py (the ``docker`` library metasched already depends on).

Every container runs with ``--init``, on the host's network (or its own loopback only), labelled with its
site so a later run finds and removes what an earlier one left. Starting, waiting, inspecting, stopping
and removing go through the Docker API, not ``docker`` subprocesses; ``docker exec`` stays only as a
site's *login prefix* (an argv metasched itself runs, as it would run ``ssh login1``).

Why not testcontainers (tried, testcontainers 4.x, 2026-11-30): with its reaper on, starting any container
fails at once, because the engine must pull ``testcontainers/ryuk`` from Docker Hub and no registry is
reachable; with ``TESTCONTAINERS_RYUK_DISABLED=true`` a ``DockerContainer`` of a local image starts in
0.35 s and works. It would then only wrap the same docker-py calls as this module (its other additions,
port mapping and generic wait strategies, do not apply: the sites use host networking or their own
loopback, and readiness is scheduler-specific: idle nodes in ``sinfo``, the Grid Engine entrypoint's ready
line), so it would add a dependency and no function; clean-up is by label either way.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import docker
import docker.errors

API_TIMEOUT_S = 120


class ContainerError(RuntimeError):
    """The Docker engine refused or failed an operation; the message says which and why."""


class SiteError(RuntimeError):
    """A test site could not be brought up, inspected or taken down; the message says what to look at."""


@dataclass(frozen=True, slots=True)
class Container:
    """One container as the engine lists it."""

    name: str
    state: str  # running, exited, created...
    image: str


@functools.cache
def engine() -> Any:
    """This process's Docker client (``DOCKER_HOST`` or the default socket)."""
    try:
        client = docker.from_env(timeout=API_TIMEOUT_S)
        client.ping()
    except docker.errors.DockerException as exc:
        raise ContainerError(f"the Docker engine does not answer ({exc}); start it with `make engine`"
                             ) from exc
    return client


def run(name: str, image: str, command: Sequence[str], *, labels: Mapping[str, str], network: str = "host",
        volumes: Sequence[str] = (), cap_add: Sequence[str] = (), security_opt: Sequence[str] = (),
        devices: Sequence[str] = (), hostname: str | None = None) -> None:
    """Start a detached container with an init process (daemons that fork leave no zombies)."""
    try:
        # `volumes` as source:target[:ro] strings: a source may be mounted at more than one target
        engine().containers.run(image, list(command), name=name, detach=True, init=True, network_mode=network,
                                labels=dict(labels), volumes=list(volumes), cap_add=list(cap_add) or None,
                                security_opt=list(security_opt) or None, devices=list(devices) or None,
                                hostname=hostname)
    except docker.errors.DockerException as exc:
        raise ContainerError(f"cannot start container {name} from {image}: {exc}") from exc


def labelled(label: str, value: str) -> list[Container]:
    """Every container (running or not) with this label value."""
    found = engine().containers.list(all=True, filters={"label": f"{label}={value}"})
    return [Container(name=c.name, state=c.status, image=_image_name(c)) for c in found]


def state(name: str) -> Container | None:
    """The container of this name, or None."""
    try:
        found = engine().containers.get(name)
    except docker.errors.NotFound:
        return None
    return Container(name=found.name, state=found.status, image=_image_name(found))


def _image_name(container: Any) -> str:
    tags = container.image.tags if container.image is not None else []
    return str(container.attrs["Config"]["Image"] or (tags[0] if tags else ""))


def logs(name: str, *, tail: int | str = "all") -> str:
    """A container's output (stdout and stderr)."""
    try:
        return str(engine().containers.get(name).logs(tail=tail).decode(errors="replace"))
    except docker.errors.NotFound:
        return f"(no container {name})"


def remove(names: Sequence[str]) -> None:
    """Remove these containers, running or not (missing ones are ignored)."""
    for name in names:
        try:
            engine().containers.get(name).remove(force=True)
        except docker.errors.NotFound:
            continue


def remove_volume(name: str) -> None:
    """Remove a named volume and what it holds (a missing one is ignored; its containers must be gone)."""
    try:
        engine().volumes.get(name).remove(force=True)
    except docker.errors.NotFound:
        return


def stop(name: str, *, timeout_s: int = 10) -> None:
    """Stop a container (TERM, then KILL after `timeout_s`), as a machine shutting down would."""
    engine().containers.get(name).stop(timeout=timeout_s)


def kill(name: str) -> None:
    """Kill a container at once, as a machine losing power would."""
    engine().containers.get(name).kill()


def start(name: str) -> None:
    """Start a stopped container again."""
    engine().containers.get(name).start()


def network_modes(label: str) -> dict[str, str]:
    """The network mode of every running container with this label (any value)."""
    return {c.name: c.attrs["HostConfig"]["NetworkMode"]
            for c in engine().containers.list(filters={"label": label})}


def wait_for(ready: Any, *, timeout_s: float, interval_s: float = 0.3) -> bool:
    """Poll `ready()` until it is true or `timeout_s` passed; whether it became true."""
    deadline = time.monotonic() + timeout_s
    while not ready():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval_s)
    return True
