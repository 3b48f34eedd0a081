"""Grid Engine dialect: parsers and builders on recorded real 8.1.9 output (tests/data/gridengine-8.1.9)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from site_agents.batch.dialect import JobEnd, JobRequest, JobState, with_header
from site_agents.batch.forecast import QueuedJob, forecast
from site_agents.gridengine import parsers
from site_agents.gridengine.dialect import GridEngine
from site_agents.runner import CommandOutput
from tests.unit.dialect_inputs import job_request

DATA = Path(__file__).resolve().parent.parent / "data" / "gridengine-8.1.9"


def read(name: str) -> str:
    return (DATA / name).read_text()


def test_qstat_xml_running_pending_and_error_jobs() -> None:
    jobs = parsers.parse_qstat_xml(read("qstat.xml"))
    assert {j: (s.state, s.native_state) for j, s in jobs.items()} == {
        "1": (JobState.RUNNING, "r"), "3": (JobState.RUNNING, "r"), "4": (JobState.RUNNING, "r"),
        "5": (JobState.QUEUED, "qw"), "6": (JobState.HELD, "Eqw")}
    assert jobs["1"].name == "ms-ge-run"
    later = parsers.parse_qstat_xml(read("qstat-later.xml"))
    assert sorted(later) == ["1", "5", "6"]
    assert parsers.parse_qstat_xml("not xml") == {}


@pytest.mark.parametrize(("letters", "state"), [
    ("qw", JobState.QUEUED), ("hqw", JobState.QUEUED), ("r", JobState.RUNNING), ("t", JobState.RUNNING),
    ("Rr", JobState.RUNNING), ("dr", JobState.UNKNOWN), ("Eqw", JobState.HELD), ("s", JobState.RUNNING),
    ("S", JobState.RUNNING)])
def test_state_letters(letters: str, state: JobState) -> None:
    assert parsers.job_state(letters) is state


def test_qstat_f_slots() -> None:
    assert parsers.parse_qstat_f_xml(read("qstat-f.xml")) == parsers.QueueCapacity(
        total_slots=4, max_slots_per_host=4, hosts=1)
    capacity = GridEngine().parse_nodes(CommandOutput(argv=("qstat",), returncode=0,
                                                      stdout=read("qstat-f.xml"),
                                                      stderr=""))
    assert capacity is not None
    assert (capacity.total_cores, capacity.usable_nodes, capacity.max_memory_mb) == (4, 1, None)


def test_a_disabled_queue_instance_offers_no_slots_and_is_named() -> None:
    closed = parsers.parse_qstat_f_xml(read("qstat-f-disabled.xml"))
    assert closed == parsers.QueueCapacity(total_slots=0, max_slots_per_host=0, hosts=0,
                                           closed=("all.q@ge-epsilon (disabled)",))
    capacity = GridEngine().parse_nodes(CommandOutput(argv=("qstat",), returncode=0,
                                                      stdout=read("qstat-f-disabled.xml"), stderr=""))
    assert capacity is not None
    assert (capacity.usable_nodes, capacity.nodes) == (0, 1)
    assert "all.q@ge-epsilon (disabled)" in capacity.detail


def test_qsub_terse_and_its_refusal() -> None:
    assert parsers.parse_qsub_terse(read("qsub.txt")) == "1"
    assert parsers.parse_qsub_terse("17.1-4:1\n") == "17"
    assert parsers.parse_qsub_terse(read("qsub-missing.txt")) is None


def test_qacct_records() -> None:
    failed = parsers.parse_qacct(read("qacct-2.txt"))
    assert failed == parsers.Accounting(failed=0, failed_reason="", exit_status=3, job_id="2",
                                        name="ms-ge-fail")
    assert parsers.accounted_status(failed).end is JobEnd.FAILED
    hrt = parsers.parse_qacct(read("qacct-3.txt"))
    assert hrt is not None
    assert hrt.walltime_exceeded
    assert hrt.exit_status == 137
    assert "h_rt" in hrt.failed_reason
    assert parsers.accounted_status(hrt).end is JobEnd.TIMEOUT
    deleted = parsers.parse_qacct(read("qacct-4.txt"))
    assert deleted is not None
    assert deleted.deleted
    assert deleted.failed_reason == "assumedly after job"
    assert parsers.accounted_status(deleted).end is JobEnd.CANCELLED
    assert parsers.parse_qacct(read("qacct-unknown.txt")) is None
    assert GridEngine().parse_accounting(read("qacct-2.txt"))["2"].state is JobState.FINISHED
    assert GridEngine().parse_accounting(read("qacct-unknown.txt")) == {}


def test_qmaster_down_is_told_apart_from_a_refused_job() -> None:
    assert parsers.qmaster_unreachable(read("qsub-qmaster-down.txt"))
    assert parsers.qmaster_unreachable(read("qstat-qmaster-down.txt"))
    assert not parsers.qmaster_unreachable(read("qsub-missing.txt"))


def test_error_reason_without_timestamps() -> None:
    assert parsers.error_reason(read("qstat-j-error.txt")) == (
        "error: can't chdir to /no/such/dir: No such file or directory")
    dialect = GridEngine()
    assert dialect.hold_reason_argv("6") == ["qstat", "-j", "6"]




def test_options_go_on_the_command_line() -> None:
    dialect = GridEngine(queue="all.q", project="p1")
    job = job_request("ms-e-a1", cores=4, memory_mb=8000, walltime_s=90.5)
    assert dialect.header(job) == []
    assert dialect.submit_argv(job, []) == [
        "qsub", "-terse", "-N", "ms-e-a1", "-S", "/bin/bash", "-wd", "/s/a1", "-o", "/s/a1/job.out",
        "-e", "/s/a1/job.err", "-r", "n", "-pe", "smp", "4", "-l", "h_vmem=2000M", "-l", "h_rt=151",
        "-q", "all.q", "-P", "p1", "/s/a1/job.sh"]
    spaced = dialect.submit_argv(job_request("ms-e-a1", "/s/we ird'dir/a1"), [])
    assert "/s/we ird'dir/a1/job.out" in spaced  # one argv element: no quoting needed
    assert dialect.status_argv("root", ["1"]) == ["qstat", "-xml", "-u", "root"]
    assert with_header("#!/bin/bash\necho hi\n", ["#$ -N x"]) == "#!/bin/bash\n#$ -N x\necho hi\n"
    bad = job_request("ms-e-a1")
    bad = JobRequest(spec=bad.spec, name="a\nb", attempt=bad.attempt, limit_s=None, warning_lead_s=None)
    with pytest.raises(ValueError, match="span lines"):
        dialect.submit_argv(bad, [])


def test_every_users_queue_with_time_limits_left() -> None:
    recorded_at = datetime.fromisoformat("2026-12-01T02:26:16")
    jobs = {j.job_id: j for j in parsers.parse_queue_xml(read("qstat-all-users.xml"), recorded_at)}
    assert sorted(jobs, key=int) == ["5", "6", "7", "8", "9", "10"]
    assert jobs["5"] == QueuedJob(job_id="5", user="root", running=True, cores=1, remaining_s=None)
    assert jobs["6"].remaining_s == 111.0  # h_rt=120, running since 02:26:07
    assert (jobs["9"].running, jobs["9"].cores, jobs["9"].remaining_s) == (False, 4, 180.0)
    seen = forecast(list(jobs.values()), usable_cores=4, ours="root", unlimited_s=3600.0)
    # nobody's 3 running + our 1 fill the 4 slots; the 4-slot job waits for all of nobody's to end
    # (the unlimited one: an hour), the 1-slot one behind it; ours after them
    assert (seen.busy_cores, seen.pending_cores, seen.wait_s) == (3, 5, 3780.0)
    assert parsers.parse_queue_xml("not xml", recorded_at) == []
