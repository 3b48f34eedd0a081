"""The driver's side of the data layer.

Big arguments go to the campaign's store; stored results come back as proxies.
"""

from __future__ import annotations

from typing import Any

from metasched.data import DataSettings
from metasched.data.objects import DataRef, decode_ref, proxy_for, put_blob
from metasched.data.serializers import DEFAULT_SERIALIZER, dumps, loads, unserializable
from metasched.errors import ConfigurationError
from metasched.records import is_proxy

Arguments = tuple[tuple[Any, ...], dict[str, Any], tuple[DataRef, ...]]


def pack_arguments(args: tuple[Any, ...], kwargs: dict[str, Any], *, task_name: str, task_id: str,
                   settings: DataSettings, serializer: str = DEFAULT_SERIALIZER
                   ) -> tuple[bytes, tuple[DataRef, ...]]:
    """A function task's payload, its big arguments stored first (their refs are its inputs).

    ConfigurationError names the task, the argument that cannot be serialized and the serializer.
    """
    inputs: tuple[DataRef, ...] = ()
    try:
        payload = dumps((args, kwargs), serializer)
        if len(payload) > settings.threshold:
            args, kwargs, inputs = externalize_arguments(args, kwargs, task_id=task_id, settings=settings,
                                                         serializer=serializer)
            payload = dumps((args, kwargs), serializer)
    except Exception as exc:  # pickling raises anything the objects' own reducers raise
        which = unserializable(args, kwargs, serializer)
        if not which:
            raise ConfigurationError(f"the arguments of task {task_name!r} cannot be serialized or stored: "
                                     f"{type(exc).__name__}: {exc}") from exc
        raise ConfigurationError(f"task {task_name!r}: {which} (serializer {serializer!r}); pass a value it "
                                 "can serialize, or choose another serializer= (docs/workflows.md)."
                                 ) from exc
    return payload, inputs


def externalize_arguments(args: tuple[Any, ...], kwargs: dict[str, Any], *, task_id: str,
                          settings: DataSettings, serializer: str = DEFAULT_SERIALIZER) -> Arguments:
    """Store every top-level argument bigger than the threshold; it travels as a DataRef instead.

    Only called when the pickled arguments as a whole exceed the threshold. Returns the new arguments
    and the refs (the task's stored inputs). Proxies the user made are left alone (they are small).
    """
    refs: list[DataRef] = []

    def maybe_store(value: Any, label: str) -> Any:
        if is_proxy(value) or isinstance(value, DataRef):
            return value
        blob = dumps(value, serializer)
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
        return loads(blob)
    return proxy_for(ref)
