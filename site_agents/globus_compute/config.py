"""Configuration of a Globus Compute site (data only: picklable, no I/O, no credentials)."""

from __future__ import annotations

import re
from dataclasses import KW_ONLY, dataclass, field
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator

from metasched.errors import ConfigurationError
from metasched.sites.schema import (
    FORBID_EXTRA,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    StoreOption,
    check_fields,
)

#: The service's limit on one task's payload and on one result (globus-compute-sdk 4.19: 10 MiB).
PAYLOAD_LIMIT = 10 * 2**20
# The function sent is metasched's worker entry point, imported by reference at the endpoint: only the
# strategies that pickle a reference work (the source-text ones would send the worker's source without its
# module: see code_strategy); the argument is bytes (metasched's payload), which JSONData cannot carry.


def _uuid(value: str | None) -> str | None:
    if value is not None and not re.fullmatch(r"[0-9a-fA-F-]{36}", value):
        raise ValueError(f"must be an endpoint UUID, got {value!r}")
    return value


def _loopback(value: str | None) -> str | None:
    if value is not None and not re.fullmatch(r"(127\.0\.0\.1|localhost):\d+", value):
        raise ValueError(f"must be 127.0.0.1:PORT (offline endpoints listen on loopback only), got {value!r}")
    return value


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

    __pydantic_config__ = FORBID_EXTRA
    kind: ClassVar[str] = "globus_compute"
    name: str
    _: KW_ONLY
    endpoint_id: Annotated[str | None, AfterValidator(_uuid)] = None
    user_endpoint_config: dict[str, Any] = field(default_factory=dict)
    offline_endpoint: Annotated[str | None, AfterValidator(_loopback)] = None
    authkey_file: str | None = None
    max_inflight: PositiveInt = 256
    cores: PositiveInt = 4
    memory_mb: PositiveInt = 16000
    gpus: NonNegativeInt = 0
    batch_size: PositiveInt = 64
    requests_per_s: PositiveFloat = 2.0
    code_strategy: Literal["DillCode", "PickleCode"] = "DillCode"
    data_strategy: Literal["DillDataBase64"] = "DillDataBase64"
    preflight_timeout_s: NonNegativeFloat = 300.0
    store: StoreOption = None
    poll_interval: PositiveFloat = 0.5

    def __post_init__(self) -> None:
        where = f"globus_compute site {self.name}"
        check_fields(self)
        if (self.endpoint_id is None) == (self.offline_endpoint is None):
            raise ConfigurationError(f"{where}: give exactly one of endpoint_id (the Globus cloud) and "
                                     "offline_endpoint (a local offline endpoint).")
        if self.offline_endpoint is not None and not self.authkey_file:
            raise ConfigurationError(f"{where}: offline_endpoint needs authkey_file (the key the endpoint "
                                     "was started with).")

    def local_paths(self) -> list[tuple[str, str, str]]:
        """The offline endpoint's key file."""
        return [("authkey_file", self.authkey_file, "file")] if self.authkey_file else []
