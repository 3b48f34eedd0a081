"""Grid Engine sites (SGE 8.1.9 family): one job per attempt, ``#$`` directives, qstat/qacct/qdel."""

from site_agents.gridengine.agent import GridEngineAgent
from site_agents.gridengine.config import GridEngineSite

__all__ = ["GridEngineAgent", "GridEngineSite"]
