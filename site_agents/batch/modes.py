"""A batch site's two modes: one job per attempt (``BatchAgent``), or pilot blocks (``PilotAgent``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from site_agents.batch.agent import BatchAgent
from site_agents.batch.config import BatchSite
from site_agents.batch.pilots import PilotAgent


def in_mode(factory: Callable[[Any], BatchAgent]) -> Callable[[Any], BatchAgent | PilotAgent]:
    """A batch kind's agent factory that honours ``mode``: the batch agent, or pilots around it."""

    def agent(config: BatchSite) -> BatchAgent | PilotAgent:
        batch = factory(config)
        return PilotAgent(batch) if config.mode == "pilot" else batch

    agent.__doc__ = factory.__doc__
    return agent
