"""Slurm sites: the Slurm dialect of the batch agent, its configuration and its preflight checks."""

from __future__ import annotations

from metasched.sites.kind import SiteKind
from site_agents.batch.modes import in_mode
from site_agents.slurm.agent import slurm_agent
from site_agents.slurm.config import SlurmSite
from site_agents.slurm.matrix import ROWS
from site_agents.slurm.preflight import preflight

KIND = SiteKind(name="slurm", config=SlurmSite, agent=in_mode(slurm_agent), preflight=preflight,
                matrix_rows=ROWS)

__all__ = ["KIND", "SlurmSite", "slurm_agent"]
