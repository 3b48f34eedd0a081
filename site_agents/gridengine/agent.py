"""The Grid Engine agent: one job per attempt, one ``qstat -xml`` per poll, ``qacct`` for the unexplained.

An attempt is a directory in the site's shared filesystem holding its job script (``#$`` directives),
its inputs and, once it ends, its outcome: ``outcome.pkl`` from metasched's worker (function tasks) or
``exit-status`` from the command script. The agent trusts that record first. A job that leaves qstat
without one is explained from ``qacct -j`` (h_rt enforced, deleted outside metasched, failed to start)
or, if the accounting never mentions it, declared lost. A job in an error state (``Eqw``: it will not
start until an admin clears it) is deleted and its attempt fails with Grid Engine's error reason.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from metasched.data.objects import DataContext
from metasched.errors import SiteAgentError
from metasched.records import AttemptId, RemoteFailure, SiteLoad, SiteName, TaskKind, TaskOutcome, TaskSpec
from metasched.worker import read_outcome, write_attempt
from site_agents import batch
from site_agents.base import AttemptUpdate, Submission
from site_agents.gridengine import commands, parsers
from site_agents.gridengine.config import GridEngineSite
from site_agents.runner import CommandRunner
from site_agents.staging import stage_worker

log = logging.getLogger(__name__)

_SUBMIT_THREADS = 4  # qsub calls in flight at once (each is a round trip to the qmaster)
_OUTCOME_GRACE_POLLS = 2  # an outcome file may appear a little after the job left qstat
_SMOOTHING = 0.2


@dataclass(slots=True)
class _Job:
    attempt_id: AttemptId
    spec: TaskSpec
    job_id: str
    directory: Path
    submitted_at: float
    data: DataContext | None = None
    cancelled: bool = False
    reported_running: bool = False
    missing_polls: int = 0


class GridEngineAgent:
    """Submits attempts with qsub, watches them with one qstat per poll, deletes them with qdel."""

    def __init__(self, config: GridEngineSite) -> None:
        self.config = config
        self.runner = CommandRunner(site=config.name, env=config.environment,
                                    timeout_s=config.command_timeout_s, login=config.login)
        self._jobs: dict[AttemptId, _Job] = {}
        self._pending: list[AttemptUpdate] = []
        self._capacity = parsers.QueueCapacity(total_slots=0, max_slots_per_host=0, hosts=0)
        self._pythonpath = ""
        self._last_poll = 0.0
        self._mean_run_s = 1.0
        self.available = True
        self._pool = ThreadPoolExecutor(max_workers=_SUBMIT_THREADS, thread_name_prefix=f"qsub-{config.name}")

    @property
    def name(self) -> SiteName:
        """The site this agent serves."""
        return SiteName(self.config.name)

    @property
    def attempts_dir(self) -> Path:
        """Where attempt directories live, in the site's shared filesystem."""
        return batch.attempts_dir(self.config.shared_dir)

    # ------------------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Check the cell answers, learn its slots, stage the worker where execution hosts import it."""
        if not Path(self.config.shared_dir).is_dir():
            raise SiteAgentError(f"site {self.config.name}: shared_dir {self.config.shared_dir} is not a "
                                 "directory.", site=self.config.name)
        out = self.runner.run(commands.qstat_f_argv())
        if not out.ok:
            raise SiteAgentError(f"site {self.config.name}: Grid Engine does not answer ({out.describe()}). "
                                 "Check the login prefix and SGE_ROOT/SGE_CELL in environment.",
                                 site=self.config.name, transient=True)
        self._capacity = parsers.parse_qstat_f_xml(out.stdout)
        if self._capacity.total_slots == 0:
            raise SiteAgentError(f"site {self.config.name}: the cell has no queue slots (qstat -f lists no "
                                 "queue instance)", site=self.config.name)
        self.attempts_dir.mkdir(parents=True, exist_ok=True)
        self._pythonpath = self.config.worker_pythonpath or str(stage_worker(self.config.shared_dir))

    def close(self) -> None:
        """Delete every job still queued or running."""
        live = [job.job_id for job in self._jobs.values()]
        if live:
            try:
                self.runner.run(commands.qdel_argv(live))
            except SiteAgentError as exc:
                log.warning("could not delete jobs at %s: %s", self.config.name, exc)
        self._jobs.clear()
        self._pool.shutdown(wait=True)

    # ------------------------------------------------------------------------------ submit
    def submit(self, submissions: Sequence[Submission]) -> None:
        """Write each attempt to the shared filesystem and qsub it (a few qsub calls in parallel)."""
        answers = self._pool.map(self._submit_one, submissions)
        for sub, (job, update) in zip(submissions, answers, strict=True):
            if job is not None:
                self._jobs[sub.attempt_id] = job
            self._pending.append(update)

    def _submit_one(self, sub: Submission) -> tuple[_Job | None, AttemptUpdate]:
        directory = self.attempts_dir / sub.attempt_id
        directory.mkdir(parents=True, exist_ok=True)
        spec = sub.spec
        if spec.kind is TaskKind.COMMAND:
            body = batch.command_job_script(attempt_id=sub.attempt_id, spec=spec,
                                              attempt_dir=str(directory))
        else:
            write_attempt(directory, spec, sub.function, sub.dependency_results, sub.data, sub.restore)
            body = batch.job_script(attempt_id=sub.attempt_id, spec=spec, attempt_dir=str(directory),
                                      python=self.config.python, pythonpath=self._pythonpath)
        lines = commands.directives(spec=spec, name=commands.job_name(self.config.name, sub.attempt_id),
                                    attempt_dir=str(directory), queue=self.config.queue,
                                    project=self.config.project, pe=self.config.pe)
        script = directory / "job.sh"
        script.write_text(commands.with_directives(body, lines))
        try:
            out = self.runner.run(commands.qsub_argv(str(script)))
        except SiteAgentError as exc:
            self._mark_unavailable(str(exc))
            return None, AttemptUpdate(attempt_id=sub.attempt_id, outcome=TaskOutcome(
                lost=True, charge_retry=False, detail=str(exc)))
        if not out.ok and parsers.qmaster_unreachable(out.stderr):  # placed again, at no cost
            self._mark_unavailable(out.describe())
            return None, AttemptUpdate(attempt_id=sub.attempt_id, outcome=TaskOutcome(
                lost=True, charge_retry=False, detail=f"site {self.config.name}: {out.describe()}"))
        job_id = parsers.parse_qsub_terse(out.stdout) if out.ok else None
        if job_id is None:
            message = f"qsub at site {self.config.name} refused task {spec.name!r}: {out.describe()}"
            return None, batch.failed(sub.attempt_id, "SubmitError", message)
        job = _Job(attempt_id=sub.attempt_id, spec=spec, job_id=job_id, directory=directory,
                   submitted_at=time.monotonic(), data=sub.data)
        return job, AttemptUpdate(attempt_id=sub.attempt_id, native_id=job_id)

    # ------------------------------------------------------------------------------ poll
    def poll(self) -> list[AttemptUpdate]:
        """At most once per poll_interval: one qstat, then outcome files and qacct for jobs that left."""
        updates, self._pending = self._pending, []
        now = time.monotonic()
        if (not self._jobs and self.available) or now - self._last_poll < self.config.poll_interval:
            return updates  # an unavailable site is probed even without jobs, so it gets work again
        self._last_poll = now
        try:
            out = self.runner.run(commands.qstat_argv())
        except SiteAgentError as exc:
            self._mark_unavailable(str(exc))
            return updates
        if not out.ok:
            self._mark_unavailable(out.describe())
            return updates
        if not self.available:
            log.warning("site %s answers again", self.config.name)
        self.available = True
        statuses = parsers.parse_qstat_xml(out.stdout)
        errored: list[str] = []
        for job in list(self._jobs.values()):
            update = self._check(job, statuses.get(job.job_id), errored)
            if update is not None:
                updates.append(update)
                if update.outcome is not None:
                    del self._jobs[job.attempt_id]
        if errored:
            self.runner.run(commands.qdel_argv(errored))
        return updates

    def _check(self, job: _Job, status: parsers.JobStatus | None, errored: list[str]) -> AttemptUpdate | None:
        name = commands.job_name(self.config.name, job.attempt_id)
        if status is not None and status.name and status.name != name:
            status = None  # not our job (an id reused after the cell lost its state)
        outcome = self._read_outcome(job)
        if outcome is not None:
            self._mean_run_s += _SMOOTHING * (time.monotonic() - job.submitted_at - self._mean_run_s)
            return AttemptUpdate(attempt_id=job.attempt_id, outcome=outcome, native_id=job.job_id)
        if status is None:
            job.missing_polls += 1
            if job.missing_polls < _OUTCOME_GRACE_POLLS:
                return None
            return self._explain_gone(job)
        job.missing_polls = 0
        if status.state is parsers.JobState.ERROR:
            errored.append(job.job_id)
            shown = self.runner.run(commands.qstat_j_argv(job.job_id))
            reason = parsers.error_reason(shown.stdout) or status.native_state
            return batch.failed(job.attempt_id, "SchedulerError",
                           f"job {job.job_id} at site {self.config.name} went into error state "
                           f"{status.native_state} and was deleted: {reason}", native_id=job.job_id)
        if status.state is parsers.JobState.RUNNING and not job.reported_running:
            job.reported_running = True
            return AttemptUpdate(attempt_id=job.attempt_id, running=True, native_id=job.job_id)
        return None

    def _explain_gone(self, job: _Job) -> AttemptUpdate | None:
        where = f"job {job.job_id} at site {self.config.name}"
        accounting = parsers.parse_qacct(self.runner.run(commands.qacct_argv(job.job_id)).stdout)
        if accounting is None:
            if job.missing_polls < self.config.vanish_after_polls:
                return None  # the accounting file may lag
            return _lost(job, f"VANISHED: {where} left qstat with no outcome file and no accounting record")
        if job.cancelled:
            return AttemptUpdate(attempt_id=job.attempt_id, native_id=job.job_id,
                                 outcome=TaskOutcome(cancelled=True, detail=f"{where} deleted"))
        err = batch.tail(job.directory / "job.err")
        if accounting.walltime_exceeded:
            return AttemptUpdate(attempt_id=job.attempt_id, native_id=job.job_id, outcome=TaskOutcome(
                failure=RemoteFailure(error_type="WalltimeExceeded", traceback=err, walltime_exceeded=True,
                                      message=f"{where} hit its h_rt limit ({accounting.failed_reason})")))
        if accounting.deleted:
            return _lost(job, f"{where} was deleted outside metasched (qacct: failed {accounting.failed} "
                              f"{accounting.failed_reason}, exit status {accounting.exit_status})")
        return batch.failed(job.attempt_id, "SchedulerError",
                       f"{where} ended without a result (qacct: failed {accounting.failed} "
                       f"{accounting.failed_reason}, exit status {accounting.exit_status}); its stderr is "
                       f"below and in {job.directory}/job.err", traceback=err, native_id=job.job_id)

    def _read_outcome(self, job: _Job) -> TaskOutcome | None:
        if job.spec.kind is not TaskKind.COMMAND:
            return read_outcome(job.directory)
        return batch.command_outcome_in(job.directory, job.spec, job.data)

    def _mark_unavailable(self, reason: str) -> None:
        if self.available:
            log.warning("site %s unavailable: %s", self.config.name, reason)
        self.available = False

    # ------------------------------------------------------------------------------ cancel, load
    def cancel(self, attempt_ids: Sequence[AttemptId]) -> None:
        """Delete (qdel) the jobs of these attempts in one call."""
        jobs = [self._jobs[a] for a in attempt_ids if a in self._jobs]
        for job in jobs:
            job.cancelled = True
        if jobs:
            self.runner.run(commands.qdel_argv([j.job_id for j in jobs]))

    def reattach(self, attempt_id: AttemptId, spec: TaskSpec, native_id: str) -> bool:
        """Track a job an earlier scheduler submitted; the next polls resolve it like any other."""
        directory = self.attempts_dir / attempt_id
        if not directory.is_dir():
            return False
        self._jobs[attempt_id] = _Job(attempt_id=attempt_id, spec=spec, job_id=native_id, directory=directory,
                                      submitted_at=time.monotonic())
        return True

    def load(self) -> SiteLoad:
        """Capacity from qstat -f; no free slots while the cell does not answer."""
        inflight = len(self._jobs)
        backlog = max(0, inflight - self._capacity.total_slots)
        return SiteLoad(
            site=self.name, total_cores=self._capacity.total_slots,
            max_cores_per_task=self._capacity.max_slots_per_host, max_memory_mb=1_000_000, gpus=0,
            nodes=self._capacity.hosts, inflight=inflight,
            max_inflight=self.config.max_jobs if self.available else inflight,
            est_wait_s=backlog * self._mean_run_s / max(1, self._capacity.total_slots))


def _lost(job: _Job, detail: str) -> AttemptUpdate:
    return AttemptUpdate(attempt_id=job.attempt_id, native_id=job.job_id,
                         outcome=TaskOutcome(lost=True, charge_retry=True, detail=detail))
