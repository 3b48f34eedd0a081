"""PBS-family sites: the OpenPBS / PBS Pro and Torque dialects of the batch agent (``#PBS`` directives)."""

from __future__ import annotations

from metasched.sites.kind import MatrixRow, SiteKind
from site_agents.batch.modes import in_mode
from site_agents.pbs.agent import pbs_agent, preflight
from site_agents.pbs.config import PBSSite

ROWS = (
    MatrixRow("torque-wrappers", "Torque-style wrappers over Slurm (not Torque)", "slurm-wlm-torque 22.05.8",
              "zeta", "torque-wrappers", faults={
                  "server stopped": "tests/integration/test_pbs.py::test_server_stopped_midway_loses_nothing",
                  "job deleted outside": "tests/integration/test_pbs.py::"
                                         "test_job_deleted_outside_metasched_is_run_again",
                  "job run twice": "tests/integration/test_run_once.py::"
                                   "test_a_torque_job_started_twice_runs_its_task_once",
                  "parsers (recorded output)": "tests/unit/test_pbs_parsers.py::"
                                               "test_torque_qstat_queued_running_completed"},
              note="a compatibility layer over Slurm: proves the Torque dialect's commands, not a Torque "
                   "server"),
    MatrixRow("openpbs", "OpenPBS / PBS Pro", "recordings of 19.0, 19.2.6, 2022.1.7, 23.06.06", "-", None,
              faults={"parsers (recorded output)": "tests/unit/test_pbs_parsers.py"},
              note="no OpenPBS server runs here: the dialect's parsers on recordings (23.06.06: every job "
                   "state of a live server; see docs/sites/pbs.md for what that server was shown to do)"),
)

KIND = SiteKind(name="pbs", config=PBSSite, agent=in_mode(pbs_agent), preflight=preflight, matrix_rows=ROWS)

__all__ = ["KIND", "PBSSite", "pbs_agent"]
