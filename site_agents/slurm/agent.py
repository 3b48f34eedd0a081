"""The batch agent speaking Slurm at one site."""

from __future__ import annotations

from site_agents.batch.agent import BatchAgent
from site_agents.slurm.config import SlurmSite
from site_agents.slurm.dialect import SlurmDialect


def slurm_agent(config: SlurmSite) -> BatchAgent:
    """Every Slurm command of this agent gets the site's ``SLURM_CONF`` (where one is given)."""
    dialect = SlurmDialect(site=config.name, partition=config.partition, account=config.account,
                           qos=config.qos, accounting=config.accounting)
    env = {"SLURM_CONF": config.slurm_conf} if config.slurm_conf else {}
    return BatchAgent(config, dialect, env=env)
