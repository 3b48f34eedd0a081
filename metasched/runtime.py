"""Starting the embedded Ray runtime: this machine only, every server on 127.0.0.1.

Ray turns a loopback ``_node_ip_address`` into the machine's external address and then binds its
servers (GCS, raylet, workers, runtime-env agent) to that address. With
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` Ray treats the node as a single-machine cluster: the node IP is
127.0.0.1 and every server binds there. The variable must be set before Ray is first imported in this
process (Ray reads it at import) and is inherited by the processes Ray starts. Token authentication
stays on (Ray's default).
"""

from __future__ import annotations

import os
import socket
import sys
import warnings
from pathlib import Path
from typing import Any

from metasched.errors import ConfigurationError

SINGLE_MACHINE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
GCS_PORT_ENV = "RAY_GCS_SERVER_PORT"  # the port a head's GCS listens on (Ray's own variable)


def init_embedded_ray(*, num_cpus: int, resources: dict[str, float], object_store_mb: int,
                      namespace: str, node_ip: str | None = None, gcs_port: int | None = None) -> Any:
    """Start a new Ray head here and return the ``ray`` module.

    Without `node_ip`: a single-machine Ray bound to 127.0.0.1. With it, a head other nodes (pilot blocks)
    can join: Ray binds its servers to every interface of the machine ("auto": the address Ray detects);
    its GCS on `gcs_port` if given (``joinable_head`` chose it), else on a port Ray chooses.
    """
    ray = _single_machine_ray() if node_ip is None else _joinable_ray(node_ip)
    ip = "127.0.0.1" if node_ip is None else node_ip
    if gcs_port is not None:  # Ray reads it when it starts the head's GCS, and only then
        os.environ[GCS_PORT_ENV] = str(gcs_port)
    try:
        ray.init(
            address="local",  # always a new cluster, even if a killed one left its address file behind
            num_cpus=num_cpus,
            resources=resources,
            include_dashboard=False,
            object_store_memory=object_store_mb * 2**20,
            namespace=namespace,
            configure_logging=False,
            **({} if ip == "auto" else {"_node_ip_address": ip}),
        )
    finally:
        os.environ.pop(GCS_PORT_ENV, None)
    return ray


def joinable_head(node_ip: str) -> str:
    """The address (host:port) the head ``init_embedded_ray(node_ip=..., gcs_port=port)`` will listen at.

    Known before the head starts, so pilot blocks can be submitted meanwhile: the token is made now if
    there is none (where Ray looks for it), and the GCS port is one the kernel has free on `node_ip` now.
    """
    _joinable_ray(node_ip)
    from ray._private.authentication.authentication_token_setup import ensure_token_if_auth_enabled

    token = Path.home() / ".ray" / "auth_token"  # where Ray makes one
    made = not (os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH") or token.exists())
    ensure_token_if_auth_enabled(None, create_token_if_missing=True)
    if made and token.exists():  # Ray writes it readable by everyone; it is a secret
        token.chmod(0o600)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((node_ip, 0))
        return f"{node_ip}:{sock.getsockname()[1]}"


def _single_machine_ray() -> Any:
    """Ray imported so every server binds 127.0.0.1 (see the module docstring)."""
    already_imported = "ray" in sys.modules
    os.environ[SINGLE_MACHINE_ENV] = "0"
    import ray

    if already_imported and ray._private.ray_constants.ENABLE_RAY_CLUSTER:
        warnings.warn(
            "Ray was imported before metasched started its embedded runtime, so Ray may bind its "
            f"servers to this machine's external address; set {SINGLE_MACHINE_ENV}=0 before importing "
            "ray (or let metasched import it) to keep them on 127.0.0.1.",
            RuntimeWarning,
            stacklevel=4,
        )
    return ray


def _joinable_ray(node_ip: str) -> Any:
    """Ray imported for a head other nodes can join, token authentication on (a token is made if none)."""
    if node_ip in ("127.0.0.1", "localhost"):
        raise ConfigurationError(
            "ray_node_ip 127.0.0.1 cannot be joined by other nodes (Ray then binds to this machine only); "
            "give the address the compute nodes reach this machine at, or 'auto'.")
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    os.environ.pop(SINGLE_MACHINE_ENV, None)
    import ray

    _auth_mode_read_again()
    if not ray._private.ray_constants.ENABLE_RAY_CLUSTER:
        raise ConfigurationError(
            f"this process imported Ray with {SINGLE_MACHINE_ENV}=0 (an earlier single-machine campaign), so "
            "Ray would keep every node on 127.0.0.1 and no pilot could join; start the pilot campaign in a "
            "new process.")
    return ray


def connect_ray(address: str, *, namespace: str) -> Any:
    """Join an existing Ray cluster at `address` ("auto", "host:port" or "ray://host:port").

    Token authentication stays on: Ray's client side does not assume it by itself, so RAY_AUTH_MODE
    defaults to "token" here (the token comes from ~/.ray/auth_token, RAY_AUTH_TOKEN or
    RAY_AUTH_TOKEN_PATH). A cluster addressed through a loopback address runs on this machine, bound to
    127.0.0.1: the driver must then see itself as 127.0.0.1 too, or it looks for a raylet at the
    machine's external address and waits forever.
    """
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    host = address.removeprefix("ray://").rsplit(":", 1)[0].strip("[]")
    if host in ("127.0.0.1", "localhost", "::1"):
        os.environ.setdefault(SINGLE_MACHINE_ENV, "0")
    import ray

    _auth_mode_read_again()
    ray.init(address=address, namespace=namespace)
    return ray


def _auth_mode_read_again() -> None:
    """Ray's token authentication as RAY_AUTH_MODE says now, even if Ray was imported before it was set.

    Ray reads the mode into its config when first imported; a process that imported Ray earlier (a
    notebook's ``import ray``, another library) would otherwise talk to a head that wants the token
    without it, and ``ray.init`` fail after tens of seconds of retries with "Authentication token is
    missing". Ray's own ``ray.init`` reads its config again the same way when it turns the mode on.
    """
    from ray._private.authentication.authentication_utils import is_token_auth_enabled

    if os.environ.get("RAY_AUTH_MODE", "").lower() == "token" and not is_token_auth_enabled():
        from ray._raylet import Config  # type: ignore[attr-defined]  # (not in its stub)

        Config.initialize("")
