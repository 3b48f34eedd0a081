"""Pilot mode's pure parts: the plan a block's nodes read, their addresses, `ray start` argv, the config."""

from __future__ import annotations

import dataclasses
import json
import pickle
import socket
import stat
import threading
import time
from pathlib import Path

import pytest

import metasched as ms
from metasched.attempt_dir import AttemptDir
from metasched.checkpoint.board import Board, BoardLink, Steering
from metasched.data.objects import DataRef
from metasched.data.stores import FileStore
from metasched.outcomes import Failed, LossReason, Lost
from metasched.placement import infeasibility
from metasched.records import (
    AttemptId,
    Capability,
    CheckpointKind,
    CommandSpec,
    Resources,
    SiteLoad,
    SiteName,
    TaskId,
    TaskKind,
    TaskSpec,
)
from metasched.sites.base import AttemptUpdate, Submission
from metasched.worker.pilot import PilotPlan, head_answers, node_ip, ray_start_argv, read_plan, write_plan
from site_agents.batch.block_scripts import ScriptRun, run_script
from site_agents.batch.blocks import MIN_SLICE_S, Block, judge, nodes_up, pilot_problem, time_needed
from site_agents.batch.launchers import CommandLauncher, CriuLauncher

PLAN = PilotPlan(head="127.0.0.2:6379", site="kappa", block="pilot-abc-1", cores=4, gpus=1, memory_mb=2000,
                 leave_after_s=570.0)


def test_plan_round_trips_and_the_token_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    write_plan(tmp_path, PLAN, "s3cret-token")
    assert read_plan(tmp_path) == PLAN
    token = tmp_path / "ray_token"
    assert token.read_text() == "s3cret-token"
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
    assert "s3cret" not in (tmp_path / "pilot.json").read_text()


def test_nodes_behind_a_loopback_head_get_distinct_loopback_addresses() -> None:
    first = node_ip(PLAN.head, PLAN.block, "kappa-c1/100")
    second = node_ip(PLAN.head, PLAN.block, "kappa-c2/100")
    assert first is not None
    assert second is not None
    assert first != second
    assert first.startswith("127.")
    assert first != "127.0.0.1"
    assert node_ip(PLAN.head, PLAN.block, "kappa-c1/100") == first, "derived, not random"
    assert node_ip("login1.cluster.example:6379", PLAN.block, "n1") is None, "Ray picks the address itself"


def test_ray_start_joins_the_head_with_the_site_and_block_resources(tmp_path: Path) -> None:
    argv = ray_start_argv(PLAN, "127.9.9.9", tmp_path)
    assert argv[1:4] == ["-m", "ray.scripts.scripts", "start"]
    options = dict(arg.removeprefix("--").split("=", 1) for arg in argv[4:] if "=" in arg)
    assert options["address"] == PLAN.head
    assert json.loads(options["resources"]) == {"site:kappa": 4.0, "block:pilot-abc-1": 4.0}
    assert (options["num-cpus"], options["num-gpus"]) == ("4", "1")
    assert options["memory"] == str(2000 * 2**20)
    assert options["node-ip-address"] == "127.9.9.9"
    assert options["temp-dir"] == str(tmp_path)
    ports = [int(options[o]) for o in ("node-manager-port", "object-manager-port", "metrics-export-port",
                                        "dashboard-agent-listen-port")]
    assert len(set(ports)) == len(ports), "nodes sharing a network must not take Ray's fixed ports"
    assert "--block" in argv
    assert not any("token" in arg for arg in argv), "the token travels in a file, never in argv"


def test_pilot_options_are_checked_with_the_field_named(tmp_path: Path) -> None:
    with pytest.raises(ms.ConfigurationError, match="min_blocks <= max_blocks"):
        ms.SlurmSite("kappa", slurm_conf="/etc/slurm.conf", shared_dir=str(tmp_path), mode="pilot",
                     min_blocks=3, max_blocks=2)
    with pytest.raises(ms.ConfigurationError, match="block_walltime"):
        ms.SlurmSite("kappa", slurm_conf="/etc/slurm.conf", shared_dir=str(tmp_path), mode="pilot",
                     block_walltime=0)
    with pytest.raises(ms.ConfigurationError, match="block_walltime must be at least 120 s in pilot mode"):
        ms.SlurmSite("kappa", slurm_conf="/etc/slurm.conf", shared_dir=str(tmp_path), mode="pilot",
                     block_walltime=60)
    batch = ms.SlurmSite("kappa", slurm_conf="/etc/slurm.conf", shared_dir=str(tmp_path), block_walltime=60)
    assert batch.mode == "batch", "block fields are not checked in batch mode"


def test_a_task_longer_than_a_block_is_infeasible_there() -> None:
    load = SiteLoad(site=SiteName("kappa"), total_cores=8, max_cores_per_task=4, max_memory_mb=None, gpus=0,
                    nodes=1, inflight=0, max_inflight=16, max_walltime_s=570.0)
    spec = TaskSpec(task_id=TaskId("t1"), name="long", kind=TaskKind.FUNCTION,
                    resources=Resources(walltime_s=600.0))
    assert infeasibility(spec, load) == "needs walltime=600 s, blocks there leave at most 570 s"
    short = TaskSpec(task_id=TaskId("t2"), name="short", kind=TaskKind.FUNCTION,
                     resources=Resources(walltime_s=60.0))
    assert infeasibility(short, load) is None
    cooperative = dataclasses.replace(spec, checkpoint=CheckpointKind.COOPERATIVE)
    assert infeasibility(cooperative, load) == "needs checkpoint=cooperative, which this site does not offer"
    offering = dataclasses.replace(load, capabilities=frozenset({Capability.CHECKPOINT_COOPERATIVE}))
    assert infeasibility(cooperative, offering) is None, "it saves before a block ends, goes on in the next"
    criu = dataclasses.replace(spec, kind=TaskKind.COMMAND, checkpoint=CheckpointKind.CRIU)
    assert infeasibility(criu, offering) == "needs checkpoint=criu, which this site does not offer"
    with_criu = dataclasses.replace(load, capabilities=frozenset({Capability.CHECKPOINT_CRIU}))
    assert infeasibility(criu, with_criu) is None, "it is dumped before a block ends, restored in the next"


def test_a_block_is_handed_a_task_with_its_walltime_left_or_a_cooperative_one_with_a_slice_of_it() -> None:
    spec = TaskSpec(task_id=TaskId("t1"), name="t", kind=TaskKind.FUNCTION,
                    resources=Resources(walltime_s=600.0))
    assert time_needed(spec, lead_s=60.0) == 600.0
    assert time_needed(dataclasses.replace(spec, resources=Resources()), lead_s=60.0) == 0.0, "unknown: any"
    cooperative = dataclasses.replace(spec, checkpoint=CheckpointKind.COOPERATIVE)
    assert time_needed(cooperative, lead_s=60.0) == 60.0 + MIN_SLICE_S
    unknown = dataclasses.replace(cooperative, resources=Resources())
    assert time_needed(unknown, lead_s=60.0) == 60.0 + MIN_SLICE_S
    short = dataclasses.replace(cooperative, resources=Resources(walltime_s=20.0))
    assert time_needed(short, lead_s=60.0) == 20.0
    criu = dataclasses.replace(spec, kind=TaskKind.COMMAND, checkpoint=CheckpointKind.CRIU)
    assert time_needed(criu, lead_s=60.0) == 60.0 + MIN_SLICE_S


def test_a_blocks_nodes_are_counted_from_rays_node_table() -> None:
    nodes = [{"Alive": True, "Resources": {"CPU": 4.0, "block:b1": 4.0, "site:kappa": 4.0}},
             {"Alive": True, "Resources": {"CPU": 4.0, "block:b1": 4.0}},
             {"Alive": False, "Resources": {"block:b2": 4.0}},
             {"Alive": True, "Resources": {"block:b3": 2.0}},
             {"Alive": True, "Resources": {"CPU": 2.0, "site:local": 2.0}}]
    assert nodes_up(nodes) == {"b1": 2, "b3": 1}


def test_a_criu_attempt_in_a_block_checkpoints_by_its_end_and_hears_requests_in_its_directory(
        tmp_path: Path) -> None:
    spec = TaskSpec(task_id=TaskId("t1"), name="sim", kind=TaskKind.COMMAND,
                    command=CommandSpec(argv=("sleep", "100")), resources=Resources(walltime_s=600.0),
                    checkpoint=CheckpointKind.CRIU)
    batch = CriuLauncher(python="python3", pythonpath="", checkpoint_dir=str(tmp_path / "work"), criu="criu",
                         signal_lead_s=60, site="kappa")
    attempt = AttemptDir(tmp_path / "a1").create()
    sub = Submission(attempt_id=AttemptId("a1"), spec=spec)
    batch.write(sub, attempt)
    assert attempt.read_criu_task()["leave_by"] is None, "a batch job's scheduler warns it"
    dataclasses.replace(batch, leave_by=1234.5).write(sub, attempt)
    task = attempt.read_criu_task()
    assert (task["leave_by"], task["time_limit_s"], task["lead_s"]) == (1234.5, 600.0, 60)
    assert attempt.take_restart_request() is None
    attempt.request_restart_point()
    assert attempt.take_restart_request() == "restart point"
    assert attempt.take_restart_request() is None, "a request is taken once"
    attempt.request_restart_point(stop=True)
    assert attempt.take_restart_request() == "stop"


def test_a_cooperative_attempt_stops_at_a_block_deadline_or_a_lead_before_its_walltime() -> None:
    now = time.time()
    link = BoardLink(Steering(board="b", stop_at=now + 100.0, lead_s=10.0), "a1", walltime_s=30.0)
    assert link.stop_at == pytest.approx(now + 20.0, abs=1.0)
    link = BoardLink(Steering(board="b", stop_at=now + 100.0, lead_s=10.0), "a1", walltime_s=None)
    assert link.stop_at == now + 100.0
    link = BoardLink(Steering(board="b", lead_s=10.0), "a1", walltime_s=4.0)
    assert link.stop_at == pytest.approx(now + 2.0, abs=1.0), "a lead longer than the walltime: half of it"
    assert BoardLink(Steering(board="b", lead_s=10.0), "a1", walltime_s=None).stop_at is None


def test_the_board_hands_each_save_once_and_forgets_the_attempts_that_ended() -> None:
    board = Board()
    ref = DataRef(object_id="t.1.ckpt1", store=FileStore("/tmp/s"), key="k", size=3, digest="d")
    board.stop(["a2"])
    assert board.saved("a1", ref) is False
    assert board.saved("a2", ref) is True
    assert board.take([]) == {"a1": ref, "a2": ref}
    assert board.take(["a2"]) == {}
    assert board.saved("a2", ref) is False, "a stop is forgotten once its attempt ended"


def test_pilots_refuse_a_loopback_head_and_commands_run_as_another_user() -> None:
    assert "listens on 127.0.0.1 only" in pilot_problem("kappa", "127.0.0.1:6379", "")
    assert "runs as" not in pilot_problem("kappa", "127.0.0.2:6379", "")
    assert "commands run as 'svc'" in pilot_problem("kappa", "10.1.2.3:6379", "svc")
    assert pilot_problem("kappa", "127.0.0.2:6379", "") == ""


def one_node(nodes: int) -> tuple[str, ...]:
    return ()


def test_a_block_runs_batch_modes_script_and_reads_the_outcome_where_it_ran(tmp_path: Path) -> None:
    """The script a batch job would run, started by ``run_script`` (a Ray task's body in a block)."""
    attempt = AttemptDir(tmp_path / "a1").create()
    spec = TaskSpec(task_id=TaskId("t1"), name="echo", kind=TaskKind.COMMAND,
                    command=CommandSpec(argv=("sh", "-c", "echo out; echo said >&2; exit 3")),
                    resources=Resources())
    launcher = CommandLauncher(parallel_prefix=one_node)
    attempt.write_script(launcher.write(Submission(attempt_id=AttemptId("a1"), spec=spec), attempt))
    run = ScriptRun(attempt_dir=str(attempt.path), spec=spec, launcher=launcher,
                    store=FileStore(str(tmp_path / "store")), data=None)
    outcome = pickle.loads(run_script(pickle.dumps(run)))
    assert isinstance(outcome, Failed)
    assert "exited with status 3" in outcome.failure.message
    assert (outcome.failure.stdout, outcome.failure.stderr) == ("out\n", "said\n")
    broken = AttemptDir(tmp_path / "a2").create()
    broken.write_script("#!/bin/bash\necho broken >&2\nexit 7\n")  # ends without a record
    outcome = pickle.loads(run_script(pickle.dumps(dataclasses.replace(run, attempt_dir=str(broken.path)))))
    assert isinstance(outcome, Failed)
    assert "ended (exit 7) in a pilot block without a record: broken" in outcome.failure.message


def test_a_pilot_waits_for_a_head_that_is_still_starting_and_gives_up_on_one_that_never_does() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    head = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    opened = threading.Timer(0.5, lambda: (head.bind(("127.0.0.1", port)), head.listen()))
    began = time.monotonic()
    opened.start()
    try:
        assert head_answers(f"127.0.0.1:{port}", 10.0)
        assert time.monotonic() - began >= 0.4, "it answered before the head listened"
    finally:
        opened.join()
        head.close()
    began = time.monotonic()
    assert not head_answers(f"127.0.0.1:{port}", 0.5)
    assert 0.5 <= time.monotonic() - began < 5.0


def test_a_dead_worker_is_the_blocks_fault_if_its_node_went_else_the_tasks_once_the_grace_is_over() -> None:
    site = ms.SlurmSite("kappa", slurm_conf="/etc/slurm.conf", shared_dir="/tmp", mode="pilot",
                        nodes_per_block=2)
    whole = Block(block_id="b1", submitted_at=0.0, nodes_up=2)
    short = Block(block_id="b2", submitted_at=0.0, nodes_up=1)

    def died(attempt: str) -> AttemptUpdate:
        return AttemptUpdate(attempt_id=AttemptId(attempt), outcome=Lost(reason=LossReason.WORKER_DIED,
                                                                         detail="worker died"))

    suspects = [(10.0, "b1", died("a1")), (10.0, "b2", died("a2")), (10.0, "gone", died("a3")),
                (5.0, "b1", died("a4"))]
    judged, waiting = judge(suspects, {"b1": whole, "b2": short}, site, now=6.0)
    verdicts = {u.attempt_id: u.outcome for u in judged}
    assert set(verdicts) == {"a2", "a3", "a4"}
    for blamed in ("a2", "a3"):  # the block lost a node, or ended: no retry charged
        outcome = verdicts[AttemptId(blamed)]
        assert isinstance(outcome, Lost)
        assert outcome.reason is LossReason.BLOCK_ENDED
        assert not outcome.charge_retry
        assert outcome.detail == "site kappa: worker died"
    task_fault = verdicts[AttemptId("a4")]
    assert isinstance(task_fault, Lost)
    assert task_fault.reason is LossReason.WORKER_DIED
    assert [(d, b, u.attempt_id) for d, b, u in waiting] == [(10.0, "b1", "a1")]
