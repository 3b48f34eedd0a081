"""The batch agent speaking a PBS dialect at one site, and its preflight checks."""

from __future__ import annotations

from collections.abc import Iterator

from metasched.sites.kind import Check
from site_agents.batch.agent import BatchAgent
from site_agents.batch.preflight import batch_preflight
from site_agents.pbs.config import PBSSite
from site_agents.pbs.openpbs import OpenPBS
from site_agents.pbs.torque import Torque


def pbs_agent(config: PBSSite) -> BatchAgent:
    """The batch agent with the site's dialect (OpenPBS or Torque)."""
    flavour = OpenPBS if config.dialect == "openpbs" else Torque
    return BatchAgent(config, flavour(queue=config.queue, account=config.account))


def preflight(site: PBSSite) -> Iterator[Check]:
    """Reach the server (pbsnodes), then the batch checks (shared_dir, a smoke job, Python)."""
    agent = pbs_agent(site)
    yield from batch_preflight(site, agent.dialect, agent.transport,
                               explain=lambda out: "check PBS_SERVER (environment) and that the server runs")
