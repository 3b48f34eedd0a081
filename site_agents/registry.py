"""Find the agent class for a site configuration through the entry-point group ``metasched.site_agents``.

An external package adds a site kind by declaring, in its own pyproject.toml::

    [project.entry-points."metasched.site_agents"]
    mykind = "mypackage.agent:MyAgent"

where ``MyAgent(config)`` builds an agent (no I/O) satisfying ``site_agents.base.SiteAgent`` and the
config has ``kind = "mykind"``.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

from metasched.errors import ConfigurationError
from site_agents.base import SiteAgent

GROUP = "metasched.site_agents"


def installed_kinds() -> list[str]:
    """The site kinds installed in this environment."""
    return sorted(ep.name for ep in entry_points(group=GROUP))


def agent_for(config: Any) -> SiteAgent:
    """Build the agent for `config` from the entry point named by its ``kind``."""
    kind = getattr(config, "kind", None)
    matches = [ep for ep in entry_points(group=GROUP) if ep.name == kind]
    if not matches:
        raise ConfigurationError(
            f"site {getattr(config, 'name', config)!r} has kind {kind!r}, but no installed package "
            f"provides a site agent for it (installed kinds: {', '.join(installed_kinds()) or 'none'})."
        )
    factory = matches[0].load()
    agent = factory(config)
    if not isinstance(agent, SiteAgent):
        raise ConfigurationError(
            f"the site agent for kind {kind!r} ({matches[0].value}) does not satisfy the SiteAgent protocol."
        )
    return agent
