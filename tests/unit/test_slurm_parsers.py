"""Slurm parsers and command builders, on output recorded from real Slurm 22.05 (tests/data)."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import pytest

from metasched.records import CommandSpec, Image, Resources, TaskId, TaskKind, TaskSpec
from site_agents.runner import CommandOutput
from site_agents.slurm import apptainer, commands, parsers
from site_agents.slurm.agent import _unreachable
from site_agents.slurm.parsers import JobState

DATA = Path(__file__).parent.parent / "data" / "slurm-22.05"


def test_squeue_recorded_output() -> None:
    jobs = parsers.parse_squeue((DATA / "squeue-states-all.txt").read_text())
    assert jobs["7"].state is JobState.FAILED
    assert jobs["7"].reason == "NonZeroExitCode"
    assert jobs["9"].state is JobState.CANCELLED
    assert jobs["1"].state is JobState.COMPLETED
    assert len(jobs) == 9


def test_unknown_and_odd_states_never_raise(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        jobs = parsers.parse_squeue(
            "1|SOMETHING_NEW|None\ngarbage line\n2|CANCELLED by 0|None\n3|PENDING|Priority")
    assert jobs["1"].state is JobState.UNKNOWN
    assert jobs["2"].state is JobState.CANCELLED
    assert jobs["3"].state is JobState.QUEUED
    assert "SOMETHING_NEW" in caplog.text
    assert "garbage line" in caplog.text


def test_squeue_after_controller_state_loss() -> None:
    """Names tell a reused job id apart; jobs waiting on drained nodes are stalled, others are not."""
    jobs = parsers.parse_squeue((DATA / "squeue-after-state-loss.txt").read_text())
    assert jobs["3"].name == "ms-alpha-05770d0798ac4f35.1"
    assert jobs["1"].name == "metasched-ready"
    stalled = sorted(job_id for job_id, job in jobs.items() if job.stalled)
    assert stalled == ["19", "20", "21", "22"]
    assert jobs["20"].reason.startswith("ReqNodeNotAvail, UnavailableNodes:alpha-c[1-2]")
    assert parsers.parse_squeue("5|PENDING|Priority|a|b")["5"].name == "a|b"
    assert not parsers.parse_squeue("5|PENDING|Resources|x")["5"].stalled
    assert parsers.parse_squeue("5|PENDING|launch failed requeued held|x")["5"].stalled
    assert not parsers.parse_squeue("5|RUNNING|ReqNodeNotAvail|x")["5"].stalled


def test_sinfo_recorded_output() -> None:
    nodes = parsers.parse_sinfo_nodes((DATA / "sinfo-nodes.txt").read_text())
    assert [(n.name, n.cpus, n.memory_mb) for n in nodes] == [("alpha-c1", 8, 8000), ("alpha-c2", 8, 8000)]
    assert all(n.usable for n in nodes)
    drained = parsers.parse_sinfo_nodes((DATA / "sinfo-drained.txt").read_text())
    assert [(n.name, n.usable) for n in drained] == [("alpha-c1", False), ("alpha-c2", False)]
    odd = parsers.parse_sinfo_nodes("n1|8|8000|down*\nn2|8|8000|idle~\nn3|8|8000|mixed\nn4|8|8000|draining")
    assert [n.usable for n in odd] == [False, True, True, False]


def test_sbatch_parsable() -> None:
    assert parsers.parse_sbatch_parsable("123\n") == "123"
    assert parsers.parse_sbatch_parsable("456;alpha\n") == "456"
    with pytest.raises(ValueError, match="no job id"):
        parsers.parse_sbatch_parsable("sbatch: error: Batch job submission failed")


def test_controller_down_is_recognised() -> None:
    stderr = (DATA / "squeue-controller-down.txt").read_text()
    assert _unreachable(CommandOutput(argv=("squeue",), returncode=1, stdout="", stderr=stderr))


def spec(**res: int | float) -> TaskSpec:
    return TaskSpec(task_id=TaskId("t1"), name="sim", kind=TaskKind.COMMAND, resources=Resources(**res),
                    command=CommandSpec(argv=("mpi_app", "--in", "x y")))


def test_sbatch_argv_maps_every_resource() -> None:
    argv = commands.sbatch_argv(spec=spec(cores=4, memory_mb=2048, gpus=1, nodes=2, walltime_s=90),
                                name="ms-alpha-t1.1", attempt_dir="/s/a", script="/s/a/job.sh",
                                partition="debug", account="proj", qos="high", signal_lead_s=60)
    assert argv[0] == "sbatch"
    for option in ("--parsable", "--job-name=ms-alpha-t1.1", "--chdir=/s/a", "--cpus-per-task=4", "--nodes=2",
                   "--ntasks-per-node=1", "--mem=2048M", "--gres=gpu:1", "--time=3", "--signal=B:USR1@45",
                   "--partition=debug", "--account=proj", "--qos=high", "--no-requeue"):
        assert option in argv
    assert argv[-1] == "/s/a/job.sh"


def test_multi_node_commands_launch_with_srun() -> None:
    launched = commands.launch_spec(spec(nodes=2))
    assert launched.command is not None
    assert launched.command.argv == ("srun", "--nodes=2", "--ntasks=2", "mpi_app", "--in", "x y")
    assert commands.launch_spec(spec(nodes=1)).command == spec().command


def test_job_script_quotes_paths() -> None:
    script = commands.job_script(attempt_id="t1.1", spec=spec(), attempt_dir="/shared/a b",
                                 python="python3", pythonpath="/shared/lib")
    assert "cd '/shared/a b'" in script
    assert "exec python3 -m metasched.worker '/shared/a b'" in script


def test_runner_passes_no_secrets_to_scheduler_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    from site_agents.runner import CommandRunner

    monkeypatch.setenv("RAY_AUTH_TOKEN", "s3cret")
    runner = CommandRunner(site="alpha", env={"SLURM_CONF": "/x/slurm.conf"})
    out = runner.run(["env"])
    assert "SLURM_CONF=/x/slurm.conf" in out.stdout
    assert "s3cret" not in out.stdout
    assert runner.calls["env"] == 1


def test_command_job_script_runs_argv_without_python() -> None:
    s = TaskSpec(task_id=TaskId("t1"), name="sim", kind=TaskKind.COMMAND, resources=Resources(walltime_s=30),
                 command=CommandSpec(argv=("echo", "a b", "$HOME"), env=(("K", "v w"),), cwd="/data"))
    script = commands.command_job_script(attempt_id="t1.1", spec=s, attempt_dir="/shared/att")
    assert "timeout --kill-after=5s 30s env 'K=v w' echo 'a b' '$HOME' > /shared/att/cmd.out" in script
    assert "cd /data ||" in script
    assert "python" not in script
    assert parsers.parse_exit_status("3 100.5 102.0") == parsers.ExitStatus(returncode=3, elapsed_s=1.5)
    assert parsers.parse_exit_status("3 100.5") is None


def test_checkpointable_tasks_get_their_walltime_per_attempt_and_a_warning() -> None:
    criu = TaskSpec(task_id=TaskId("t9"), name="sim", kind=TaskKind.COMMAND,
                    resources=Resources(walltime_s=60), checkpoint="criu",
                    command=CommandSpec(argv=("sim", "--steps", "10"), env=(("A", "1"),)))
    argv = commands.sbatch_argv(spec=criu, name="n", attempt_dir="/s/a", script="/s/a/job.sh",
                                signal_lead_s=60)
    assert "--time=1" in argv  # exactly the walltime: the attempt checkpoints before the limit
    assert "--signal=B:USR1@30" in argv  # the site's lead, at most half the walltime
    plain = commands.sbatch_argv(spec=spec(walltime_s=60), name="n", attempt_dir="/s/a", script="/s/a/j.sh")
    assert "--time=2" in plain  # a plain task: the worker's own limit stops it first
    task = commands.criu_task(criu, workdir="/scratch/t9", criu="/opt/criu", restore=None, signal_lead_s=60)
    assert task == {"argv": ["sim", "--steps", "10"], "env": {"A": "1"}, "workdir": "/scratch/t9",
                    "criu": "/opt/criu", "restore": None, "checkpoint_on_warning": True, "time_limit_s": 60,
                    "lead_s": 30, "checkpoint_every_s": None}
    script = commands.criu_job_script(attempt_id="t9.1", spec=criu, attempt_dir="/s/a dir", python="python3",
                                      pythonpath="/s/lib")
    assert "exec python3 -m metasched.checkpoint.criu_job '/s/a dir'" in script
    assert commands.signal_argv(["12", "13"], "USR2") == ["scancel", "--batch", "--signal=USR2", "12", "13"]


def test_apptainer_job_scripts_and_check_messages() -> None:
    image = Image("app:1", sif="/shared/images/app 1.sif")
    task = TaskSpec(task_id=TaskId("t1"), name="sim", kind=TaskKind.COMMAND,
                    resources=Resources(walltime_s=60), command=CommandSpec(argv=("app", "--in", "x y")),
                    container=image)
    script = apptainer.command_job_script(attempt_id="t1.1", spec=task, attempt_dir="/shared/a/t1.1",
                                          apptainer=("apptainer", "exec"), bind=["/shared", "/stores/s"])
    assert ("timeout --kill-after=5s 60s apptainer exec --bind /shared,/shared/a/t1.1,/stores/s "
            "--pwd /shared/a/t1.1 '/shared/images/app 1.sif' app --in 'x y'") in script
    assert "[ -r '/shared/images/app 1.sif' ] ||" in script
    python = replace(task, kind=TaskKind.FUNCTION, command=None)
    script = apptainer.python_job_script(attempt_id="t1.1", spec=python, attempt_dir="/shared/a/t1.1",
                                         apptainer=("apptainer", "exec"), bind=["/shared"], pythonpath="/lib",
                                         want="3.11")
    assert 'if [ "$have" != 3.11 ]' in script
    assert "--env PYTHONPATH=/lib '/shared/images/app 1.sif'" in script
    missing = apptainer.check_problem("missing c1\n", task, "hpc", "3.11")
    assert missing.startswith("image 'app:1': /shared/images/app 1.sif is not readable on node c1 of site")
    other = apptainer.check_problem("python c1\n3.9\n", python, "hpc", "3.11")
    assert "has Python 3.9 (python3), but this campaign's driver runs Python 3.11" in other
    broken = apptainer.check_problem("python c1\nFATAL: no python3 here\n", python, "hpc", "3.11")
    assert broken == "image 'app:1' cannot run 'python3' for Python tasks on node c1: FATAL: no python3 here"


def test_sacct_of_purged_jobs_on_slurm_24_11() -> None:
    """Recorded on the test site eta (Slurm 24.11.5 + slurmdbd): tests/data/slurm-24.11/README.md."""
    text = (DATA.parent / "slurm-24.11" / "sacct-finished.txt").read_text()
    jobs = parsers.parse_sacct(text)
    assert {job_id: (j.state, j.name) for job_id, j in jobs.items()} == {
        "2": (JobState.COMPLETED, "ms-eta-ok"), "3": (JobState.FAILED, "ms-eta-fail"),
        "4": (JobState.CANCELLED, "ms-eta-cancel"), "5": (JobState.TIMEOUT, "ms-eta-timeout")}
    assert jobs["3"].reason == "exit code 3:0"
    assert jobs["4"].native_state == "CANCELLED by 0"


def test_accounting_detected_from_scontrol_show_config() -> None:
    text = (DATA.parent / "slurm-24.11" / "scontrol-show-config-accounting.txt").read_text()
    assert parsers.has_slurmdbd_accounting(text)
    assert not parsers.has_slurmdbd_accounting("AccountingStorageType   = (null)\nJobCompType = "
                                               "jobcomp/filetxt\n")
