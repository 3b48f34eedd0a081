"""PBS dialects on recorded real output: OpenPBS/PBS Pro JSON (tests/data/openpbs, each file cited in its
README) and Debian's Torque-style wrappers over Slurm (tests/data/torque-wrappers)."""

from __future__ import annotations

from pathlib import Path

import pytest

from metasched.records import CommandSpec, Resources, TaskKind, TaskSpec
from site_agents.pbs.jobs import JobState, hhmmss, sequence_number, server_unreachable
from site_agents.pbs.openpbs import OpenPBS
from site_agents.pbs.torque import Torque

DATA = Path(__file__).resolve().parent.parent / "data"


def read(name: str) -> str:
    return (DATA / name).read_text()


def _spec(**resources: object) -> TaskSpec:
    return TaskSpec(task_id="t1", name="sim", kind=TaskKind.COMMAND, command=CommandSpec(argv=("true",)),
                    resources=Resources(**resources))  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- OpenPBS
def test_openpbs_finished_job_with_exit_status() -> None:
    jobs = OpenPBS().parse_qstat(read("openpbs/qstat-x-f-F-json-pbs-19.0.0-finished.json"))
    job = jobs["40"]
    assert (job.job_id, job.name, job.state, job.exit_status) == ("40.pbs", "pbs_sleep", JobState.FINISHED, 0)
    assert job.comment.endswith("and finished")


def test_openpbs_held_queued_and_deleted_before_running() -> None:
    jobs = OpenPBS().parse_qstat(read("openpbs/qstat-x-f-F-json-pbspro-2022.1.7-excerpt.json"))
    assert set(jobs) == {"4345644", "4683812", "4846773"}
    held, queued, deleted = jobs["4345644"], jobs["4683812"], jobs["4846773"]
    assert held.state is JobState.HELD_BY_SYSTEM
    assert held.comment == "job held, too many failed attempts to run"
    assert queued.state is JobState.QUEUED
    assert queued.exit_status is None
    assert deleted.state is JobState.FINISHED
    assert deleted.exit_status is None
    assert deleted.job_id == "4846773.aurora-pbs-0001.hostmgmt.cm.aurora.alcf.anl.gov"


def test_openpbs_nodes() -> None:
    capacity = OpenPBS().parse_nodes(read("openpbs/pbsnodes-av-F-json-pbs-19.2.6.json"))
    assert (capacity.total_cores, capacity.max_cores_per_node, capacity.nodes) == (56, 56, 1)


def test_openpbs_empty_or_garbled_answers_list_nothing() -> None:
    assert OpenPBS().parse_qstat("") == {}
    assert OpenPBS().parse_qstat("qstat: Unknown Job Id 12.srv\n") == {}
    assert OpenPBS().parse_nodes('{"nodes": {"n1": {"state": "down", "resources_available": {"ncpus": 8}}}}'
                                 ).total_cores == 0


def test_openpbs_directives_follow_the_reference_guide() -> None:
    lines = OpenPBS().directives(spec=_spec(cores=4, memory_mb=8000, gpus=1, walltime_s=90.5),
                                 name="ms-p-a1", attempt_dir="/s/a1", queue="workq", account="proj1")
    assert lines == ["#PBS -N ms-p-a1", "#PBS -S /bin/bash", "#PBS -o /s/a1/job.out", "#PBS -e /s/a1/job.err",
                     "#PBS -r n", "#PBS -l select=1:ncpus=4:mem=8000mb:ngpus=1", "#PBS -l walltime=00:02:31",
                     "#PBS -q workq", "#PBS -A proj1"]
    assert OpenPBS().qsub_argv("/s/a1/job.sh", lines) == ["qsub", "/s/a1/job.sh"]
    assert OpenPBS().qstat_argv(["1.s", "2.s"]) == ["qstat", "-f", "-F", "json", "-x", "1.s", "2.s"]
    with pytest.raises(ValueError, match="span lines"):
        OpenPBS().directives(spec=_spec(), name="a\nb", attempt_dir="/s", queue=None, account=None)


def test_openpbs_exit_codes_in_words() -> None:
    dialect = OpenPBS()
    assert dialect.describe_exit(271) == "exit status 271 (killed by signal 15)"
    assert "JOB_EXEC_KILL_WALLTIME" in dialect.describe_exit(-29)
    assert dialect.describe_exit(None) == "no exit status"
    jobs = dialect.parse_qstat(read("openpbs/qstat-x-f-F-json-pbs-19.0.0-finished.json"))
    assert not dialect.walltime_killed(jobs["40"])


def test_qsub_output() -> None:
    assert OpenPBS().parse_qsub("1234.pbs-server\n") == "1234.pbs-server"
    assert OpenPBS().parse_qsub("qsub: Unknown queue\n") is None
    ids = [Torque().parse_qsub(line) for line in read("torque-wrappers/qsub.txt").splitlines()]
    assert ids == ["3", "4", "5", "6"]
    assert Torque().parse_qsub("There was an error running the Slurm sbatch command.\n") is None


# ----------------------------------------------------------------------------------------------- Torque
def test_torque_qstat_queued_running_completed() -> None:
    jobs = Torque().parse_qstat(read("torque-wrappers/qstat-f-queued-running-completed.txt"))
    states = {job_id: job.state for job_id, job in jobs.items()}
    assert states == {"1": JobState.FINISHED, "2": JobState.FINISHED, "3": JobState.RUNNING,
                      "4": JobState.RUNNING, "5": JobState.QUEUED, "6": JobState.QUEUED}
    assert jobs["3"].name == "ms-zeta-s1"
    assert jobs["3"].exit_status is None


def test_torque_qstat_after_qdel_and_real_torque_exit_status() -> None:
    jobs = Torque().parse_qstat(read("torque-wrappers/qstat-f-after-qdel.txt"))
    assert jobs["4"].state is JobState.FINISHED
    assert jobs["4"].name == "ms-zeta-s2"
    # Real Torque adds exit_status to completed jobs and wraps long values onto indented lines.
    text = ("Job Id: 77.head.example.org\n    Job_Name = ms-t-a1\n    job_state = C\n"
            "    Variable_List = PBS_O_HOME=/root,PBS_O_LANG=C,\n\tPBS_O_WORKDIR=/tmp\n"
            "    exit_status = 271\n")
    job = Torque().parse_qstat(text)["77"]
    assert (job.name, job.state, job.exit_status) == ("ms-t-a1", JobState.FINISHED, 271)


def test_torque_nodes_skip_down_ones() -> None:
    capacity = Torque().parse_nodes(read("torque-wrappers/pbsnodes-a-one-down.txt"))
    assert (capacity.total_cores, capacity.max_cores_per_node, capacity.nodes) == (4, 4, 1)


def test_torque_directives_and_one_resource_list_on_the_command_line() -> None:
    lines = Torque().directives(spec=_spec(cores=2, memory_mb=200, walltime_s=10), name="ms-z-a1",
                                attempt_dir="/s/a1", queue="batch", account=None)
    assert lines == ["#PBS -N ms-z-a1", "#PBS -o /s/a1/job.out", "#PBS -e /s/a1/job.err", "#PBS -r n",
                     "#PBS -l nodes=1:ppn=2,mem=200mb,walltime=00:01:10", "#PBS -q batch"]
    assert Torque().qsub_argv("/s/a1/job.sh", lines) == [
        "qsub", "-N", "ms-z-a1", "-o", "/s/a1/job.out", "-e", "/s/a1/job.err", "-r", "n",
        "-l", "nodes=1:ppn=2,mem=200mb,walltime=00:01:10", "-q", "batch", "/s/a1/job.sh"]


def test_helpers() -> None:
    assert sequence_number("123.server.example.org") == "123"
    assert sequence_number("9") == "9"
    assert hhmmss(3723.2) == "01:02:04"
    assert server_unreachable("slurm_load_jobs error: Unable to contact slurm controller (connect failure)")
    assert server_unreachable("Connection refused\nqstat: cannot connect to server pbs (errno=15010)")
    assert not server_unreachable("qstat: Unknown Job Id 12.pbs")
