"""Globus Compute endpoint sites: attempts run as functions at an endpoint (cloud or offline)."""

from __future__ import annotations

from collections.abc import Iterator

from metasched.errors import SiteAgentError
from metasched.sites.kind import Check, MatrixRow, SiteKind
from site_agents.globus_compute.agent import GlobusComputeAgent
from site_agents.globus_compute.config import GlobusComputeSite


def preflight(site: GlobusComputeSite) -> Iterator[Check]:
    """Reach the endpoint and run the agent's probe task (Python, dill and metasched at the endpoint)."""
    agent = GlobusComputeAgent(site)
    try:
        agent.start()
    except ImportError as exc:
        yield Check(site=site.name, check="globus", passed=False, detail=str(exc),
                    fix="pip install 'metasched[globus]'")
        return
    except SiteAgentError as exc:
        yield Check(site=site.name, check="endpoint", passed=False, detail=str(exc).splitlines()[0],
                    fix="see docs/sites/globus-compute.md")
        return
    finally:
        agent.close()
    details = agent.endpoint_details
    yield Check(site=site.name, check="endpoint", passed=True,
                detail=f"probe task ran: Python {details.get('python_version', '?')}, dill "
                       f"{details.get('dill_version', '?')}")


ROWS = (
    MatrixRow("globus-compute-local", "Globus Compute (offline endpoint)", "4.19", "gc",
              "globus-compute-local",
              not_applicable=("server crash, state lost", "job purged from queue", "node lost",
                              "job run twice")),
    MatrixRow("globus-compute-slurm", "Globus Compute (offline endpoint) on Slurm", "4.19 / 22.05.8", "gc",
              "globus-compute-slurm", not_applicable=("server crash, state lost", "job purged from queue",
                                                      "job run twice")),
)

KIND = SiteKind(name="globus_compute", config=GlobusComputeSite, agent=GlobusComputeAgent,
                preflight=preflight,
                matrix_rows=ROWS)

__all__ = ["KIND", "GlobusComputeAgent", "GlobusComputeSite"]
