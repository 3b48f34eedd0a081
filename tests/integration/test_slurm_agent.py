"""The Slurm batch agent against the containerized sites: polling cost, mixed campaigns, faults."""

from __future__ import annotations

import contextlib
import itertools
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import slurmsite

import metasched as ms
from metasched.outcomes import Cancelled, Lost, TaskOutcome
from metasched.records import AttemptId, CommandSpec, Resources, TaskId, TaskKind, TaskSpec
from metasched.scheduler.events import SiteSummary
from metasched.sites.base import Submission
from site_agents.batch.agent import BatchAgent
from site_agents.batch.submitting import SUBMIT_THREADS, job_name
from site_agents.slurm import SlurmSite, slurm_agent
from tests.integration.batch_faults import attempts, slow_submissions_login
from tests.integration.processes import kill_tree

pytestmark = [pytest.mark.slurm, pytest.mark.ray]
_ids = itertools.count()


def slurm_site(info: slurmsite.SiteInfo, **options: object) -> SlurmSite:
    return SlurmSite(info.name, slurm_conf=info.slurm_conf, shared_dir=info.shared_dir, **options)  # type: ignore[arg-type]


def sleeper(n: int) -> Submission:
    tid = f"poll{os.getpid()}x{next(_ids)}"
    spec = TaskSpec(task_id=TaskId(tid), name="sleep", kind=TaskKind.COMMAND, resources=Resources(),
                    command=CommandSpec(argv=("sleep", "120")))
    return Submission(attempt_id=AttemptId(f"{tid}.{n}"), spec=spec)


def test_polling_cost_does_not_grow_with_tasks(alpha: slurmsite.SiteInfo) -> None:
    agent = slurm_agent(slurm_site(alpha, poll_interval=0.01, max_jobs=1000))
    agent.start()
    try:
        def commands_per_poll() -> int:
            time.sleep(0.05)
            before = sum(agent.runner.calls.values())
            agent.poll()
            return sum(agent.runner.calls.values()) - before

        agent.submit([sleeper(1)], wait=True)
        one = commands_per_poll()
        agent.submit([sleeper(1) for _ in range(199)], wait=True)
        assert agent.load().inflight == 200
        two_hundred = commands_per_poll()
        assert one == two_hundred == 1, (one, two_hundred)
        assert agent.runner.calls["squeue"] == 3  # every user's queue once at start, then one per poll
    finally:
        agent.close()


def test_mixed_campaign_across_local_alpha_and_beta(
    alpha: slurmsite.SiteInfo, beta: slurmsite.SiteInfo, ray_local: None, tmp_path: Path
) -> None:
    sites = [ms.LocalSite("local", cores=2), slurm_site(alpha, poll_interval=0.3, max_jobs=40),
             slurm_site(beta, poll_interval=0.3, max_jobs=40)]
    with ms.Campaign(f"mixed-{os.getpid()}", sites=sites, journal=tmp_path / "m.db") as c:
        @c.task
        def work(i: int) -> int:
            time.sleep(0.2)
            return i

        functions = [work(i) for i in range(200)]
        commands = [c.command(["python3", "-c", f"print({i})"]) for i in range(100)]
        assert [f.result(timeout=600) for f in functions] == list(range(200))
        assert [int(f.result(timeout=600).stdout) for f in commands] == list(range(100))
        done = {row.site: row.done for row in c.status()}
    assert set(done) == {"local", "alpha", "beta"}, done
    assert sum(done.values()) == 300
    assert all(n > 0 for n in done.values())


def test_sites_start_at_once(alpha: slurmsite.SiteInfo, beta: slurmsite.SiteInfo, ray_local: None,
                             tmp_path: Path) -> None:
    """A site's start is several commands there (who we are, its nodes, its queue); the campaign's sites
    run theirs at the same time, so it waits for the slowest site, not for their sum."""
    noted = tmp_path / "commands"

    def noting(info: slurmsite.SiteInfo) -> SlurmSite:  # each command at the site noted, 0.3 s slower
        script = (f'echo "$0 begin $(date +%s.%N) $*" >> {noted}; sleep 0.3; "$@"; rc=$?; '
                  f'echo "$0 end $(date +%s.%N) $*" >> {noted}; exit $rc')
        return slurm_site(info, login=("sh", "-c", script, info.name), poll_interval=0.3)

    with ms.Campaign(f"at-once-{os.getpid()}", sites=[noting(alpha), noting(beta)],
                     journal=tmp_path / "o.db") as c:
        assert c.command(["true"]).result(timeout=120).returncode == 0
    seen: dict[tuple[str, str, str], float] = {}
    for line in noted.read_text().splitlines():
        site, event, at, *argv = line.split()  # argv: env KEY=VALUE... program args...
        program = next(word for word in argv if word != "env" and "=" not in word)
        seen.setdefault((site, program, event), float(at))  # a program's first run: the start's
    for one, other in (("alpha", "beta"), ("beta", "alpha")):
        assert seen[(other, "id", "begin")] < seen[(one, "sinfo", "end")], \
            f"{other} began its start after {one} had asked for its nodes: the sites started one by one"


def _results_or_where_stuck(c: ms.Campaign, futures: list[ms.TaskFuture[int]], alpha: slurmsite.SiteInfo,
                            timeout: float) -> list[int]:
    """All results; on a timeout, fail with alpha's queue and nodes so the cause is in the test report."""
    try:
        return [f.result(timeout=timeout) for f in futures]
    except TimeoutError:
        queue = subprocess.run(["squeue", "--states=all", "--format=%i|%T|%r|%j"], env=alpha.client_env(),
                               capture_output=True, text=True, check=False)
        nodes = subprocess.run(["sinfo", "--Node", "--format=%N %T %E"], env=alpha.client_env(),
                               capture_output=True, text=True, check=False)
        stuck = [f.name for f in futures if not f.done()]
        pytest.fail(f"{len(stuck)} task(s) unfinished; status {c.status()}\n{queue.stdout}\n{nodes.stdout}")


@dataclass(frozen=True)
class FaultRun:
    """What happened around a fault on alpha's controller (times are wall-clock, as in the journal)."""

    done_at_fault: int
    done_at_restart: int
    down_from: float
    down_until: float
    rows: dict[str, SiteSummary]

    def attempts_placed_while_down(self, journal: Path) -> list[tuple[str, str]]:
        """(site, state) of every attempt submitted while alpha was down (after 8 s to notice)."""
        db = sqlite3.connect(journal)
        try:
            return list(db.execute("SELECT site, state FROM attempts WHERE submitted_at BETWEEN ? AND ?",
                                   (self.down_from + 8, self.down_until)))
        finally:
            db.close()


def _controller_fault(alpha: slurmsite.SiteInfo, beta: slurmsite.SiteInfo, journal: Path,
                      fault: list[str]) -> FaultRun:
    """One-second tasks on alpha + beta: 20, then `fault` hits alpha's controller once 5 are done, then 40
    more while it is down (alpha has room for them: only beta may get them), 15 s later it restarts."""
    sites = [slurm_site(alpha, poll_interval=0.3, max_jobs=30, stall_after_s=20),
             slurm_site(beta, poll_interval=0.3, max_jobs=10)]
    controller = "metasched-slurm-alpha-controller"
    with ms.Campaign(f"fault-{os.getpid()}-{journal.stem}", sites=sites, journal=journal) as c:
        @c.task
        def work(i: int) -> int:
            time.sleep(1.0)
            return i

        futures = [work(i) for i in range(20)]
        deadline = time.monotonic() + 120
        while sum(f.done() for f in futures) < 5 and time.monotonic() < deadline:
            time.sleep(0.2)
        done_at_fault = sum(f.done() for f in futures)
        subprocess.run([*fault, controller], check=True, capture_output=True, timeout=60)
        down_from = time.time()  # the controller is gone once docker returns
        # Even an idle alpha runs squeue every 2 s; unanswered for 1 s (3 poll intervals), alpha gets no new
        # jobs (squeue itself fails only after ~9 s).
        time.sleep(8)
        futures += [work(i) for i in range(20, 60)]
        try:
            time.sleep(15)  # beta carries on meanwhile
            done_at_restart = sum(f.done() for f in futures)
        finally:
            down_until = time.time()
            subprocess.run(["docker", "start", controller], check=True, capture_output=True, timeout=60)
        assert _results_or_where_stuck(c, futures, alpha, timeout=600) == list(range(60))
        return FaultRun(done_at_fault=done_at_fault, done_at_restart=done_at_restart, down_from=down_from,
                        down_until=down_until, rows={row.site: row for row in c.status()})


def test_controller_stop_moves_work_elsewhere_and_loses_nothing(
    alpha: slurmsite.SiteInfo, beta: slurmsite.SiteInfo, ray_local: None, tmp_path: Path
) -> None:
    """A clean stop (slurmctld saves its state) and restart: new work goes to beta meanwhile, alpha's
    jobs finish once it is back, every task ends once."""
    run = _controller_fault(alpha, beta, tmp_path / "stop.db", ["docker", "stop", "--time", "30"])
    assert run.done_at_restart > run.done_at_fault, "no work finished while alpha's controller was down"
    assert sum(r.done for r in run.rows.values()) == 60
    placed = run.attempts_placed_while_down(tmp_path / "stop.db")
    assert ("beta", "succeeded") in placed, placed
    assert [a for a in placed if a[0] == "alpha"] == [], "work was still sent to alpha while it was down"
    slurmsite.wait_ready(alpha)


def test_controller_crash_with_lost_state_loses_nothing(
    alpha: slurmsite.SiteInfo, beta: slurmsite.SiteInfo, ray_local: None, tmp_path: Path
) -> None:
    """kill -9 of slurmctld: it restarts from an older state, may hand out job ids its nodes still run
    (Slurm then drains them, "Duplicate jobid") and strand jobs on ReqNodeNotAvail. metasched tells
    reused ids apart by job name and withdraws stranded jobs to beta; every task ends exactly once."""
    try:
        run = _controller_fault(alpha, beta, tmp_path / "crash.db", ["docker", "kill"])
        assert sum(r.done for r in run.rows.values()) == 60
        assert run.rows["beta"].done > 0
    finally:
        slurmsite.repair(alpha)


def test_resumed_campaign_reattaches_to_running_jobs(alpha: slurmsite.SiteInfo, tmp_path: Path) -> None:
    script = Path(__file__).parent / "scripts" / "reattach_campaign.py"
    journal = tmp_path / "r.db"
    args = [sys.executable, str(script), str(journal), alpha.slurm_conf, alpha.shared_dir]
    run = subprocess.Popen([*args, "run"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           start_new_session=True)

    def native_ids() -> dict[str, str]:
        if not journal.exists():
            return {}
        db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=5)
        try:
            return dict(db.execute("SELECT attempt_id, native_id FROM attempts WHERE native_id IS NOT NULL"))
        except sqlite3.OperationalError:
            return {}
        finally:
            db.close()

    try:
        deadline = time.monotonic() + 60
        while len(native_ids()) < 6:
            assert run.poll() is None, run.stdout.read() if run.stdout else ""
            assert time.monotonic() < deadline, "jobs were not submitted in 60 s"
            time.sleep(0.2)
    finally:
        kill_tree(run.pid)
    before = native_ids()
    resumed = subprocess.run([*args, "resume"], capture_output=True, text=True, timeout=300, check=False)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "RESUMED 0 1 2 3 4 5" in resumed.stdout
    db = sqlite3.connect(journal)
    attempts = dict(db.execute("SELECT attempt_id, native_id FROM attempts"))
    states = {state for (state,) in db.execute("SELECT state FROM attempts")}
    db.close()
    assert attempts == before, "a resumed campaign must re-attach to the same jobs, not resubmit"
    assert states == {"succeeded"}


def test_sbatch_that_does_not_answer_loses_only_its_own_attempt(alpha: slurmsite.SiteInfo) -> None:
    agent = slurm_agent(slurm_site(alpha, poll_interval=0.01))
    agent.start()
    try:
        agent.runner.timeout_s = 0.001  # every sbatch now times out
        subs = [sleeper(1) for _ in range(3)]
        agent.submit(subs, wait=True)  # must not raise: each attempt is reported on its own
        updates = {u.attempt_id: u.outcome for u in agent.poll()}
        assert set(updates) == {s.attempt_id for s in subs}
        for outcome in updates.values():
            assert isinstance(outcome, Lost)
            assert not outcome.charge_retry
            assert "did not answer" in outcome.detail
        assert not agent.available
    finally:
        agent.runner.timeout_s = 30
        agent.close()
    assert _listed(alpha, subs) == ""  # an sbatch killed after the controller took its job (see below)


def _listed(info: slurmsite.SiteInfo, subs: list[Submission]) -> str:
    """squeue's lines for the jobs of `subs` still pending or running."""
    names = ",".join(job_name(info.name, s.attempt_id) for s in subs)
    return subprocess.run(["squeue", "--noheader", f"--name={names}", "--states=RUNNING,PENDING"],
                          env=info.client_env(), capture_output=True, text=True, check=True).stdout.strip()


def test_a_job_queued_by_a_submission_never_answered_is_deleted_when_the_agent_closes(
    alpha: slurmsite.SiteInfo,
) -> None:
    """sbatch queues the job, then its answer does not come in time (a far login node): the attempt is
    lost and placed again, the job left behind. At the site's next answer it is deleted by name; an agent
    closed before that (the campaign ended) left it running: seen in CI, a sleeper ran on for 120 s."""
    answer_late = 'case " $* " in *" --test-only "*) ;; *" sbatch "*) "$@"; sleep 30; exit;; esac; exec "$@"'
    agent = slurm_agent(slurm_site(alpha, poll_interval=0.3, login=("bash", "-c", answer_late, "late")))
    agent.start()
    subs = [sleeper(0)]
    try:
        agent.runner.timeout_s = 3
        agent.submit(subs, wait=True)  # no poll after it: the site's next answer would delete the job
        assert agent.runner.calls["sbatch"] == 1
        assert _listed(alpha, subs), "the job was queued all the same"
    finally:
        agent.runner.timeout_s = 30
        agent.close()
    assert _listed(alpha, subs) == ""


@contextlib.contextmanager
def _controller_stopped(info: slurmsite.SiteInfo) -> Iterator[None]:
    """The site's controller stopped (`docker stop`: it saves its state) for the block, then started again."""
    controller = f"metasched-slurm-{info.name}-controller"
    subprocess.run(["docker", "stop", controller], check=True, capture_output=True, timeout=60)
    try:
        yield
    finally:
        subprocess.run(["docker", "start", controller], check=True, capture_output=True, timeout=60)


def test_a_stopped_controller_holds_up_no_step_and_one_round_of_submissions(
    alpha: slurmsite.SiteInfo,
) -> None:
    """sbatch waits ~9 s for a controller that is gone. The agent hands submissions to its own thread and
    returns at once (the scheduler's step waits for no site); of 12 submissions only those already in
    flight when the first fails are sent (4 threads), the rest come back to be placed again at no cost, and
    so do later batches until the site answers again. (Before: the step waited for three rounds of 9 s.)"""
    agent = slurm_agent(slurm_site(alpha, poll_interval=0.3))
    agent.start()
    subs, later = [sleeper(n) for n in range(12)], [sleeper(n) for n in range(12, 16)]
    try:
        with _controller_stopped(alpha):
            agent.submit(subs)
            assert agent.load().inflight == 12
            assert not [u for u in agent.poll() if u.outcome is not None]  # sbatch is still waiting
            outcomes = _outcomes(agent, subs, timeout=60)
            assert not agent.load().accepting
            agent.submit(later)
            outcomes |= _outcomes(agent, later, timeout=10)
        assert set(outcomes) == {s.attempt_id for s in subs + later}
        for outcome in outcomes.values():
            assert isinstance(outcome, Lost), outcome
            assert not outcome.charge_retry
            assert "Unable to contact slurm controller" in outcome.detail, outcome.detail
        assert agent.runner.calls["sbatch"] == SUBMIT_THREADS
        assert not agent.available
    finally:
        agent.close()
        slurmsite.wait_ready(alpha)


def _outcomes(agent: BatchAgent, subs: list[Submission], *, timeout: float) -> dict[AttemptId, TaskOutcome]:
    """Poll until every one of `subs` has an outcome."""
    wanted, outcomes = {s.attempt_id for s in subs}, {}
    deadline = time.monotonic() + timeout
    while set(outcomes) != wanted:
        assert time.monotonic() < deadline, f"no outcome yet for {sorted(wanted - set(outcomes))}"
        outcomes |= {u.attempt_id: u.outcome for u in agent.poll() if u.attempt_id in wanted and u.outcome}
        time.sleep(0.1)
    return outcomes


@pytest.mark.parametrize("noticed", [True, False], ids=["noticed", "as-it-stops"])
def test_a_job_cancelled_while_the_controller_is_stopped_is_deleted_once_it_answers(
    alpha: slurmsite.SiteInfo, noticed: bool
) -> None:
    """scancel against a stopped controller waits ~9 s (the scheduler's step with it) and then fails: the
    job ran on once the controller was back. Now the agent does not ask while the site does not answer,
    and deletes the job at its next answer. So too if the controller stopped just before the cancel,
    before the agent noticed (`as-it-stops`): scancel is asked, fails, and the job was left running."""
    agent = slurm_agent(slurm_site(alpha, poll_interval=0.3))
    agent.start()
    sub = sleeper(0)
    try:
        agent.submit([sub], wait=True)
        job_id = agent.job_id(sub.attempt_id)
        assert job_id
        with _controller_stopped(alpha):
            deadline = time.monotonic() + 30
            while noticed and agent.load().status_current:
                assert time.monotonic() < deadline, "the agent did not notice the stopped controller"
                agent.poll()
                time.sleep(0.2)
            agent.cancel([sub.attempt_id])
            assert agent.runner.calls["scancel"] == (0 if noticed else 1)
        outcome = None
        deadline = time.monotonic() + 120
        while outcome is None:
            assert time.monotonic() < deadline, "the cancelled job was not reported"
            outcome = next((u.outcome for u in agent.poll() if u.attempt_id == sub.attempt_id and u.outcome),
                           None)
            time.sleep(0.3)
        assert isinstance(outcome, Cancelled), outcome
        assert agent.runner.calls["scancel"] == (1 if noticed else 2)
        listed = subprocess.run(["squeue", "--noheader", f"--jobs={job_id}", "--states=RUNNING,PENDING"],
                                env=alpha.client_env(), capture_output=True, text=True, check=False)
        assert listed.stdout.strip() == "", f"job {job_id} still runs: {listed.stdout}"
    finally:
        agent.close()
        slurmsite.wait_ready(alpha)


SLOW_SBATCH_S = 6


def test_a_site_slow_to_take_jobs_holds_up_no_other_sites_results(
    alpha: slurmsite.SiteInfo, ray_local: None, tmp_path: Path
) -> None:
    """Every sbatch at alpha takes 6 s. The local site's results come meanwhile (before, the scheduler's
    step waited for alpha's submissions, rounds of four: no result at all for 12 s or more); alpha is given
    no more than it is submitting at once (before, 11 of the 12 went there in the first step: idle, it
    looked like no wait), the rest run at the local cores as they free, no job of alpha's is left behind,
    and every task's result is recorded once."""
    markers = Path(alpha.shared_dir) / f"slow-sbatch-{time.time_ns()}"
    markers.mkdir()
    argv = ["python3", "-c", "import sys, time; open(sys.argv[1], 'a').write('ran\\n'); time.sleep(0.5)"]
    slow = slurm_site(alpha, poll_interval=0.3, login=slow_submissions_login(SLOW_SBATCH_S))
    sites = [ms.LocalSite("local", cores=2), slow]
    journal = tmp_path / "slow.db"
    with ms.Campaign(f"slow-sbatch-{os.getpid()}", sites=sites, journal=journal) as c:
        futures = [c.command([*argv, str(markers / f"t{i}")], name=f"t{i}") for i in range(12)]
        submitted = time.monotonic()
        while not any(f.done() for f in futures):
            assert time.monotonic() - submitted < SLOW_SBATCH_S - 1, (
                "no result before alpha's first sbatch calls returned: the step waited for them")
            time.sleep(0.1)
        assert all(f.result(timeout=180).returncode == 0 for f in futures)
    assert sorted(p.name for p in markers.iterdir()) == sorted(f"t{i}" for i in range(12))  # each ran
    tried = attempts(journal)
    assert {site for _, site, _, _ in tried} == {"local", "alpha"}, tried  # alpha had jobs while slow
    assert sum(site == "alpha" for _, site, _, _ in tried) <= SUBMIT_THREADS, tried  # the rest waited here
    succeeded = [task for task, _, state, _ in tried if state == "succeeded"]
    assert len(succeeded) == len(set(succeeded)) == 12, tried  # each result recorded once
    listed = subprocess.run(["squeue", "--noheader", "--states=PENDING,RUNNING", "--format=%j"],
                            env=alpha.client_env(), capture_output=True, text=True, check=True).stdout
    assert "ms-alpha-" not in listed, listed  # the jobs of tasks that moved were deleted
