"""A campaign's site agents, started and closed together: each site on its own thread.

Starting a site is several round trips to it (at a batch site: who we are there, its nodes, its queue,
the worker staged; seconds over SSH) and closing one at least one (deleting what still runs there). One
site after another, a campaign waited for the sum; now it waits for the slowest. A site that fails to
start fails the campaign's start: the sites that did start are closed again (an SSH site's connection, a
local site's Ray tasks, blocks already adopted) and the first failure in the campaign's order of sites is
raised.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from metasched.errors import MetaschedError, SiteAgentError
from metasched.sites.base import SiteAgent

log = logging.getLogger(__name__)


def _on_each(agents: Sequence[SiteAgent], call: Callable[[SiteAgent], None]) -> list[BaseException | None]:
    """`call` on every agent at once; what each raised (None if nothing), in the agents' order."""
    with ThreadPoolExecutor(max_workers=max(len(agents), 1), thread_name_prefix="metasched-sites") as pool:
        futures = [pool.submit(call, agent) for agent in agents]
    return [future.exception() for future in futures]


def start_agents(agents: Sequence[SiteAgent]) -> None:
    """Start every agent; if one fails, close those that started and raise the first failure."""
    raised = _on_each(agents, lambda agent: agent.start())
    failed = next((exc for exc in raised if exc is not None), None)
    if failed is None:
        return
    try:
        close_agents([agent for agent, exc in zip(agents, raised, strict=True) if exc is None])
    except MetaschedError as exc:
        log.warning("closing the sites that had started: %s", exc)
    raise failed


def close_agents(agents: Sequence[SiteAgent]) -> None:
    """Close every agent (each cancels what still runs at its site); raise what failed, all sites named."""
    raised = [exc for exc in _on_each(agents, lambda agent: agent.close()) if exc is not None]
    for exc in raised:
        if not isinstance(exc, MetaschedError):
            raise exc
    if raised:
        raise SiteAgentError("closing sites failed: " + "; ".join(str(exc) for exc in raised), site="*")
