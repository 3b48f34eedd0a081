"""How a Python task's arguments and results travel: cloudpickle (default), pickle, dill, or a package's.

A task chooses its serializer with the task option ``serializer`` (per campaign through ``defaults``).
The bytes say which serializer made them: the default's are a plain pickle stream (as every journal so
far holds them), any other's start with a frame naming it, so a result is read back the same way in the
driver, in a consumer task at any site and through a ProxyStore proxy (whose deserializer is `loads`).
A task's result is serialized as its arguments were (`serializer_of` its payload).

None of them resolves a ProxyStore proxy while pickling: a proxy travels as its factory. (cloudpickle's
reducer asks ``isinstance(obj, FunctionType)``, and a proxy answers ``isinstance`` by resolving itself,
which would fetch its data into the pickling process.)

The task function itself always travels by cloudpickle (by value for the campaign's own modules,
metasched.functions): the serializer is about values.
"""

from __future__ import annotations

import functools
import io
import pickle
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import cloudpickle

from metasched.plugins import make_named
from metasched.records import is_proxy

SERIALIZER_ENTRY_POINTS = "metasched.serializers"
DEFAULT_SERIALIZER = "cloudpickle"
_FRAME = b"\x00metasched-serializer:"  # no pickle stream starts with a NUL byte


@runtime_checkable
class Serializer(Protocol):
    """Turns a value into bytes and back; `loads` runs wherever the value is used (any site)."""

    name: str

    def dumps(self, value: Any) -> bytes:
        """The bytes of `value` (any exception: it cannot be serialized this way)."""
        ...

    def loads(self, blob: bytes) -> Any:
        """The value again, from what `dumps` made."""
        ...


def _proxy_as_factory(obj: Any) -> Any:
    """The reduction of a ProxyStore proxy (its factory, unresolved), or NotImplemented for anything else."""
    if is_proxy(obj):
        from proxystore.proxy import Proxy, get_factory

        return Proxy, (get_factory(obj),)
    return NotImplemented


class _CloudPickler(cloudpickle.Pickler):  # type: ignore[misc]
    def reducer_override(self, obj: Any) -> Any:
        reduced = _proxy_as_factory(obj)
        return super().reducer_override(obj) if reduced is NotImplemented else reduced


class _Pickler(pickle.Pickler):
    def reducer_override(self, obj: Any) -> Any:
        return _proxy_as_factory(obj)


class _Pickling:
    """A serializer made of a Pickler class (with the proxy rule above) and an unpickling function."""

    def __init__(self, name: str, pickler: Callable[[io.BytesIO], Any],
                 loads: Callable[[bytes], Any]) -> None:
        self.name, self._pickler, self._loads = name, pickler, loads

    def dumps(self, value: Any) -> bytes:
        buffer = io.BytesIO()
        self._pickler(buffer).dump(value)
        return buffer.getvalue()

    def loads(self, blob: bytes) -> Any:
        return self._loads(blob)


def _cloudpickle() -> Serializer:
    return _Pickling("cloudpickle", lambda buf: _CloudPickler(buf, protocol=pickle.HIGHEST_PROTOCOL),
                     pickle.loads)


def _stdlib_pickle() -> Serializer:
    """Functions and classes by reference only (importable where the task runs); no code travels."""
    return _Pickling("pickle", lambda buf: _Pickler(buf, protocol=pickle.HIGHEST_PROTOCOL), pickle.loads)


def _dill() -> Serializer:
    try:
        import dill
    except ImportError:
        raise ValueError("serializer 'dill' needs the dill package, here and where the tasks run "
                         "(pip install 'metasched[dill]').") from None

    class _DillPickler(dill.Pickler):  # type: ignore[misc]
        def reducer_override(self, obj: Any) -> Any:
            return _proxy_as_factory(obj)

    return _Pickling("dill", lambda buf: _DillPickler(buf, protocol=pickle.HIGHEST_PROTOCOL), dill.loads)


BUILT_IN_SERIALIZERS: dict[str, Callable[[], Serializer]] = {
    "cloudpickle": _cloudpickle, "pickle": _stdlib_pickle, "dill": _dill}


@functools.cache
def serializer_named(name: str) -> Serializer:
    """A built-in serializer, or one an installed package declares; ValueError if unknown.

    A package declares one under the entry point group ``metasched.serializers``: a class, or a function
    of no arguments, that makes it.
    """
    made, source = make_named(name, group=SERIALIZER_ENTRY_POINTS, built_in=BUILT_IN_SERIALIZERS,
                              what="serializer")
    if not isinstance(made, Serializer) or made.name != name:
        raise ValueError(f"serializer {name!r} ({source}) made a {type(made).__name__}, not a "
                         f"serializer named {name!r} with dumps(value) and loads(blob).")
    return made


def dumps(value: Any, serializer: str = DEFAULT_SERIALIZER) -> bytes:
    """`value` as bytes, framed with the serializer's name unless it is the default."""
    blob = serializer_named(serializer).dumps(value)
    return blob if serializer == DEFAULT_SERIALIZER else _FRAME + serializer.encode() + b"\n" + blob


def serializer_of(blob: bytes) -> str:
    """The name of the serializer that made `blob`."""
    if not blob.startswith(_FRAME):
        return DEFAULT_SERIALIZER
    return blob[len(_FRAME):blob.index(b"\n", len(_FRAME))].decode()


def loads(blob: bytes) -> Any:
    """The value of bytes any serializer made (it says which in its frame)."""
    if not blob.startswith(_FRAME):
        return pickle.loads(blob)  # noqa: S301  (a stream metasched made, as every result before)
    end = blob.index(b"\n", len(_FRAME))
    return serializer_named(blob[len(_FRAME):end].decode()).loads(blob[end + 1:])


def unserializable(args: tuple[Any, ...], kwargs: dict[str, Any], serializer: str) -> str:
    """Which argument cannot be serialized, and why ("argument 2 (a generator): ..."), or ''."""
    named = [(f"argument {i + 1}", v) for i, v in enumerate(args)]
    named += [(f"keyword argument {k!r}", v) for k, v in kwargs.items()]
    for label, value in named:
        try:
            dumps(value, serializer)
        except Exception as exc:  # pickling raises anything the object's own reducers raise
            return f"{label} (a {type(value).__name__}): {type(exc).__name__}: {exc}"
    return ""
