"""Globus Compute endpoint sites: attempts run as functions at an endpoint (cloud or offline)."""

from site_agents.globus_compute.agent import GlobusComputeAgent
from site_agents.globus_compute.config import GlobusComputeSite

__all__ = ["GlobusComputeAgent", "GlobusComputeSite"]
