"""The site kinds installed here, found through the entry-point group ``metasched.site_agents``.

Each entry point names a ``SiteKind`` (see ``metasched.sites.kind``); metasched looks kinds up by name
(the ``kind`` of a config, or of a campaign file's ``[[sites]]`` table) and never imports one itself.
"""

from __future__ import annotations

import functools
from importlib.metadata import entry_points
from typing import Any

from metasched.errors import ConfigurationError
from metasched.sites.base import SiteAgent
from metasched.sites.kind import SiteKind

GROUP = "metasched.site_agents"
#: The kind of the site a campaign gets when it names none (one site called "local" with every core).
DEFAULT_KIND = "local"


def installed_kinds() -> list[str]:
    """The names of the site kinds installed in this environment."""
    return sorted({ep.name for ep in entry_points(group=GROUP)})


@functools.cache
def kind_named(name: str) -> SiteKind:
    """The installed kind called `name`; ConfigurationError listing the installed ones if none is."""
    matches = [ep for ep in entry_points(group=GROUP) if ep.name == name]
    if not matches:
        raise ConfigurationError(
            f"no installed package provides the site kind {name!r} (installed kinds: "
            f"{', '.join(installed_kinds()) or 'none'}).")
    kind = matches[0].load()
    if not isinstance(kind, SiteKind) or kind.name != name:
        raise ConfigurationError(f"the entry point {matches[0].value} for site kind {name!r} is not a "
                                 f"metasched.sites.kind.SiteKind named {name!r}.")
    return kind


def kinds() -> list[SiteKind]:
    """Every installed kind, by name."""
    return [kind_named(name) for name in installed_kinds()]


def kind_of(config: Any) -> SiteKind:
    """The kind a site configuration belongs to (its class's ``kind``)."""
    name = getattr(config, "kind", None)
    if not isinstance(name, str):
        raise ConfigurationError(f"{config!r} is not a site configuration (it has no kind).")
    return kind_named(name)


def agent_for(config: Any) -> SiteAgent:
    """Build the agent of a site configuration."""
    kind = kind_of(config)
    agent = kind.agent(config)
    if not isinstance(agent, SiteAgent):
        raise ConfigurationError(
            f"the site agent of kind {kind.name!r} does not satisfy the SiteAgent protocol.")
    return agent


def config_class_named(class_name: str) -> type[Any] | None:
    """The configuration class called `class_name` (e.g. ``SlurmSite``) of an installed kind, or None."""
    for kind in kinds():
        if kind.config.__name__ == class_name:
            return kind.config
    return None


def default_sites() -> list[Any]:
    """The sites of a campaign that names none."""
    return [kind_named(DEFAULT_KIND).config(name="local")]
