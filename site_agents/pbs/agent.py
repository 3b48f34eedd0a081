"""The PBS-family agent: one job per attempt, one ``qstat -f`` per poll, in the site's dialect.

An attempt is a directory in the site's shared filesystem holding its job script (``#PBS`` lines),
its inputs and, once it ends, its outcome: ``outcome.pkl`` from metasched's worker (function tasks) or
``exit-status`` from the command script. The agent trusts that record first. A job that finished
without one is explained from what qstat says of it (walltime, killed by a signal, a JOB_EXEC code);
a job that left qstat altogether (no job history) is declared lost after a few polls. A job the server
held (too many failed starts) is deleted and its attempt fails with the server's comment.
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
from site_agents.pbs.config import PBSSite
from site_agents.pbs.jobs import WALLTIME_MARGIN_S, Capacity, Dialect, JobState, JobStatus, sequence_number
from site_agents.pbs.jobs import server_unreachable as unreachable
from site_agents.pbs.openpbs import OpenPBS
from site_agents.pbs.torque import Torque
from site_agents.runner import CommandRunner
from site_agents.staging import stage_worker

log = logging.getLogger(__name__)

_SUBMIT_THREADS = 4  # qsub calls in flight at once (each is a round trip to the server)
_OUTCOME_GRACE_POLLS = 2  # an outcome file may appear a little after the job finished
_SMOOTHING = 0.2
DIALECTS: dict[str, Dialect] = {"openpbs": OpenPBS(), "torque": Torque()}


def job_name(site: str, attempt_id: str) -> str:
    """The PBS job name of an attempt (starts with a letter, as PBS requires)."""
    return f"ms-{site}-{attempt_id}"


def with_directives(script: str, lines: Sequence[str]) -> str:
    """Put the directives right after the script's ``#!`` line (where qsub reads them)."""
    shebang, _, rest = script.partition("\n")
    return "\n".join([shebang, *lines, rest])


@dataclass(slots=True)
class _Job:
    attempt_id: AttemptId
    spec: TaskSpec
    job_id: str
    directory: Path
    submitted_at: float
    data: DataContext | None = None
    cancelled: bool = False
    started_at: float | None = None
    missing_polls: int = 0


class PBSAgent:
    """Submits attempts with qsub, watches them with one qstat per poll, deletes them with qdel."""

    def __init__(self, config: PBSSite) -> None:
        self.config = config
        self.dialect = DIALECTS[config.dialect]
        self.runner = CommandRunner(site=config.name, env=config.environment,
                                    timeout_s=config.command_timeout_s, login=config.login)
        self._jobs: dict[AttemptId, _Job] = {}
        self._pending: list[AttemptUpdate] = []
        self._capacity = Capacity(total_cores=0, max_cores_per_node=0, nodes=0)
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
        """Check the server answers, learn its nodes' cores, stage the worker where nodes import it."""
        where = f"site {self.config.name}"
        if not Path(self.config.shared_dir).is_dir():
            raise SiteAgentError(f"{where}: shared_dir {self.config.shared_dir} is not a directory.",
                                 site=self.config.name)
        out = self.runner.run(self.dialect.nodes_argv())
        if not out.ok:
            raise SiteAgentError(f"{where}: the PBS server does not answer ({out.describe()}). Check the "
                                 "login prefix and PBS_SERVER in environment.", site=self.config.name,
                                 transient=True)
        self._capacity = self.dialect.parse_nodes(out.stdout)
        if self._capacity.total_cores == 0:
            raise SiteAgentError(f"{where}: pbsnodes lists no node that can take jobs (all down or "
                                 f"offline?): {out.stdout.strip()[:300]}", site=self.config.name)
        self.attempts_dir.mkdir(parents=True, exist_ok=True)
        self._pythonpath = self.config.worker_pythonpath or str(stage_worker(self.config.shared_dir))

    def close(self) -> None:
        """Delete every job still queued or running."""
        live = [job.job_id for job in self._jobs.values()]
        if live:
            try:
                self.runner.run(["qdel", *live])
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
            body = batch.command_job_script(attempt_id=sub.attempt_id, spec=spec, attempt_dir=str(directory))
        else:
            write_attempt(directory, spec, sub.function, sub.dependency_results, sub.data, sub.restore)
            body = batch.job_script(attempt_id=sub.attempt_id, spec=spec, attempt_dir=str(directory),
                                    python=self.config.python, pythonpath=self._pythonpath)
        lines = self.dialect.directives(spec=spec, name=job_name(self.config.name, sub.attempt_id),
                                        attempt_dir=str(directory), queue=self.config.queue,
                                        account=self.config.account)
        script = directory / "job.sh"
        script.write_text(with_directives(body, lines))
        try:
            out = self.runner.run(self.dialect.qsub_argv(str(script), lines))
        except SiteAgentError as exc:
            return None, self._refused_at_no_cost(sub.attempt_id, str(exc))
        if not out.ok and (unreachable(out.stdout + out.stderr) or not self._answers()):
            return None, self._refused_at_no_cost(sub.attempt_id, out.describe())
        job_id = self.dialect.parse_qsub(out.stdout) if out.ok else None
        if job_id is None:
            said = " ".join(f"{out.stderr} {out.stdout}".split())  # the wrappers print errors on stdout
            message = (f"qsub at site {self.config.name} refused task {spec.name!r} (exit {out.returncode}): "
                       f"{said[-600:]}")
            return None, batch.failed(sub.attempt_id, "SubmitError", message)
        job = _Job(attempt_id=sub.attempt_id, spec=spec, job_id=job_id, directory=directory,
                   submitted_at=time.monotonic(), data=sub.data)
        return job, AttemptUpdate(attempt_id=sub.attempt_id, native_id=job_id)

    def _answers(self) -> bool:
        """Whether the server (and the login host in front of it) answers a pbsnodes now."""
        try:
            return self.runner.run(self.dialect.nodes_argv()).ok
        except SiteAgentError:
            return False

    def _refused_at_no_cost(self, attempt_id: AttemptId, reason: str) -> AttemptUpdate:
        """The server did not answer: the attempt is placed again (anywhere) without a retry charged."""
        self._mark_unavailable(reason)
        return AttemptUpdate(attempt_id=attempt_id, outcome=TaskOutcome(
            lost=True, charge_retry=False, detail=f"site {self.config.name}: {reason}"))

    # ------------------------------------------------------------------------------ poll
    def poll(self) -> list[AttemptUpdate]:
        """At most once per poll_interval: one qstat, then outcome files of jobs that finished or left."""
        updates, self._pending = self._pending, []
        now = time.monotonic()
        if (not self._jobs and self.available) or now - self._last_poll < self.config.poll_interval:
            return updates  # an unavailable site is probed even without jobs, so it gets work again
        self._last_poll = now
        ids = [job.job_id for job in self._jobs.values()]
        try:
            out = self.runner.run(self.dialect.qstat_argv(ids) if ids else self.dialect.nodes_argv())
        except SiteAgentError as exc:
            self._mark_unavailable(str(exc))
            return updates
        if not out.ok and not _answered(out.stdout, out.stderr):
            self._mark_unavailable(out.describe())
            return updates
        if not self.available:
            log.warning("site %s answers again", self.config.name)
        self.available = True
        statuses = self.dialect.parse_qstat(out.stdout) if ids else {}
        held: list[str] = []
        for job in list(self._jobs.values()):
            update = self._check(job, statuses.get(sequence_number(job.job_id)), held)
            if update is not None:
                updates.append(update)
                if update.outcome is not None:
                    del self._jobs[job.attempt_id]
        if held:
            self.runner.run(["qdel", *held])
        return updates

    def _check(self, job: _Job, status: JobStatus | None, held: list[str]) -> AttemptUpdate | None:
        if status is not None and status.name and status.name != job_name(self.config.name, job.attempt_id):
            status = None  # not our job (an id reused after the server lost its state)
        outcome = self._read_outcome(job)
        if outcome is not None:
            self._mean_run_s += _SMOOTHING * (time.monotonic() - job.submitted_at - self._mean_run_s)
            return AttemptUpdate(attempt_id=job.attempt_id, outcome=outcome, native_id=job.job_id)
        if status is None or status.state is JobState.FINISHED:
            job.missing_polls += 1
            if job.missing_polls < _OUTCOME_GRACE_POLLS:
                return None
            return self._explain_ended(job, status)
        job.missing_polls = 0
        if status.state is JobState.HELD_BY_SYSTEM:
            held.append(job.job_id)
            return batch.failed(job.attempt_id, "SchedulerError",
                                f"job {job.job_id} at site {self.config.name} was held by the server and was "
                                f"deleted: {status.comment or status.native_state}", native_id=job.job_id)
        if status.state is JobState.RUNNING and job.started_at is None:
            job.started_at = time.monotonic()
            return AttemptUpdate(attempt_id=job.attempt_id, running=True, native_id=job.job_id)
        return None

    def _explain_ended(self, job: _Job, status: JobStatus | None) -> AttemptUpdate | None:
        where = f"job {job.job_id} at site {self.config.name}"
        if status is None and job.missing_polls < self.config.vanish_after_polls:
            return None  # between states, or the server is slow to list it
        if job.cancelled:
            return AttemptUpdate(attempt_id=job.attempt_id, native_id=job.job_id,
                                 outcome=TaskOutcome(cancelled=True, detail=f"{where} deleted"))
        err = batch.tail(job.directory / "job.err")
        if status is None:
            return _lost(job, f"VANISHED: {where} left qstat with no outcome file (is job history "
                              "enabled on the server? finished jobs then stay listed)")
        said = self.dialect.describe_exit(status.exit_status)
        said += f": {status.comment}" if status.comment else ""
        if self.dialect.walltime_killed(status) or self._ran_past_walltime(job):
            return AttemptUpdate(attempt_id=job.attempt_id, native_id=job.job_id, outcome=TaskOutcome(
                failure=RemoteFailure(error_type="WalltimeExceeded", traceback=err, walltime_exceeded=True,
                                      message=f"{where} was ended by its walltime limit ({said})")))
        if status.exit_status is None or status.exit_status >= 256 or status.exit_status < 0:
            return _lost(job, f"{where} ended without a result, killed or deleted outside metasched ({said})")
        return batch.failed(job.attempt_id, "SchedulerError",
                            f"{where} ended without a result ({said}); its stderr is below and in "
                            f"{job.directory}/job.err", traceback=err, native_id=job.job_id)

    def _ran_past_walltime(self, job: _Job) -> bool:
        limit = job.spec.resources.walltime_s
        return (limit is not None and job.started_at is not None
                and time.monotonic() - job.started_at >= limit + WALLTIME_MARGIN_S)

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
            self.runner.run(["qdel", *[j.job_id for j in jobs]])

    def reattach(self, attempt_id: AttemptId, spec: TaskSpec, native_id: str) -> bool:
        """Track a job an earlier scheduler submitted; the next polls resolve it like any other."""
        directory = self.attempts_dir / attempt_id
        if not directory.is_dir():
            return False
        self._jobs[attempt_id] = _Job(attempt_id=attempt_id, spec=spec, job_id=native_id, directory=directory,
                                      submitted_at=time.monotonic())
        return True

    def load(self) -> SiteLoad:
        """Capacity from pbsnodes; no free slots while the server does not answer."""
        inflight = len(self._jobs)
        backlog = max(0, inflight - self._capacity.total_cores)
        return SiteLoad(
            site=self.name, total_cores=self._capacity.total_cores,
            max_cores_per_task=self._capacity.max_cores_per_node, max_memory_mb=1_000_000, gpus=0,
            nodes=self._capacity.nodes, inflight=inflight,
            max_inflight=self.config.max_jobs if self.available else inflight,
            est_wait_s=backlog * self._mean_run_s / max(1, self._capacity.total_cores))


def _answered(stdout: str, stderr: str) -> bool:
    """Tell a failed qstat that still answered from a server that did not.

    qstat exits non-zero when some of the ids it was given are unknown (purged from the history),
    listing the others or none.
    """
    text = stdout + stderr
    return not unreachable(text) and (bool(stdout.strip()) or "unknown job id" in text.lower())


def _lost(job: _Job, detail: str) -> AttemptUpdate:
    return AttemptUpdate(attempt_id=job.attempt_id, native_id=job.job_id,
                         outcome=TaskOutcome(lost=True, charge_retry=True, detail=detail))
