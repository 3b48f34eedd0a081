"""Where a site keeps its data: typed store specs and the ProxyStore stores built from them.

A store spec is data only (picklable, comparable); ``open_store`` turns it into a ProxyStore ``Store``
(once per process); ``SshFileStore`` lives with its connector in ``metasched.data.remote``. Objects are
the serialized bytes metasched already has; the store's deserializer is ``serializers.loads`` (the bytes
name their serializer), so a proxy made from a key resolves to the value in any process that can reach
the store. MultiConnector is never used: in ProxyStore 1.1.0 its proxies do not resolve in another
process.
"""

from __future__ import annotations

import os
import threading
from dataclasses import KW_ONLY, dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeGuard

from metasched.data.remote import SshFileConnector, SshFileStore
from metasched.data.serializers import loads
from metasched.errors import ConfigurationError

__all__ = ["EndpointStore", "FileStore", "RedisStore", "SshFileStore", "StoreSpec", "is_here", "mark_here",
           "open_store", "over_ssh"]


@dataclass(frozen=True, slots=True)
class FileStore:
    """A ProxyStore file store in a directory every process that uses it can read (a shared filesystem).

    Args:
        path: the directory (absolute; the same path on the login and compute nodes).
        name: optional label; stores are told apart by their path.
    """

    kind: ClassVar[str] = "file"
    path: str
    _: KW_ONLY
    name: str = ""

    def __post_init__(self) -> None:
        if not os.path.isabs(self.path):
            raise ConfigurationError(f"file store path {self.path!r} must be absolute.")

    @property
    def store_id(self) -> str:
        """Identifies the store: two sites with equal ids share their data without transfers."""
        return f"file:{os.path.normpath(self.path)}"


@dataclass(frozen=True, slots=True)
class RedisStore:
    """A ProxyStore store in a Redis server (bound to 127.0.0.1 unless the site says otherwise).

    Args:
        port: the Redis server's port.
        host: its address.
        name: optional label.
    """

    kind: ClassVar[str] = "redis"
    port: int
    _: KW_ONLY
    host: str = "127.0.0.1"
    name: str = ""

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ConfigurationError(f"redis store port must be 1-65535, got {self.port}.")

    @property
    def store_id(self) -> str:
        """Identifies the store."""
        return f"redis:{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class EndpointStore:
    """A ProxyStore endpoint (``proxystore-endpoint``) running at the site, reached over HTTP.

    Args:
        endpoint: the endpoint's UUID (``proxystore-endpoint list`` shows it).
        proxystore_dir: the directory holding the endpoint's configuration (``$PROXYSTORE_HOME``),
            readable from the compute nodes and from the scheduler's machine: ProxyStore finds the
            endpoint's address there. Default: ProxyStore's own default (``~/.local/share/proxystore``).
        name: optional label.
    """

    kind: ClassVar[str] = "endpoint"
    endpoint: str
    _: KW_ONLY
    proxystore_dir: str | None = None
    name: str = ""

    def __post_init__(self) -> None:
        import uuid

        try:
            uuid.UUID(self.endpoint)
        except ValueError:
            raise ConfigurationError(f"endpoint store: {self.endpoint!r} is not an endpoint UUID.") from None

    @property
    def store_id(self) -> str:
        """Identifies the store."""
        return f"endpoint:{self.endpoint}"


StoreSpec = FileStore | RedisStore | EndpointStore | SshFileStore

_STORES: dict[str, Any] = {}
_LOCK = threading.Lock()
_HERE: set[str] = set()  # ids of SSH file stores whose directory this process reaches directly


def mark_here(spec: StoreSpec) -> None:
    """This process runs at the store's host (a site's job and its own store): use the directory directly."""
    if isinstance(spec, SshFileStore):
        with _LOCK:
            _HERE.add(spec.store_id)


def is_here(spec: StoreSpec) -> bool:
    """Whether this process reads and writes `spec`'s objects as files (a file store, or an SSH one here)."""
    return isinstance(spec, FileStore) or (isinstance(spec, SshFileStore) and spec.store_id in _HERE)


def over_ssh(spec: StoreSpec) -> TypeGuard[SshFileStore]:
    """Whether this process reaches `spec`'s objects through SSH (an SSH file store, not marked here)."""
    return isinstance(spec, SshFileStore) and spec.store_id not in _HERE


def open_store(spec: StoreSpec) -> Any:
    """The ProxyStore ``Store`` of `spec` in this process (created and registered once)."""
    with _LOCK:
        store = _STORES.get(spec.store_id)
        if store is None:
            from proxystore.store import Store, get_store, register_store

            name = f"metasched|{spec.store_id}"
            store = get_store(name)
            if store is None:
                store = Store(name, _connector(spec), deserializer=loads, cache_size=0)
                register_store(store, exist_ok=True)
            _STORES[spec.store_id] = store
        return store


def _connector(spec: StoreSpec) -> Any:
    if over_ssh(spec):
        return SshFileConnector(spec)
    if isinstance(spec, FileStore | SshFileStore):
        from proxystore.connectors.file import FileConnector

        Path(spec.path).mkdir(parents=True, exist_ok=True)
        return FileConnector(spec.path, clear=False)
    if isinstance(spec, EndpointStore):
        from proxystore.connectors.endpoint import EndpointConnector

        return EndpointConnector([spec.endpoint], proxystore_dir=spec.proxystore_dir)
    from proxystore.connectors.redis import RedisConnector

    return RedisConnector(spec.host, spec.port, clear=False)
