"""The test-matrix rows of Slurm sites (the containerized test sites of this checkout, tests/)."""

from __future__ import annotations

from metasched.sites.kind import MatrixRow

_AGENT = "tests/integration/test_slurm_agent.py::"
_FAULTS = "tests/integration/test_slurm_faults.py::"
_ACCOUNTING = "tests/integration/test_slurm_accounting.py::"

ROWS = (
    MatrixRow("slurm-22.05", "Slurm", "22.05.8 (bookworm)", "alpha", "slurm-batch", faults={
        "server stopped": _AGENT + "test_controller_stop_moves_work_elsewhere_and_loses_nothing",
        "server crash, state lost": _AGENT + "test_controller_crash_with_lost_state_loses_nothing",
        "job purged from queue": _FAULTS + "test_job_purged_from_squeue_is_resolved_from_its_own_files",
        "node lost": _FAULTS + "test_killed_compute_node_its_task_is_retried_elsewhere",
        "job deleted outside": _FAULTS + "test_job_cancelled_outside_metasched_is_run_again",
        "job run twice": "tests/integration/test_run_once.py::"
                         "test_a_slurm_job_started_twice_runs_its_task_once",
        "parsers (recorded output)": "tests/unit/test_slurm_parsers.py"}),
    MatrixRow("slurm-24.11", "Slurm + slurmdbd", "24.11.5 (trixie)", "eta", "slurm-24.11", faults={
        "server stopped": _ACCOUNTING + "test_controller_host_stopped_midway_loses_nothing",
        "job deleted outside": _ACCOUNTING + "test_sacct_explains_a_job_purged_from_squeue",
        "job purged from queue": _ACCOUNTING + "test_sacct_explains_a_job_purged_from_squeue",
        "parsers (recorded output)": "tests/unit/test_slurm_parsers.py::"
                                     "test_sacct_of_purged_jobs_on_slurm_24_11"}),
    MatrixRow("slurm-22.05-campus", "Slurm, set up by hand, commands as another user", "22.05.8 (bookworm)",
              "iota", "slurm-campus", faults={
                  "job deleted outside": "tests/integration/test_campus_site.py::"
                                         "test_job_cancelled_by_its_user_outside_metasched_is_run_again"},
              note="not built by metasched's recipe (ci/slurm-campus): its own slurm.conf on the login side "
                   "only (CR_Core, nodes without RealMemory), a munged per node with its own key; metasched "
                   "runs as root, the site's commands as alice (docker exec -u alice)"),
    MatrixRow("slurm-26.05-apptainer", "Slurm + Apptainer", "26.05.5 (sid)", "delta", "slurm-apptainer"),
    MatrixRow("slurm-22.05-ssh", "Slurm over SSH, no shared filesystem", "22.05.8 (bookworm)", "omicron",
              "slurm-ssh", faults={
                  "server stopped": "tests/integration/test_ssh_site.py::"
                                    "test_sshd_stopped_for_30_s_loses_nothing_and_gets_no_work"},
              note="reached only through sshd on its login node (ci/ssh-login); its shared directory is a "
                   "Docker volume this machine does not mount"),
)
