"""PBS-family sites: OpenPBS / PBS Pro and Torque dialects behind one agent (``#PBS`` directives)."""

from site_agents.pbs.agent import PBSAgent
from site_agents.pbs.config import PBSSite

__all__ = ["PBSAgent", "PBSSite"]
