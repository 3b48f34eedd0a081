"""A campaign's site agents, started, closed and sent work together: each site on its own thread.

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
from typing import TypeVar

from metasched.errors import MetaschedError, SiteAgentError
from metasched.sites.base import SiteAgent

log = logging.getLogger(__name__)
T = TypeVar("T")


def at_once(items: Sequence[T], call: Callable[[T], object]) -> list[BaseException | None]:
    """`call` on every item, a thread each; what each raised (None if nothing), in the items' order.

    One site slow to answer holds back no other. One item (or none: a step with nothing to submit) is
    called in this thread.
    """
    if len(items) < 2:
        raised: list[BaseException | None] = []
        for item in items:
            try:
                call(item)
            except Exception as exc:  # handed to the caller, as a thread's would be
                raised.append(exc)
            else:
                raised.append(None)
        return raised
    with ThreadPoolExecutor(max_workers=len(items), thread_name_prefix="metasched-sites") as pool:
        futures = [pool.submit(call, item) for item in items]
    return [future.exception() for future in futures]


def start_agents(agents: Sequence[SiteAgent]) -> None:
    """Start every agent; if one fails, close those that started and raise the first failure."""
    raised = at_once(agents, lambda agent: agent.start())
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
    raised = [exc for exc in at_once(agents, lambda agent: agent.close()) if exc is not None]
    for exc in raised:
        if not isinstance(exc, MetaschedError):
            raise exc
    if raised:
        raise SiteAgentError("closing sites failed: " + "; ".join(str(exc) for exc in raised), site="*")
