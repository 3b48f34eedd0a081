"""Grid Engine sites (SGE 8.1.9 family): the Grid Engine dialect of the batch agent."""

from __future__ import annotations

from collections.abc import Iterator

from metasched.sites.kind import Check, MatrixRow, SiteKind
from site_agents.batch.agent import BatchAgent
from site_agents.batch.modes import in_mode
from site_agents.batch.preflight import batch_preflight
from site_agents.gridengine.config import GridEngineSite
from site_agents.gridengine.dialect import GridEngine


def gridengine_agent(config: GridEngineSite) -> BatchAgent:
    """The batch agent speaking Grid Engine at this site."""
    return BatchAgent(config, GridEngine(queue=config.queue, project=config.project, pe=config.pe))


def preflight(site: GridEngineSite) -> Iterator[Check]:
    """Reach the cell (qstat -f), then the batch checks (shared_dir, a smoke job, Python)."""
    agent = gridengine_agent(site)
    yield from batch_preflight(site, agent.dialect, agent.transport, explain=lambda out: (
        "check SGE_ROOT/SGE_CELL (environment) and that the qmaster runs"))


ROWS = (MatrixRow("gridengine-8.1.9", "Grid Engine", "8.1.9 (bookworm)", "epsilon", "gridengine", faults={
    "server stopped": "tests/integration/test_gridengine.py::test_qmaster_stopped_midway_loses_nothing",
    "job deleted outside": "tests/integration/test_gridengine.py::"
                           "test_job_deleted_outside_metasched_is_run_again",
    "parsers (recorded output)": "tests/unit/test_gridengine_parsers.py"}),)

KIND = SiteKind(name="gridengine", config=GridEngineSite, agent=in_mode(gridengine_agent),
                preflight=preflight, matrix_rows=ROWS)

__all__ = ["KIND", "GridEngineSite", "gridengine_agent"]
