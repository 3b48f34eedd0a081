"""Slurm sites: pure command builders and parsers, and the batch-mode agent."""

from __future__ import annotations

from site_agents.slurm.agent import SlurmAgent
from site_agents.slurm.config import SlurmSite

__all__ = ["SlurmAgent", "SlurmSite"]
