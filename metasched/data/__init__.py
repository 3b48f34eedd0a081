"""The data layer: per-site ProxyStore stores, objects that travel as proxies, verified transfers.

See docs/data.md. Arguments and results bigger than ``DataSettings.threshold`` bytes are stored in the
producing side's store and travel as ``DataRef``s (small records); tasks receive ProxyStore proxies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from metasched.catalog import metasched_home
from metasched.data.objects import DataContext, DataRef, decode_ref, encode_ref, proxy_for, put_blob
from metasched.data.stores import EndpointStore, FileStore, RedisStore, SshFileStore, StoreSpec

DEFAULT_THRESHOLD = 100_000

__all__ = ["DEFAULT_THRESHOLD", "DataContext", "DataRef", "DataSettings", "EndpointStore", "FileStore",
           "RedisStore", "SshFileStore",
           "StoreSpec", "decode_ref", "encode_ref", "home_store", "proxy_for", "put_blob", "site_store"]


@dataclass(frozen=True, slots=True, kw_only=True)
class DataSettings:
    """A campaign's data settings.

    Attributes:
        home: the driver's own store (also the local sites' default).
        threshold: arguments and results bigger than this (pickled bytes) are stored, not inline.
        evict_intermediates: evict a stored result once every task consuming it is done, unless the
            task was marked ``keep=True``; its future's proxy then no longer resolves. Copies made by
            transfers are always evicted once no unfinished consumer needs them.
    """

    home: StoreSpec
    threshold: int = DEFAULT_THRESHOLD
    evict_intermediates: bool = False


def home_store(campaign: str) -> FileStore:
    """The default store of the driver and of local sites: ``$METASCHED_HOME/data/<campaign>``."""
    return FileStore(str((metasched_home() / "data" / campaign).resolve()))


def site_store(config: Any, home: StoreSpec) -> StoreSpec:
    """The store of a site: its configured one, else the site kind's default, else the driver's."""
    configured = getattr(config, "store", None)
    if configured is not None:
        store: StoreSpec = configured
        return store
    default = getattr(config, "default_store", None)
    if callable(default):
        spec: StoreSpec = default()
        return spec
    return home
