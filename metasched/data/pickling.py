"""Pickling that never resolves a ProxyStore proxy.

cloudpickle's reducer asks ``isinstance(obj, FunctionType)``, and a proxy answers ``isinstance`` by
resolving itself, so pickling a proxy with plain cloudpickle fetches its data into the pickling
process (this is why a proxy passed to Ray makes the driver fetch it). Here a proxy is pickled as
its factory, as ProxyStore intends.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

import cloudpickle

from metasched.records import is_proxy


class _ProxyAwarePickler(cloudpickle.Pickler):  # type: ignore[misc]
    def reducer_override(self, obj: Any) -> Any:
        if is_proxy(obj):
            from proxystore.proxy import Proxy, get_factory

            return Proxy, (get_factory(obj),)
        return super().reducer_override(obj)


def dumps(value: Any) -> bytes:
    """Pickle ``value`` with cloudpickle; proxies inside it travel as their factories (unresolved)."""
    buffer = io.BytesIO()
    _ProxyAwarePickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(value)
    return buffer.getvalue()
