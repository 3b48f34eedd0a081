"""Grid Engine parsers and builders on recorded real 8.1.9 output (tests/data/gridengine-8.1.9)."""

from __future__ import annotations

from pathlib import Path

import pytest

from metasched.records import CommandSpec, Resources, TaskKind, TaskSpec
from site_agents.batch_agent import with_directives
from site_agents.gridengine import commands, parsers

DATA = Path(__file__).resolve().parent.parent / "data" / "gridengine-8.1.9"


def read(name: str) -> str:
    return (DATA / name).read_text()


def test_qstat_xml_running_pending_and_error_jobs() -> None:
    jobs = parsers.parse_qstat_xml(read("qstat.xml"))
    assert {j: (s.state, s.native_state, s.slots) for j, s in jobs.items()} == {
        "1": (parsers.JobState.RUNNING, "r", 1), "3": (parsers.JobState.RUNNING, "r", 1),
        "4": (parsers.JobState.RUNNING, "r", 1), "5": (parsers.JobState.QUEUED, "qw", 16),
        "6": (parsers.JobState.ERROR, "Eqw", 1)}
    assert jobs["1"].name == "ms-ge-run"
    later = parsers.parse_qstat_xml(read("qstat-later.xml"))
    assert sorted(later) == ["1", "5", "6"]


@pytest.mark.parametrize(("letters", "state"), [
    ("qw", parsers.JobState.QUEUED), ("hqw", parsers.JobState.QUEUED), ("r", parsers.JobState.RUNNING),
    ("t", parsers.JobState.RUNNING), ("Rr", parsers.JobState.RUNNING), ("dr", parsers.JobState.DELETING),
    ("Eqw", parsers.JobState.ERROR), ("s", parsers.JobState.SUSPENDED), ("S", parsers.JobState.SUSPENDED)])
def test_state_letters(letters: str, state: parsers.JobState) -> None:
    assert parsers.job_state(letters) is state


def test_qstat_f_slots() -> None:
    assert parsers.parse_qstat_f_xml(read("qstat-f.xml")) == parsers.QueueCapacity(
        total_slots=4, max_slots_per_host=4, hosts=1)


def test_qsub_terse_and_its_refusal() -> None:
    assert parsers.parse_qsub_terse(read("qsub.txt")) == "1"
    assert parsers.parse_qsub_terse("17.1-4:1\n") == "17"
    assert parsers.parse_qsub_terse(read("qsub-missing.txt")) is None


def test_qacct_records() -> None:
    failed = parsers.parse_qacct(read("qacct-2.txt"))
    assert failed == parsers.Accounting(failed=0, failed_reason="", exit_status=3)
    hrt = parsers.parse_qacct(read("qacct-3.txt"))
    assert hrt is not None
    assert hrt.walltime_exceeded
    assert hrt.exit_status == 137
    assert "h_rt" in hrt.failed_reason
    deleted = parsers.parse_qacct(read("qacct-4.txt"))
    assert deleted is not None
    assert deleted.deleted
    assert deleted.failed_reason == "assumedly after job"
    assert parsers.parse_qacct(read("qacct-unknown.txt")) is None


def test_qmaster_down_is_told_apart_from_a_refused_job() -> None:
    assert parsers.qmaster_unreachable(read("qsub-qmaster-down.txt"))
    assert parsers.qmaster_unreachable(read("qstat-qmaster-down.txt"))
    assert not parsers.qmaster_unreachable(read("qsub-missing.txt"))


def test_error_reason_without_timestamps() -> None:
    assert parsers.error_reason(read("qstat-j-error.txt")) == (
        "error: can't chdir to /no/such/dir: No such file or directory")


def _spec(**resources: object) -> TaskSpec:
    return TaskSpec(task_id="t1", name="sim", kind=TaskKind.COMMAND, command=CommandSpec(argv=("true",)),
                    resources=Resources(**resources))  # type: ignore[arg-type]


def test_directives() -> None:
    lines = commands.directives(spec=_spec(cores=4, memory_mb=8000, walltime_s=90.5), name="ms-e-a1",
                                attempt_dir="/s/a1", queue="all.q", project="p1")
    assert lines == ["#$ -N ms-e-a1", "#$ -S /bin/bash", "#$ -wd /s/a1", "#$ -o /s/a1/job.out",
                     "#$ -e /s/a1/job.err", "#$ -r n", "#$ -pe smp 4", "#$ -l h_vmem=2000M",
                     "#$ -l h_rt=151", "#$ -q all.q", "#$ -P p1"]
    script = with_directives("#!/bin/bash\necho hi\n", ["#$ -N x"])
    assert script == "#!/bin/bash\n#$ -N x\necho hi\n"
    with pytest.raises(ValueError, match="span lines"):
        commands.directives(spec=_spec(), name="a\nb", attempt_dir="/s")
