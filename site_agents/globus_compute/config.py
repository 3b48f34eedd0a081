"""Configuration of a Globus Compute site (data only: picklable, no I/O, no credentials)."""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass, field
from typing import Any, ClassVar

from metasched.data.stores import StoreSpec
from metasched.errors import ConfigurationError

#: The service's limit on one task's payload and on one result (globus-compute-sdk 4.19: 10 MiB).
PAYLOAD_LIMIT = 10 * 2**20
# The function sent is metasched's worker entry point, imported by reference at the endpoint: only the
# strategies that pickle a reference work (the source-text ones would send the worker's source without its
# module); the argument is bytes (metasched's payload), which JSONData cannot carry.
CODE_STRATEGIES = ("DillCode", "PickleCode")
DATA_STRATEGIES = ("DillDataBase64",)


@dataclass(frozen=True, slots=True)
class GlobusComputeSite:
    """A Globus Compute endpoint: attempts are functions sent to it, in batches.

    Exactly one of ``endpoint_id`` (the Globus cloud, with the SDK's own credentials: the
    ``GLOBUS_COMPUTE_CLIENT_ID``/``GLOBUS_COMPUTE_CLIENT_SECRET`` environment or stored tokens) and
    ``offline_endpoint`` (a ``metasched-offline-endpoint`` process on this machine running a real
    ``GlobusComputeEngine`` without the cloud; see docs/sites/globus-compute.md) is given.

    Args:
        name: the site's name within the campaign.
        endpoint_id: the UUID of the endpoint (cloud mode).
        user_endpoint_config: values for a multi-user endpoint's configuration template (cloud mode).
        offline_endpoint: ``host:port`` of an offline endpoint (127.0.0.1 only).
        authkey_file: the file holding the offline endpoint's key (never logged).
        max_inflight: the most attempts sent and not finished.
        cores: how many attempts the endpoint runs at once (its workers); used for the wait estimate.
        memory_mb, gpus: the most memory and GPUs one task may ask for at this endpoint.
        batch_size: the most tasks per submission request.
        requests_per_s: the most submission requests per second (the service rate-limits clients).
        code_strategy, data_strategy: the ComputeSerializer strategies of the task messages (the
            reference to metasched's worker entry point and its one bytes argument); the task itself
            travels inside as metasched's own cloudpickle payload, so the endpoint needs metasched,
            cloudpickle and ProxyStore installed, and the same Python minor version.
        preflight_timeout_s: how long ``start`` waits for the probe task that compares this machine's
            Python and dill with the endpoint's; 0 turns the probe off.
        store: where results bigger than the campaign's data threshold go; it must be reachable from
            the endpoint's workers (default: the campaign's store, right when the workers run here).
        poll_interval: seconds between result checks.
    """

    kind: ClassVar[str] = "globus_compute"
    name: str
    _: KW_ONLY
    endpoint_id: str | None = None
    user_endpoint_config: dict[str, Any] = field(default_factory=dict)
    offline_endpoint: str | None = None
    authkey_file: str | None = None
    max_inflight: int = 256
    cores: int = 4
    memory_mb: int = 16000
    gpus: int = 0
    batch_size: int = 64
    requests_per_s: float = 2.0
    code_strategy: str = "DillCode"
    data_strategy: str = "DillDataBase64"
    preflight_timeout_s: float = 300.0
    store: StoreSpec | None = None
    poll_interval: float = 0.5

    def __post_init__(self) -> None:
        where = f"globus_compute site {self.name}"
        if (self.endpoint_id is None) == (self.offline_endpoint is None):
            raise ConfigurationError(f"{where}: give exactly one of endpoint_id (the Globus cloud) and "
                                     "offline_endpoint (a local offline endpoint).")
        if self.offline_endpoint is not None:
            host = self.offline_endpoint.rpartition(":")[0]
            if host not in ("127.0.0.1", "localhost"):
                raise ConfigurationError(f"{where}: offline_endpoint must be on 127.0.0.1, got "
                                         f"{self.offline_endpoint!r}.")
            if not self.authkey_file:
                raise ConfigurationError(f"{where}: offline_endpoint needs authkey_file (the key the "
                                         "endpoint was started with).")
        if self.code_strategy not in CODE_STRATEGIES:
            raise ConfigurationError(f"{where}: code_strategy must be one of {', '.join(CODE_STRATEGIES)}, "
                                     "got "
                                     f"{self.code_strategy!r}.")
        if self.data_strategy not in DATA_STRATEGIES:
            raise ConfigurationError(f"{where}: data_strategy must be one of {', '.join(DATA_STRATEGIES)}, "
                                     "got "
                                     f"{self.data_strategy!r}.")
        for option in ("max_inflight", "cores", "batch_size"):
            if getattr(self, option) < 1:
                raise ConfigurationError(f"{where}: {option} must be at least 1.")
        if self.requests_per_s <= 0:
            raise ConfigurationError(f"{where}: requests_per_s must be positive.")
