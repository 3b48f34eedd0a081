"""Site configuration dataclasses are the schema: typed, constrained fields, checked the same two ways.

A kind's config class annotates its fields with the types below (``PositiveInt``, ``AbsolutePath``,
``StoreOption``...). Campaign files validate a ``[[sites]]`` table into the class with pydantic's
``TypeAdapter`` (``validate_site``: every problem with its field); the Python API checks the same
constraints in ``__post_init__`` (``check_fields``), so there is nothing to keep in step.
"""

from __future__ import annotations

import os
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Annotated, Any, Literal

import annotated_types
from pydantic import AfterValidator, BeforeValidator, ConfigDict, TypeAdapter

from metasched.data.stores import EndpointStore, FileStore, RedisStore, SshFileStore, StoreSpec
from metasched.errors import ConfigurationError

#: Set as ``__pydantic_config__`` on a config class: unknown keys in a campaign file are errors.
FORBID_EXTRA = ConfigDict(extra="forbid")


def _absolute(path: str) -> str:
    if not os.path.isabs(path):
        raise ValueError(f"must be an absolute path, got {path!r}")
    return path


def _optional_absolute(path: str | None) -> str | None:
    return None if path is None else _absolute(path)


_STORES: dict[str, type[Any]] = {"file": FileStore, "redis": RedisStore, "endpoint": EndpointStore,
                                  "ssh-file": SshFileStore}


def _store_table(value: Any) -> Any:
    """A campaign file's ``store = { kind = "file", path = "..." }`` as a store spec."""
    if not isinstance(value, Mapping):
        return value
    table = dict(value)
    kind = table.pop("kind", None)
    cls = _STORES.get(str(kind))
    if cls is None:
        raise ValueError(f"store kind must be one of {', '.join(_STORES)}, got {kind!r}")
    try:
        return _adapter(cls).validate_python(table)
    except ConfigurationError as exc:  # the store's own checks: a problem of this field
        raise ValueError(str(exc)) from None


PositiveInt = Annotated[int, annotated_types.Ge(1)]
NonNegativeInt = Annotated[int, annotated_types.Ge(0)]
PositiveFloat = Annotated[float, annotated_types.Gt(0)]
NonNegativeFloat = Annotated[float, annotated_types.Ge(0)]
AbsolutePath = Annotated[str, AfterValidator(_absolute)]
OptionalAbsolutePath = Annotated[str | None, AfterValidator(_optional_absolute)]
NonEmptyArgv = Annotated[tuple[str, ...], annotated_types.MinLen(1)]
StoreOption = Annotated[StoreSpec | None, BeforeValidator(_store_table)]


_ADAPTERS: dict[type[Any], TypeAdapter[Any]] = {}
_CONSTRAINTS: dict[type[Any], list[tuple[str, tuple[Any, ...]]]] = {}


def _adapter(cls: type[Any]) -> TypeAdapter[Any]:
    adapter = _ADAPTERS.get(cls)
    if adapter is None:
        adapter = _ADAPTERS[cls] = TypeAdapter(cls)
    return adapter


@dataclass(frozen=True, slots=True)
class _OneOf:
    """A Literal field's allowed values (each item's, for a tuple of Literals)."""

    values: tuple[Any, ...]
    each: bool


def _constraints(cls: type[Any]) -> list[tuple[str, tuple[Any, ...]]]:
    cached = _CONSTRAINTS.get(cls)
    if cached is not None:
        return cached
    hints = typing.get_type_hints(cls, include_extras=True)
    out = []
    for item in fields(cls):
        hint = hints.get(item.name)
        metadata: tuple[Any, ...] = ()
        if typing.get_origin(hint) is Annotated:
            hint, *extra = typing.get_args(hint)
            metadata = tuple(extra)
        if typing.get_origin(hint) is Literal:
            metadata += (_OneOf(typing.get_args(hint), each=False),)
        elif typing.get_origin(hint) is tuple and typing.get_origin(typing.get_args(hint)[0]) is Literal:
            metadata += (_OneOf(typing.get_args(typing.get_args(hint)[0]), each=True),)
        if metadata:
            out.append((item.name, metadata))
    _CONSTRAINTS[cls] = out
    return out


def check_fields(config: Any) -> None:
    """Apply the Annotated constraints of a config dataclass's fields; ConfigurationError naming the field."""
    where = f"{getattr(config, 'kind', 'site')} site {getattr(config, 'name', '?')}"
    for name, metadata in _constraints(type(config)):
        value = getattr(config, name)
        for rule in metadata:
            problem = _violation(rule, value)
            if problem:
                raise ConfigurationError(f"{where}: {name} {problem}.")


def _violation(rule: Any, value: Any) -> str:
    if isinstance(rule, _OneOf):
        wrong = [v for v in (value if rule.each else (value,)) if v not in rule.values]
        return f"must be one of {', '.join(map(repr, rule.values))}, got {wrong[0]!r}" if wrong else ""
    bounds: tuple[tuple[str, str, Callable[[Any, Any], bool]], ...] = (
        ("ge", "at least", lambda v, b: bool(v >= b)), ("gt", "more than", lambda v, b: bool(v > b)))
    for attr, words, ok in bounds:
        bound = getattr(rule, attr, None)
        if isinstance(rule, annotated_types.BaseMetadata) and bound is not None and not ok(value, bound):
            return f"must be {words} {bound}, got {value!r}"
    if isinstance(rule, annotated_types.MinLen) and len(value) < rule.min_length:
        return f"must have at least {rule.min_length} item(s), got {value!r}"
    if isinstance(rule, AfterValidator):
        try:
            check: Callable[[Any], Any] = rule.func  # type: ignore[assignment]
            check(value)
        except ValueError as exc:
            return str(exc)
    return ""


def validate_site(cls: type[Any], table: Mapping[str, Any]) -> Any:
    """A campaign file's ``[[sites]]`` table (without ``kind``) as an instance of the kind's config class.

    Raises pydantic's ValidationError (each problem with its field) or ConfigurationError (a problem
    the class's own checks found).
    """
    return _adapter(cls).validate_python(dict(table))
