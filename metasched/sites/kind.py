"""What a site kind declares, once: its configuration class, its agent, its checks and its matrix rows.

A package that adds a kind exposes one ``SiteKind`` through the entry-point group
``metasched.site_agents`` (see docs/architecture.md, "Adding a site kind")::

    [project.entry-points."metasched.site_agents"]
    mykind = "mypackage:KIND"

The configuration class is a frozen dataclass with ``kind = "mykind"`` (a ClassVar) and a ``name``: it is
the one schema of the kind, for the Python API and for campaign files (validated through pydantic's
``TypeAdapter``; see ``metasched.sites.schema``). The agent factory builds a ``SiteAgent`` from it without
I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from metasched.sites.base import SiteAgent


@dataclass(frozen=True, slots=True, kw_only=True)
class Check:
    """One line of ``metasched sites check``: what was checked at a site, and the fix if it failed."""

    site: str
    check: str
    passed: bool
    detail: str
    fix: str = ""


@dataclass(frozen=True, slots=True)
class MatrixRow:
    """One scheduler x version of the test matrix: the contract variant that exercises it, its fault tests.

    ``contract_kind`` is the parameter of the contract suite (tests/contract) that runs against it;
    ``faults`` maps a fault column to the test node id that fills it.
    """

    name: str
    scheduler: str
    version: str
    site: str
    contract_kind: str | None
    faults: Mapping[str, str] = field(default_factory=dict)
    not_applicable: tuple[str, ...] = ()
    note: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class SiteKind:
    """A site kind: its name (the ``kind`` of campaign files), config class, agent and optional extras.

    Args:
        name: the kind's name, also the config class's ``kind``.
        config: the configuration dataclass (the schema; picklable, no I/O).
        agent: builds the kind's agent from a config (no I/O).
        preflight: ``metasched sites check``: each check of one site, in order.
        matrix_rows: the rows of ``metasched testmatrix`` this kind fills (test sites of this checkout).
    """

    name: str
    config: type[Any]
    agent: Callable[[Any], SiteAgent]
    preflight: Callable[[Any], Iterable[Check]] | None = None
    matrix_rows: tuple[MatrixRow, ...] = ()
