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
import sys
import warnings
from typing import Any

SINGLE_MACHINE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def init_embedded_ray(*, num_cpus: int, resources: dict[str, float], object_store_mb: int,
                      namespace: str) -> Any:
    """Start a new single-machine Ray bound to 127.0.0.1 and return the ``ray`` module."""
    already_imported = "ray" in sys.modules
    os.environ[SINGLE_MACHINE_ENV] = "0"
    import ray

    if already_imported and ray._private.ray_constants.ENABLE_RAY_CLUSTER:
        warnings.warn(
            "Ray was imported before metasched started its embedded runtime, so Ray may bind its "
            f"servers to this machine's external address; set {SINGLE_MACHINE_ENV}=0 before importing "
            "ray (or let metasched import it) to keep them on 127.0.0.1.",
            RuntimeWarning,
            stacklevel=3,
        )
    ray.init(
        address="local",  # always a new cluster, even if a killed one left its address file behind
        num_cpus=num_cpus,
        resources=resources,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        object_store_memory=object_store_mb * 2**20,
        namespace=namespace,
        configure_logging=False,
    )
    return ray
