"""PBS dialects on recorded real output: a live OpenPBS 23.06.06 server in every job state
(tests/data/openpbs-23.06.06), older PBS Pro JSON (tests/data/openpbs, each file cited in its README) and
Debian's Torque-style wrappers over Slurm (tests/data/torque-wrappers)."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from pathlib import Path

import pytest

from site_agents.batch.dialect import JobEnd, JobRequest, JobState, hhmmss
from site_agents.batch.forecast import QueuedJob
from site_agents.batch.rounds import Deletions
from site_agents.pbs.family import queued_job, quoted_path, sequence_number, server_unreachable
from site_agents.pbs.openpbs import OpenPBS, describe_exit, parse_qstat, parse_queue
from site_agents.pbs.torque import Torque
from site_agents.pbs.torque import parse_qstat as parse_torque_qstat
from site_agents.runner import CommandOutput
from tests.unit.dialect_inputs import job_request, output

DATA = Path(__file__).resolve().parent.parent / "data"
LIVE = DATA / "openpbs-23.06.06"


def read(name: str) -> str:
    return (DATA / name).read_text()






def live(name: str) -> object:
    (job,) = parse_qstat((LIVE / name).read_text()).values()
    return job


# ------------------------------------------------------------------------------- OpenPBS 23.06.06 (live)
@pytest.mark.parametrize(("recording", "state", "end"), [
    ("qstat-queued.json", JobState.QUEUED, None),
    ("qstat-running.json", JobState.RUNNING, None),
    ("qstat-held-user.json", JobState.QUEUED, None),  # held by its owner: may be released
    ("qstat-held-system.json", JobState.HELD, None),  # held by the system: never starts as it is
    ("qstat-finished-0.json", JobState.FINISHED, JobEnd.COMPLETED),
    ("qstat-finished-3.json", JobState.FINISHED, JobEnd.FAILED),
    ("qstat-finished-killed-9.json", JobState.FINISHED, JobEnd.FAILED),  # 137: its own shell, not PBS
    ("qstat-walltime.json", JobState.FINISHED, JobEnd.TIMEOUT),
    ("qstat-deleted-while-queued.json", JobState.FINISHED, JobEnd.CANCELLED),
    ("qstat-deleted-while-running.json", JobState.FINISHED, JobEnd.CANCELLED),
    ("qstat-deleted-while-running-by-root.json", JobState.FINISHED, JobEnd.CANCELLED),
    # A root-owned job deleted while running ends with Exit_status 0: only the comment tells.
    ("root-job-qstat-deleted-while-running.json", JobState.FINISHED, JobEnd.CANCELLED),
])
def test_every_job_state_of_a_live_openpbs_23_06_server(recording: str, state: JobState, end: JobEnd | None
                                                         ) -> None:
    job = live(recording)
    assert (job.state, job.end) == (state, end)  # type: ignore[attr-defined]
    assert job.name == "ms-probe-a1b2.0"  # type: ignore[attr-defined]


def test_live_openpbs_exit_statuses_and_run_counts_in_words() -> None:
    killed = live("qstat-finished-killed-9.json")
    assert "killed by signal 9 (SIGKILL, exit status 137)" in killed.reason  # type: ignore[attr-defined]
    deleted = live("qstat-deleted-while-running.json")
    assert "killed by signal 15 (SIGTERM, exit status 271)" in deleted.reason  # type: ignore[attr-defined]
    assert "terminated by alice" in deleted.reason  # type: ignore[attr-defined]
    assert "JOB_EXEC_KILL_WALLTIME" in live("qstat-walltime.json").reason  # type: ignore[attr-defined]
    assert live("qstat-finished-0.json").run_count == 1  # type: ignore[attr-defined]
    assert live("qstat-queued.json").run_count is None  # type: ignore[attr-defined]


def test_live_openpbs_nodes() -> None:
    capacity = OpenPBS().parse_nodes(output((LIVE / "pbsnodes.json").read_text()))
    assert capacity is not None
    assert (capacity.total_cores, capacity.nodes, capacity.usable_nodes) == (8, 1, 1)


# ---------------------------------------------------------------------------------- PBS Pro 19 / 2022
def test_openpbs_finished_job_with_exit_status() -> None:
    job = parse_qstat(read("openpbs/qstat-x-f-F-json-pbs-19.0.0-finished.json"))["40"]
    assert (job.job_id, job.name, job.state, job.end) == ("40.pbs", "pbs_sleep", JobState.FINISHED,
                                                          JobEnd.COMPLETED)
    assert job.reason.endswith("and finished")


def test_openpbs_held_queued_and_deleted_before_running() -> None:
    jobs = parse_qstat(read("openpbs/qstat-x-f-F-json-pbspro-2022.1.7-excerpt.json"))
    assert set(jobs) == {"4345644", "4683812", "4846773"}
    held, queued, deleted = jobs["4345644"], jobs["4683812"], jobs["4846773"]
    assert held.state is JobState.HELD
    assert held.reason == "job held, too many failed attempts to run"
    assert queued.state is JobState.QUEUED
    assert deleted.state is JobState.FINISHED
    assert deleted.end is JobEnd.CANCELLED  # no Exit_status; its comment says "terminated"
    assert deleted.job_id == "4846773.aurora-pbs-0001.hostmgmt.cm.aurora.alcf.anl.gov"


def test_openpbs_nodes() -> None:
    capacity = OpenPBS().parse_nodes(output(read("openpbs/pbsnodes-av-F-json-pbs-19.2.6.json")))
    assert capacity is not None
    assert (capacity.total_cores, capacity.max_cores_per_node, capacity.nodes) == (56, 56, 1)


def test_openpbs_empty_or_garbled_answers_list_nothing() -> None:
    assert parse_qstat("") == {}
    assert OpenPBS().parse_status(output("", "qstat: Unknown Job Id 12.srv\n", 153)) == {}
    assert OpenPBS().parse_status(output("", "qstat: cannot connect to server pbs (errno=15010)", 1)) is None
    down = OpenPBS().parse_nodes(output('{"nodes": {"n1": {"state": "down", '
                                     '"resources_available": {"ncpus": 8}}}}'))
    assert down is not None
    assert (down.total_cores, down.usable_nodes) == (0, 0)


def test_openpbs_directives_follow_the_reference_guide() -> None:
    dialect = OpenPBS(queue="workq", account="proj1")
    job = job_request("ms-p-a1", cores=4, memory_mb=8000, gpus=1, walltime_s=90.5)
    lines = dialect.header(job)
    assert lines == ['#PBS -N ms-p-a1', '#PBS -S /bin/bash', '#PBS -o "/s/a1/job.out"',
                     '#PBS -e "/s/a1/job.err"',
                     '#PBS -r n', '#PBS -l select=1:ncpus=4:mem=8000mb:ngpus=1', '#PBS -l walltime=00:02:31',
                     '#PBS -q workq', '#PBS -A proj1']
    assert dialect.submit_argv(job, lines) == ["qsub", "/s/a1/job.sh"]
    assert dialect.status_argv("alice", ["1.s", "2.s"]) == ["qstat", "-f", "-F", "json", "-x", "1.s", "2.s"]
    bad = JobRequest(spec=job.spec, name="a\nb", attempt=job.attempt, limit_s=None, warning_lead_s=None)
    with pytest.raises(ValueError, match="span lines"):
        dialect.header(bad)


def test_paths_with_spaces_are_quoted_and_quotes_refused() -> None:
    """A live OpenPBS 23.06 refused `#PBS -o` with a space ("directive error") and took it double-quoted."""
    lines = OpenPBS().header(job_request("ms-p-a1", "/s/we ird dir/a1"))
    assert '#PBS -o "/s/we ird dir/a1/job.out"' in lines
    with pytest.raises(ValueError, match="double quote"):
        quoted_path('/s/say "hi"/a1')
    torque = Torque()
    job = job_request("ms-p-a1", "/s/a1")
    argv = torque.submit_argv(job, torque.header(job))
    assert argv[argv.index("-o") + 1] == "/s/a1/job.out"  # unquoted in argv
    # The Torque-style wrappers over Slurm run sbatch through a shell with the paths unquoted.
    with pytest.raises(ValueError, match="Torque-style qsub commands pass paths to sbatch through a shell"):
        torque.header(job_request("ms-p-a1", "/s/we ird dir/a1"))


def test_openpbs_exit_codes_in_words() -> None:
    assert describe_exit(271) == "killed by signal 15 (SIGTERM, exit status 271)"
    assert describe_exit(137) == "killed by signal 9 (SIGKILL, exit status 137)"
    assert "JOB_EXEC_KILL_WALLTIME" in describe_exit(-29)
    assert describe_exit(None) == "no exit status"
    assert describe_exit(3) == "exit status 3"


def test_qsub_output() -> None:
    assert OpenPBS().parse_submitted(output("1234.pbs-server\n")) == "1234.pbs-server"
    assert OpenPBS().parse_submitted(output("qsub: Unknown queue\n")) is None
    ids = [Torque().parse_submitted(output(line)) for line in read("torque-wrappers/qsub.txt").splitlines()]
    assert ids == ["3", "4", "5", "6"]
    assert Torque().parse_submitted(output("There was an error running the Slurm sbatch command.\n")) is None


# ----------------------------------------------------------------------------------------------- Torque
def test_torque_qstat_queued_running_completed() -> None:
    jobs = parse_torque_qstat(read("torque-wrappers/qstat-f-queued-running-completed.txt"))
    states = {job_id: job.state for job_id, job in jobs.items()}
    assert states == {"1": JobState.FINISHED, "2": JobState.FINISHED, "3": JobState.RUNNING,
                      "4": JobState.RUNNING, "5": JobState.QUEUED, "6": JobState.QUEUED}
    assert jobs["3"].name == "ms-zeta-s1"
    assert jobs["1"].end is JobEnd.UNKNOWN  # the wrappers give no exit status


def test_torque_qstat_after_qdel_and_real_torque_exit_status() -> None:
    jobs = parse_torque_qstat(read("torque-wrappers/qstat-f-after-qdel.txt"))
    assert jobs["4"].state is JobState.FINISHED
    assert jobs["4"].name == "ms-zeta-s2"
    # Real Torque adds exit_status to completed jobs and wraps long values onto indented lines.
    text = ("Job Id: 77.head.example.org\n    Job_Name = ms-t-a1\n    job_state = C\n"
            "    Variable_List = PBS_O_HOME=/root,PBS_O_LANG=C,\n\tPBS_O_WORKDIR=/tmp\n"
            "    exit_status = 271\n")
    job = parse_torque_qstat(text)["77"]
    assert (job.name, job.state, job.end) == ("ms-t-a1", JobState.FINISHED, JobEnd.KILLED)


def test_torque_nodes_skip_down_ones() -> None:
    capacity = Torque().parse_nodes(output(read("torque-wrappers/pbsnodes-a-one-down.txt")))
    assert capacity is not None
    assert (capacity.total_cores, capacity.max_cores_per_node, capacity.usable_nodes) == (4, 4, 1)


def test_torque_directives_and_one_resource_list_on_the_command_line() -> None:
    dialect = Torque(queue="batch")
    job = dataclasses.replace(job_request("ms-z-a1", cores=2, memory_mb=200), limit_s=70.0)
    lines = dialect.header(job)
    assert lines == ['#PBS -N ms-z-a1', '#PBS -o "/s/a1/job.out"', '#PBS -e "/s/a1/job.err"', '#PBS -r n',
                     '#PBS -l nodes=1:ppn=2,mem=200mb,walltime=00:01:10', '#PBS -q batch']
    assert dialect.submit_argv(job, lines) == [
        "qsub", "-N", "ms-z-a1", "-o", "/s/a1/job.out", "-e", "/s/a1/job.err", "-r", "n",
        "-l", "nodes=1:ppn=2,mem=200mb,walltime=00:01:10", "-q", "batch", "/s/a1/job.sh"]


def test_helpers() -> None:
    assert sequence_number("123.server.example.org") == "123"
    assert sequence_number("9") == "9"
    assert hhmmss(3723.2) == "01:02:04"
    assert server_unreachable("slurm_load_jobs error: Unable to contact slurm controller (connect failure)")
    assert server_unreachable("Connection refused\nqstat: cannot connect to server pbs (errno=15010)")
    assert not server_unreachable("qstat: Unknown Job Id 12.pbs")


def test_openpbs_queue_for_the_forecast_keeps_running_and_queued_jobs() -> None:
    now = datetime(2026, 11, 30, 16, 27)
    assert parse_queue((LIVE / "qstat-queued.json").read_text(), now) == [
        QueuedJob(job_id="1", user="alice", running=False, cores=8, remaining_s=None)]
    assert [j.running for j in parse_queue((LIVE / "qstat-running.json").read_text(), now)] == [True]
    assert parse_queue((LIVE / "qstat-held-user.json").read_text(), now) == []  # held: will not start
    assert parse_queue((LIVE / "qstat-walltime.json").read_text(), now) == []  # finished
    assert parse_queue("not json", now) == []


def test_pbs_queue_fields_limits_and_estimated_starts() -> None:
    now = datetime(2026, 11, 30, 16, 0)
    attrs = {"job_state": "R", "Job_Owner": "bob@login", "Resource_List.ncpus": "4",
             "Resource_List.walltime": "01:00:00", "resources_used.walltime": "00:10:00"}
    running = queued_job("7.server", attrs, now)
    assert running == QueuedJob(job_id="7", user="bob", running=True, cores=4, remaining_s=3000.0)
    queued = queued_job("8", {"job_state": "Q", "Job_Owner": "bob@login", "Resource_List.nodes": "2:ppn=8",
                              "estimated.start_time": "Mon Nov 30 16:05:00 2026"}, now)
    assert queued == QueuedJob(job_id="8", user="bob", running=False, cores=16, remaining_s=None,
                               expected_start_s=300.0)
    assert queued_job("9", {"job_state": "H"}, now) is None


@pytest.mark.parametrize("dialect", [Torque(), OpenPBS()], ids=["torque", "openpbs"])
def test_pbs_deletes_by_name_through_the_job_listing(dialect: Torque | OpenPBS) -> None:
    """qdel takes ids only: jobs to delete by name are looked up in the user's listing, and only those
    still queued or running are deleted, with the ids, in one qdel."""
    listing = read("torque-wrappers/qstat-f-queued-running-completed.txt")
    calls: list[list[str]] = []

    def run(argv: list[str]) -> CommandOutput:
        calls.append(argv)
        return output(listing if argv[0] == "qstat" else "")

    if isinstance(dialect, OpenPBS):  # the same jobs as the live server lists them
        listing = (LIVE / "qstat-queued.json").read_text()
        (queued,) = parse_qstat(listing).values()
        names, expected = [queued.name, "ms-zeta-gone"], [queued.job_id]
    else:
        names, expected = ["ms-zeta-x1", "ms-zeta-s3", "ms-zeta-gone"], ["5"]  # x1: completed
    assert Deletions(ids=["9"], names=names).run(dialect, run, "ms") == []
    assert calls == [dialect.status_argv("ms", []), ["qdel", "9", *expected]]


def test_pbs_deletion_by_name_waits_for_a_listing_that_answers() -> None:
    calls: list[list[str]] = []

    def run(argv: list[str]) -> CommandOutput:
        calls.append(argv)
        return output(stderr="Connection refused", returncode=1)

    assert Deletions(names=["ms-zeta-s3"]).run(Torque(), run, "ms") == ["ms-zeta-s3"]
    assert calls == [["qstat", "-f"]]  # no qdel without ids
    calls.clear()
    assert Deletions(ids=["7"], names=["ms-zeta-s3"]).run(Torque(), run, "ms") == ["ms-zeta-s3"]
    assert calls == [["qstat", "-f"], ["qdel", "7"]]  # the ids all the same


def test_torque_wrapper_queue_reads_every_job_and_drops_slurms_unlimited() -> None:
    jobs = Torque().parse_queue(output(read("torque-wrappers/qstat-f-queued-running-completed.txt")))
    assert jobs is not None
    assert [(j.job_id, j.running, j.cores, j.remaining_s) for j in jobs] == [
        ("3", True, 4, 300.0), ("4", True, 4, 300.0), ("5", False, 4, 300.0), ("6", False, 1, None)]
    assert Torque().parse_queue(output("", returncode=1)) is None
