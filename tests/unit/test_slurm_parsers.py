"""Slurm dialect: parsers and builders, on output recorded from real Slurm 22.05 and 24.11 (tests/data)."""

from __future__ import annotations

import dataclasses
import logging
from datetime import datetime
from pathlib import Path

import pytest

from metasched.attempt_dir import AttemptDir
from metasched.records import CheckpointKind, CommandSpec, Resources, TaskId, TaskKind, TaskSpec
from site_agents.batch.dialect import JobEnd, JobRequest, JobState, seconds_of
from site_agents.batch.launchers import shape_limit_s, time_limit_s, warning_lead_s
from site_agents.slurm import parsers
from site_agents.slurm.dialect import SlurmDialect
from tests.unit.dialect_inputs import output

DATA = Path(__file__).parent.parent / "data" / "slurm-22.05"




def test_squeue_recorded_output() -> None:
    jobs = parsers.parse_squeue((DATA / "squeue-states-all.txt").read_text())
    assert (jobs["7"].state, jobs["7"].end) == (JobState.FINISHED, JobEnd.FAILED)
    assert jobs["7"].reason == "NonZeroExitCode"
    assert jobs["9"].end is JobEnd.CANCELLED
    assert jobs["1"].end is JobEnd.COMPLETED
    assert len(jobs) == 9


def test_unknown_and_odd_states_never_raise(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        jobs = parsers.parse_squeue(
            "1|SOMETHING_NEW|None\ngarbage line\n2|CANCELLED by 0|None\n3|PENDING|Priority")
    assert jobs["1"].state is JobState.UNKNOWN
    assert jobs["2"].end is JobEnd.CANCELLED
    assert jobs["3"].state is JobState.QUEUED
    assert "SOMETHING_NEW" in caplog.text
    assert "garbage line" in caplog.text


def test_squeue_after_controller_state_loss() -> None:
    """Names tell a reused job id apart; jobs waiting on drained nodes are stalled, others are not."""
    jobs = parsers.parse_squeue((DATA / "squeue-after-state-loss.txt").read_text())
    assert jobs["3"].name == "ms-alpha-05770d0798ac4f35.1"
    assert jobs["1"].name == "metasched-ready"
    stalled = sorted(job_id for job_id, job in jobs.items() if job.state is JobState.STALLED)
    assert stalled == ["19", "20", "21", "22"]
    assert jobs["20"].reason.startswith("ReqNodeNotAvail, UnavailableNodes:alpha-c[1-2]")
    assert parsers.parse_squeue("5|PENDING|Priority|a|b")["5"].name == "a|b"
    assert parsers.parse_squeue("5|PENDING|Resources|x")["5"].state is JobState.QUEUED
    assert parsers.parse_squeue("5|PENDING|launch failed requeued held|x")["5"].state is JobState.STALLED
    assert parsers.parse_squeue("5|RUNNING|ReqNodeNotAvail|x")["5"].state is JobState.RUNNING
    assert parsers.parse_squeue("5|PENDING|PartitionConfig|x")["5"].state is JobState.HELD


def test_sinfo_recorded_output() -> None:
    nodes = parsers.parse_sinfo_nodes((DATA / "sinfo-nodes.txt").read_text())
    assert [(n.name, n.cpus, n.memory_mb) for n in nodes] == [("alpha-c1", 8, 8000), ("alpha-c2", 8, 8000)]
    capacity = parsers.capacity(nodes)
    assert (capacity.total_cores, capacity.usable_nodes, capacity.max_memory_mb) == (16, 2, 8000)
    drained = parsers.parse_sinfo_nodes((DATA / "sinfo-drained.txt").read_text())
    assert [(n.name, n.usable) for n in drained] == [("alpha-c1", False), ("alpha-c2", False)]
    assert parsers.capacity(drained).usable_nodes == 0
    odd = parsers.parse_sinfo_nodes("n1|8|8000|down*\nn2|8|8000|idle~\nn3|8|8000|mixed\nn4|8|8000|draining")
    assert [n.usable for n in odd] == [False, True, True, False]


def test_nodes_without_real_memory_do_not_track_memory() -> None:
    """Slurm reports 1 MB for a node without RealMemory: the site does not track memory at all."""
    untracked = parsers.capacity(parsers.parse_sinfo_nodes("c1|4|1|idle\nc2|4|1|idle"))
    assert untracked.max_memory_mb is None
    assert untracked.memory_untracked
    tracked = parsers.capacity(parsers.parse_sinfo_nodes("c1|4|2000|idle"))
    assert (tracked.max_memory_mb, tracked.memory_untracked) == (2000, False)
    mixed = parsers.capacity(parsers.parse_sinfo_nodes("c1|4|2000|idle\nc2|4|1|idle"))
    assert (mixed.max_memory_mb, mixed.memory_untracked) == (None, False)  # sbatch picks nodes with enough


def test_sbatch_parsable() -> None:
    assert parsers.parse_sbatch_parsable("123\n") == "123"
    assert parsers.parse_sbatch_parsable("456;alpha\n") == "456"
    assert parsers.parse_sbatch_parsable("sbatch: error: Batch job submission failed") is None


def test_controller_down_is_recognised() -> None:
    stderr = (DATA / "squeue-controller-down.txt").read_text()
    dialect = SlurmDialect(site="alpha")
    assert dialect.unreachable(output(stderr=stderr, returncode=1))
    assert dialect.parse_status(output(stderr=stderr, returncode=1)) is None


def spec(**res: int | float) -> TaskSpec:
    return TaskSpec(task_id=TaskId("t1"), name="sim", kind=TaskKind.COMMAND, resources=Resources(**res),
                    command=CommandSpec(argv=("mpi_app", "--in", "x y")))


def request(task: TaskSpec, directory: str = "/s/a") -> JobRequest:
    walltime = task.resources.walltime_s
    return JobRequest(spec=task, name="ms-alpha-t1.1", attempt=AttemptDir(directory),
                      limit_s=time_limit_s(task),
                      warning_lead_s=warning_lead_s(walltime, 60) if walltime is not None else None)


def test_sbatch_argv_maps_every_resource() -> None:
    dialect = SlurmDialect(site="alpha", partition="debug", account="proj", qos="high")
    job = request(spec(cores=4, memory_mb=2048, gpus=1, nodes=2, walltime_s=90))
    argv = dialect.submit_argv(job, dialect.header(job))
    assert argv[0] == "sbatch"
    for option in ("--parsable", "--job-name=ms-alpha-t1.1", "--chdir=/s/a", "--cpus-per-task=4", "--nodes=2",
                   "--ntasks-per-node=1", "--mem=2048M", "--gres=gpu:1", "--time=3", "--signal=B:USR1@45",
                   "--partition=debug", "--account=proj", "--qos=high", "--no-requeue",
                   "--output=/s/a/job.out", "--error=/s/a/job.err"):
        assert option in argv
    assert argv[-1] == "/s/a/job.sh"
    assert dialect.header(job) == []  # options on the command line: paths need no quoting
    spaced = request(spec(), "/shared/we ird'dir/a")
    assert "--output=/shared/we ird'dir/a/job.out" in dialect.submit_argv(spaced, [])


def test_test_only_asks_for_the_shape_as_a_job_of_it_would_and_queues_nothing() -> None:
    dialect = SlurmDialect(site="alpha", partition="debug", account="proj", qos="high")
    shape = Resources(cores=4, memory_mb=2048, gpus=1, nodes=2, walltime_s=90)
    argv = dialect.start_argv(shape, limit_s=shape_limit_s(shape), memory=True)
    submitted = dialect.submit_argv(request(spec(**dataclasses.asdict(shape))), [])
    assert argv[:2] == ["sbatch", "--test-only"]
    assert argv[-1] == "--wrap=true"
    for option in ("--cpus-per-task=4", "--nodes=2", "--ntasks-per-node=1", "--mem=2048M", "--gres=gpu:1",
                   "--time=3", "--partition=debug", "--account=proj", "--qos=high"):
        assert option in argv, option
        assert option in submitted, option
    assert "--mem=2048M" not in dialect.start_argv(shape, limit_s=None, memory=False)


def test_sbatch_test_only_recorded_output() -> None:
    """The controller's expected start, seconds from the moment asked (the recordings' 05:01:17)."""
    asked = datetime(2026, 12, 2, 5, 1, 17)
    assert parsers.parse_test_only((DATA / "sbatch-test-only.txt").read_text(), asked) == 177.0
    assert parsers.parse_test_only((DATA / "sbatch-test-only-now.txt").read_text(), asked) == 0.0
    assert parsers.parse_test_only((DATA / "sbatch-test-only-now.txt").read_text(),
                                   datetime(2026, 12, 2, 5, 1, 20)) == 0.0  # already due: now
    impossible = (DATA / "sbatch-test-only-impossible.txt").read_text()
    assert parsers.parse_test_only(impossible, asked) is None
    assert SlurmDialect(site="alpha").parse_start(output(stderr=impossible, returncode=1)) is None


def test_no_memory_request_where_the_nodes_report_no_memory() -> None:
    """sbatch refuses any --mem on nodes without RealMemory ("Memory specification can not be satisfied")."""
    dialect = SlurmDialect(site="iota")
    job = request(spec(cores=2, memory_mb=2048))
    untracked = JobRequest(spec=job.spec, name=job.name, attempt=job.attempt, limit_s=job.limit_s,
                           warning_lead_s=None, nodes_report_memory=False)
    assert not [a for a in dialect.submit_argv(untracked, []) if a.startswith("--mem")]
    assert "--cpus-per-task=2" in dialect.submit_argv(untracked, [])
    assert "--mem=2048M" in dialect.submit_argv(job, [])


def test_checkpointable_tasks_get_their_walltime_per_attempt_and_a_warning() -> None:
    criu = TaskSpec(task_id=TaskId("t9"), name="sim", kind=TaskKind.COMMAND,
                    resources=Resources(walltime_s=60),
                    checkpoint=CheckpointKind.CRIU, command=CommandSpec(argv=("sim",)))
    dialect = SlurmDialect(site="alpha")
    argv = dialect.submit_argv(request(criu), [])
    assert "--time=1" in argv  # exactly the walltime: the attempt checkpoints before the limit
    assert "--signal=B:USR1@30" in argv  # the site's lead, at most half the walltime
    plain = dialect.submit_argv(request(spec(walltime_s=60)), [])
    assert "--time=2" in plain  # a plain task: the worker's own limit stops it first
    assert dialect.signal_argv(["12", "13"], "USR2") == ["scancel", "--batch", "--signal=USR2", "12", "13"]
    assert dialect.parallel_prefix(2) == ("srun", "--nodes=2", "--ntasks=2")


def test_status_lists_the_user_the_site_says_we_are() -> None:
    argv = SlurmDialect(site="alpha").status_argv("root", ["1"])
    assert "--user=root" in argv


def test_sacct_of_purged_jobs_on_slurm_24_11() -> None:
    """Recorded on the test site eta (Slurm 24.11.5 + slurmdbd): tests/data/slurm-24.11/README.md."""
    text = (DATA.parent / "slurm-24.11" / "sacct-finished.txt").read_text()
    jobs = parsers.parse_sacct(text)
    assert {job_id: (j.end, j.name) for job_id, j in jobs.items()} == {
        "2": (JobEnd.COMPLETED, "ms-eta-ok"), "3": (JobEnd.FAILED, "ms-eta-fail"),
        "4": (JobEnd.CANCELLED, "ms-eta-cancel"), "5": (JobEnd.TIMEOUT, "ms-eta-timeout")}
    assert jobs["3"].reason == "exit code 3:0"
    assert jobs["4"].native_state == "CANCELLED by 0"
    dialect = SlurmDialect(site="eta", accounting=True)
    assert dialect.accounting_argvs(["2", "3"])[0][-2] == "--jobs=2,3"
    assert SlurmDialect(site="alpha", accounting=False).accounting_argvs(["2"]) == []


def test_accounting_detected_from_scontrol_show_config() -> None:
    text = (DATA.parent / "slurm-24.11" / "scontrol-show-config-accounting.txt").read_text()
    assert parsers.has_slurmdbd_accounting(text)
    assert not parsers.has_slurmdbd_accounting("AccountingStorageType   = (null)\nJobCompType = "
                                               "jobcomp/filetxt\n")
    dialect = SlurmDialect(site="eta")
    dialect.prepare(lambda argv: output(stdout=text))
    assert dialect.accounting


def test_runner_passes_no_secrets_to_scheduler_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    from site_agents.runner import CommandRunner

    monkeypatch.setenv("RAY_AUTH_TOKEN", "s3cret")
    runner = CommandRunner(site="alpha", env={"SLURM_CONF": "/x/slurm.conf"})
    answer = runner.run(["env"])
    assert "SLURM_CONF=/x/slurm.conf" in answer.stdout
    assert "s3cret" not in answer.stdout
    assert runner.calls["env"] == 1


def test_durations_as_schedulers_print_them() -> None:
    assert seconds_of("1-02:03:04") == 93784.0
    assert seconds_of("2:00") == 120.0
    assert seconds_of("1:00:00") == 3600.0
    assert seconds_of("71582788:15:00") == 71582788 * 3600.0 + 900
    assert seconds_of("180") == 180.0
    assert seconds_of("UNLIMITED") is None
    assert seconds_of("INVALID") is None
