"""What the Grid Engine and PBS agents share.

Attempts are job scripts in the shared filesystem, submitted a few at a time, watched with one status
command per poll, deleted, re-attached and counted the same way. A subclass says how its scheduler is
spoken to - the directives of a job script, how a submission is made and read, which command lists jobs
and how its answer is parsed, and what a listed (or no longer listed) job means - through the abstract
methods below. Everything else, and every agent-protocol method but `start`, lives here once.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, Protocol, TypeVar

from metasched.data.objects import DataContext
from metasched.errors import SiteAgentError
from metasched.records import AttemptId, SiteLoad, SiteName, TaskKind, TaskOutcome, TaskSpec
from metasched.worker import read_outcome, write_attempt
from site_agents import batch
from site_agents.base import AttemptUpdate, Submission
from site_agents.runner import CommandOutput, CommandRunner
from site_agents.staging import stage_worker

log = logging.getLogger(__name__)

_SUBMIT_THREADS = 4  # submissions in flight at once (each is a round trip to the server)
_SMOOTHING = 0.2


class BatchSiteConfig(Protocol):
    """The configuration every batch site has (GridEngineSite, PBSSite): read-only fields."""

    @property
    def name(self) -> str:
        """The site's name."""
    @property
    def shared_dir(self) -> str:
        """The directory this machine and the execution hosts share."""
    @property
    def login(self) -> tuple[str, ...]:
        """The argv prefix that runs the client programs on a submit host."""
    @property
    def environment(self) -> dict[str, str]:
        """Variables the client programs need."""
    @property
    def max_jobs(self) -> int:
        """The most jobs queued or running at once."""
    @property
    def poll_interval(self) -> float:
        """Seconds between status commands."""
    @property
    def python(self) -> str:
        """The Python on the execution hosts."""
    @property
    def worker_pythonpath(self) -> str | None:
        """Where execution hosts import metasched from (None: staged in shared_dir)."""
    @property
    def vanish_after_polls(self) -> int:
        """Polls a job may be missing before it is declared lost."""
    @property
    def command_timeout_s(self) -> float:
        """Timeout of each scheduler command."""


@dataclass(slots=True)
class BatchJob:
    """One submitted attempt and what the agent has seen of it."""

    attempt_id: AttemptId
    spec: TaskSpec
    job_id: str
    directory: Path
    submitted_at: float
    data: DataContext | None = None
    cancelled: bool = False
    started_at: float | None = None
    missing_polls: int = 0


@dataclass(frozen=True, slots=True)
class Capacity:
    """Cores of the nodes (slots of the queue instances) that can take work."""

    total_cores: int
    max_cores_per_node: int
    nodes: int


StatusT = TypeVar("StatusT")
ConfigT = TypeVar("ConfigT", bound=BatchSiteConfig)


class BatchAgent(ABC, Generic[ConfigT, StatusT]):
    """The shared half of a batch-scheduler agent (see the module docstring)."""

    def __init__(self, config: ConfigT) -> None:
        self.config = config
        self.runner = CommandRunner(site=config.name, env=config.environment,
                                    timeout_s=config.command_timeout_s, login=config.login)
        self._jobs: dict[AttemptId, BatchJob] = {}
        self._pending: list[AttemptUpdate] = []
        self._capacity = Capacity(total_cores=0, max_cores_per_node=0, nodes=0)
        self._pythonpath = ""
        self._last_poll = 0.0
        self._mean_run_s = 1.0
        self.available = True
        self._pool = ThreadPoolExecutor(max_workers=_SUBMIT_THREADS,
                                        thread_name_prefix=f"submit-{config.name}")

    # ------------------------------------------------------------------------------ what subclasses say
    @abstractmethod
    def directives(self, spec: TaskSpec, name: str, attempt_dir: str) -> list[str]:
        """The scheduler's directive lines of one attempt's job script."""

    @abstractmethod
    def submit_argv(self, script: str, directives: Sequence[str]) -> list[str]:
        """The argv that submits a script."""

    @abstractmethod
    def parse_submitted(self, stdout: str) -> str | None:
        """The job id a successful submission printed, or None."""

    @abstractmethod
    def site_down(self, out: CommandOutput) -> bool:
        """True when a failed submission is the site's fault: the server or login host did not answer."""

    @abstractmethod
    def status_argv(self, job_ids: Sequence[str]) -> list[str]:
        """The one command per poll that lists these jobs."""

    @abstractmethod
    def answered(self, out: CommandOutput) -> bool:
        """Whether a status command's output can be read (it may exit non-zero and still answer)."""

    @abstractmethod
    def parse_status(self, text: str) -> Mapping[str, StatusT]:
        """The listed jobs, by job id as `status_key` gives it."""

    @abstractmethod
    def check(self, job: BatchJob, status: StatusT | None) -> AttemptUpdate | None:
        """What a job's status (None: not listed) means when it has no outcome file yet."""

    def status_key(self, job_id: str) -> str:
        """The key a job is listed under in `parse_status` (the id itself by default)."""
        return job_id

    def delete_argv(self, job_ids: Sequence[str]) -> list[str]:
        """Delete several jobs in one call."""
        return ["qdel", *job_ids]

    def after_poll(self) -> None:
        """Called after every job of a poll was checked (e.g. to delete jobs `check` gave up on)."""

    # ------------------------------------------------------------------------------ lifecycle
    @property
    def name(self) -> SiteName:
        """The site this agent serves."""
        return SiteName(self.config.name)

    @property
    def attempts_dir(self) -> Path:
        """Where attempt directories live, in the site's shared filesystem."""
        return batch.attempts_dir(self.config.shared_dir)

    def check_shared_dir(self) -> None:
        """Refuse to start without the shared directory."""
        if not Path(self.config.shared_dir).is_dir():
            raise SiteAgentError(f"site {self.config.name}: shared_dir {self.config.shared_dir} is not a "
                                 "directory.", site=self.config.name)

    def stage(self) -> None:
        """Make the attempts directory and stage the worker where the execution hosts import it."""
        self.attempts_dir.mkdir(parents=True, exist_ok=True)
        self._pythonpath = self.config.worker_pythonpath or str(stage_worker(self.config.shared_dir))

    def close(self) -> None:
        """Delete every job still queued or running."""
        live = [job.job_id for job in self._jobs.values()]
        if live:
            try:
                self.runner.run(self.delete_argv(live))
            except SiteAgentError as exc:
                log.warning("could not delete jobs at %s: %s", self.config.name, exc)
        self._jobs.clear()
        self._pool.shutdown(wait=True)

    # ------------------------------------------------------------------------------ submit
    def submit(self, submissions: Sequence[Submission]) -> None:
        """Write each attempt to the shared filesystem and submit it (a few submissions in parallel)."""
        answers = self._pool.map(self._submit_one, submissions)
        for sub, (job, update) in zip(submissions, answers, strict=True):
            if job is not None:
                self._jobs[sub.attempt_id] = job
            self._pending.append(update)

    def _submit_one(self, sub: Submission) -> tuple[BatchJob | None, AttemptUpdate]:
        directory = self.attempts_dir / sub.attempt_id
        directory.mkdir(parents=True, exist_ok=True)
        spec = sub.spec
        if spec.kind is TaskKind.COMMAND:
            body = batch.command_job_script(attempt_id=sub.attempt_id, spec=spec, attempt_dir=str(directory))
        else:
            write_attempt(directory, spec, sub.function, sub.dependency_results, sub.data, sub.restore)
            body = batch.job_script(attempt_id=sub.attempt_id, spec=spec, attempt_dir=str(directory),
                                    python=self.config.python, pythonpath=self._pythonpath)
        lines = self.directives(spec, job_name(self.config.name, sub.attempt_id), str(directory))
        script = directory / "job.sh"
        script.write_text(with_directives(body, lines))
        try:
            out = self.runner.run(self.submit_argv(str(script), lines))
        except SiteAgentError as exc:
            return None, self._refused_at_no_cost(sub.attempt_id, str(exc))
        if not out.ok and self.site_down(out):
            return None, self._refused_at_no_cost(sub.attempt_id, out.describe())
        job_id = self.parse_submitted(out.stdout) if out.ok else None
        if job_id is None:
            said = " ".join(f"{out.stderr} {out.stdout}".split())  # some print their errors on stdout
            return None, batch.failed(sub.attempt_id, "SubmitError",
                                      f"{out.argv[0]} at site {self.config.name} refused task {spec.name!r} "
                                      f"(exit {out.returncode}): {said[-600:]}")
        job = BatchJob(attempt_id=sub.attempt_id, spec=spec, job_id=job_id, directory=directory,
                       submitted_at=time.monotonic(), data=sub.data)
        return job, AttemptUpdate(attempt_id=sub.attempt_id, native_id=job_id)

    def _refused_at_no_cost(self, attempt_id: AttemptId, reason: str) -> AttemptUpdate:
        """The server did not answer: the attempt is placed again (anywhere) without a retry charged."""
        self.mark_unavailable(reason)
        return AttemptUpdate(attempt_id=attempt_id, outcome=TaskOutcome(
            lost=True, charge_retry=False, detail=f"site {self.config.name}: {reason}"))

    # ------------------------------------------------------------------------------ poll
    def poll(self) -> list[AttemptUpdate]:
        """At most once per poll_interval: one status command, then each job's outcome file and status.

        An unavailable site is polled even without jobs, so it gets work again once it answers.
        """
        updates, self._pending = self._pending, []
        now = time.monotonic()
        if (not self._jobs and self.available) or now - self._last_poll < self.config.poll_interval:
            return updates
        self._last_poll = now
        try:
            out = self.runner.run(self.status_argv([job.job_id for job in self._jobs.values()]))
        except SiteAgentError as exc:
            self.mark_unavailable(str(exc))
            return updates
        if not out.ok and not self.answered(out):
            self.mark_unavailable(out.describe())
            return updates
        if not self.available:
            log.warning("site %s answers again", self.config.name)
        self.available = True
        statuses = self.parse_status(out.stdout)
        for job in list(self._jobs.values()):
            update = self._update(job, statuses.get(self.status_key(job.job_id)))
            if update is not None:
                updates.append(update)
                if update.outcome is not None:
                    del self._jobs[job.attempt_id]
        self.after_poll()
        return updates

    def _update(self, job: BatchJob, status: StatusT | None) -> AttemptUpdate | None:
        outcome = self.read_outcome(job)
        if outcome is not None:
            self._mean_run_s += _SMOOTHING * (time.monotonic() - job.submitted_at - self._mean_run_s)
            return AttemptUpdate(attempt_id=job.attempt_id, outcome=outcome, native_id=job.job_id)
        return self.check(job, status)

    def read_outcome(self, job: BatchJob) -> TaskOutcome | None:
        """The attempt's own record of how it ended, if it has ended."""
        if job.spec.kind is not TaskKind.COMMAND:
            return read_outcome(job.directory)
        return batch.command_outcome_in(job.directory, job.spec, job.data)

    def running(self, job: BatchJob) -> AttemptUpdate | None:
        """Report a job as running, once."""
        if job.started_at is not None:
            return None
        job.started_at = time.monotonic()
        return AttemptUpdate(attempt_id=job.attempt_id, running=True, native_id=job.job_id)

    def cancelled(self, job: BatchJob, where: str) -> AttemptUpdate:
        """The outcome of a job metasched deleted."""
        return AttemptUpdate(attempt_id=job.attempt_id, native_id=job.job_id,
                             outcome=TaskOutcome(cancelled=True, detail=f"{where} deleted"))

    def mark_unavailable(self, reason: str) -> None:
        """No new work until the server answers again."""
        if self.available:
            log.warning("site %s unavailable: %s", self.config.name, reason)
        self.available = False

    # ------------------------------------------------------------------------------ cancel, reattach, load
    def cancel(self, attempt_ids: Sequence[AttemptId]) -> None:
        """Delete the jobs of these attempts in one call."""
        jobs = [self._jobs[a] for a in attempt_ids if a in self._jobs]
        for job in jobs:
            job.cancelled = True
        if jobs:
            self.runner.run(self.delete_argv([j.job_id for j in jobs]))

    def reattach(self, attempt_id: AttemptId, spec: TaskSpec, native_id: str) -> bool:
        """Track a job an earlier scheduler submitted; the next polls resolve it like any other."""
        directory = self.attempts_dir / attempt_id
        if not directory.is_dir():
            return False
        self._jobs[attempt_id] = BatchJob(attempt_id=attempt_id, spec=spec, job_id=native_id,
                                          directory=directory, submitted_at=time.monotonic())
        return True

    def load(self) -> SiteLoad:
        """Capacity as last listed; no free room while the server does not answer."""
        inflight = len(self._jobs)
        cores = self._capacity.total_cores
        return SiteLoad(
            site=self.name, total_cores=cores, max_cores_per_task=self._capacity.max_cores_per_node,
            max_memory_mb=1_000_000, gpus=0, nodes=self._capacity.nodes, inflight=inflight,
            max_inflight=self.config.max_jobs if self.available else inflight,
            est_wait_s=max(0, inflight - cores) * self._mean_run_s / max(1, cores))


def job_name(site: str, attempt_id: str) -> str:
    """The scheduler's job name of an attempt (starts with a letter, as PBS requires)."""
    return f"ms-{site}-{attempt_id}"


def with_directives(script: str, lines: Sequence[str]) -> str:
    """Put the directives right after the script's ``#!`` line (where qsub reads them)."""
    shebang, _, rest = script.partition("\n")
    return "\n".join([shebang, *lines, rest])


def lost(job: BatchJob, detail: str, *, charge: bool = True) -> AttemptUpdate:
    """The attempt is lost (the site dropped it); its task may run again."""
    return AttemptUpdate(attempt_id=job.attempt_id, native_id=job.job_id,
                         outcome=TaskOutcome(lost=True, charge_retry=charge, detail=detail))
