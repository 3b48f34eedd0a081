"""The driver's side of the data layer.

Big arguments go to the campaign's store; stored results come back as proxies.
"""

from __future__ import annotations

from typing import Any

import cloudpickle

from metasched.data import DataSettings
from metasched.data.objects import DataRef, decode_ref, proxy_for, put_blob
from metasched.data.pickling import dumps
from metasched.records import is_proxy

Arguments = tuple[tuple[Any, ...], dict[str, Any], tuple[DataRef, ...]]


def externalize_arguments(args: tuple[Any, ...], kwargs: dict[str, Any], *, task_id: str,
                          settings: DataSettings) -> Arguments:
    """Store every top-level argument bigger than the threshold; it travels as a DataRef instead.

    Only called when the pickled arguments as a whole exceed the threshold. Returns the new arguments
    and the refs (the task's stored inputs). Proxies the user made are left alone (they are small).
    """
    refs: list[DataRef] = []

    def maybe_store(value: Any, label: str) -> Any:
        if is_proxy(value) or isinstance(value, DataRef):
            return value
        blob = dumps(value)
        if len(blob) <= settings.threshold:
            return value
        ref = put_blob(settings.home, blob, object_id=f"{task_id}.{label}")
        refs.append(ref)
        return ref

    new_args = tuple(maybe_store(v, f"arg{i}") for i, v in enumerate(args))
    new_kwargs = {k: maybe_store(v, f"kw-{k}") for k, v in kwargs.items()}
    return new_args, new_kwargs, tuple(refs)


def load_result(blob: bytes) -> Any:
    """A task's result in the driver: the value, or a proxy that fetches it from its store when used."""
    ref = decode_ref(blob)
    if ref is None:
        return cloudpickle.loads(blob)
    return proxy_for(ref)
