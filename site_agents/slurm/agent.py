"""The Slurm site agent, batch mode: one Slurm job per attempt, one squeue call per poll.

Each attempt gets a directory in the site's shared filesystem (``<shared_dir>/.metasched/attempts/<id>``)
holding the pickled attempt, the job script, the job's stdout/stderr and, when the worker is done, its
outcome file. The outcome file is the source of truth for how an attempt ended; squeue says whether the
job is still queued or running, and why a job that left no outcome died (TIMEOUT, NODE_FAIL, ...). A job
that disappears from squeue without an outcome becomes VANISHED after ``vanish_after_polls`` polls and
is reported lost (the scheduler resubmits it per the retry policy).
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path

from metasched.checkpoint.cooperative import latest
from metasched.checkpoint.criu_job import CHECKPOINT_ARCHIVE, CHECKPOINT_NOW, CHECKPOINT_RECORD
from metasched.checkpoint.criu_job import TASK_FILE as CRIU_TASK_FILE
from metasched.data.objects import DataContext, DataRef, adopt_file, local_path, store_paths
from metasched.data.stores import StoreSpec
from metasched.errors import SiteAgentError
from metasched.records import AttemptId, RemoteFailure, SiteLoad, SiteName, TaskKind, TaskOutcome, TaskSpec
from metasched.worker import (
    WALLTIME_WARNING_FILE,
    read_outcome,
    write_attempt,
)
from site_agents import batch
from site_agents.base import AttemptUpdate, Submission
from site_agents.runner import CommandOutput, CommandRunner
from site_agents.slurm import apptainer, commands, parsers
from site_agents.slurm.config import SlurmSite
from site_agents.slurm.parsers import JobState
from site_agents.staging import stage_worker

log = logging.getLogger(__name__)
_UNREACHABLE = ("Unable to contact slurm controller", "Socket timed out", "Zero Bytes were transmitted",
                "Connection refused", "Transport endpoint")
_OUTCOME_GRACE_POLLS = 3  # a finished job's outcome file may appear a little later on a shared FS
_SACCT_AFTER_POLLS = 2  # a job missing from squeue this many polls is looked up in sacct (with accounting)
_NODE_REFRESH_S = 30.0  # how often sinfo re-reads which nodes take jobs (drained, down, back again)
# A job that vanishes this soon after the controller came back was lost by the controller (a crash
# loses the state saved since), not by the task: it is resubmitted without using up a retry.
_OUTAGE_GRACE_S = 300.0
_SUBMIT_THREADS = 4
# How long one poll waits for squeue. A controller that is down makes every Slurm command retry for
# ~9 s; squeue runs in its own thread so such a site never holds up the scheduler (and the other sites)
# for more than this per step.
_POLL_WAIT_S = 0.25
# A controller whose squeue has not answered for this long gets no new jobs until it answers (sbatch
# would hang just as long, and the outage is not known yet: a stopped controller fails after ~9 s).
_SLOW_S = 3.0
# A site without jobs still runs squeue this often, to notice a dead controller before it is given work.
_IDLE_PROBE_S = 2.0
_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"  # what pickled the functions we submit


@dataclass(slots=True, kw_only=True)
class _Job:
    attempt_id: AttemptId
    spec: TaskSpec
    job_id: str
    directory: Path
    submitted_at: float
    reported_running: bool = False
    stalled_since: float | None = None
    cancelled: bool = False
    finished_polls: int = 0
    missing_polls: int = 0
    data: DataContext | None = None
    last_saved: str = ""  # the last cooperative checkpoint reported


class SlurmAgent:
    """Submits each attempt as a Slurm batch job and tracks all of them with one squeue per poll."""

    def __init__(self, config: SlurmSite) -> None:
        self.config = config
        self.runner = CommandRunner(site=config.name, env={"SLURM_CONF": config.slurm_conf},
                                    timeout_s=config.command_timeout_s, login=config.login)
        self.available = True
        self.unavailable_reason = ""
        self.walltime_warnings: dict[AttemptId, float] = {}
        self._jobs: dict[AttemptId, _Job] = {}
        self._pending_updates: list[AttemptUpdate] = []
        self._last_poll = 0.0
        self._last_refresh = 0.0
        self._answered_again_at = -_OUTAGE_GRACE_S
        self._usable_nodes = 0
        self._accounting: bool | None = config.accounting
        self._total_cores = 0
        self._max_cores = 0
        self._max_memory_mb = 0
        self._nodes = 0
        self._mean_run_s = 0.0
        self._user = ""
        self._pythonpath = ""
        self._pool: ThreadPoolExecutor | None = None
        self._poller = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"squeue-{config.name}")
        self._squeue: Future[CommandOutput] | None = None
        self._squeue_since = 0.0

    @property
    def name(self) -> SiteName:
        """The site this agent serves."""
        return SiteName(self.config.name)

    @property
    def attempts_dir(self) -> Path:
        """Where attempt directories live, in the site's shared filesystem."""
        return batch.attempts_dir(self.config.shared_dir)

    # ------------------------------------------------------------------------------- lifecycle
    def start(self) -> None:
        """Check the site answers, learn its nodes, stage the worker where compute nodes can import it."""
        if not Path(self.config.slurm_conf).is_file():
            raise SiteAgentError(
                f"site {self.config.name}: slurm_conf {self.config.slurm_conf} does not exist.",
                site=self.config.name)
        if not Path(self.config.shared_dir).is_dir():
            raise SiteAgentError(f"site {self.config.name}: shared_dir {self.config.shared_dir} is not a "
                                 "directory.", site=self.config.name)
        self._user = getpass.getuser()
        self._refresh_nodes(required=True)
        self._accounting = self.config.accounting
        if self._accounting is None:
            shown = self.runner.run(commands.show_config_argv())
            self._accounting = shown.ok and parsers.has_slurmdbd_accounting(shown.stdout)
        self.attempts_dir.mkdir(parents=True, exist_ok=True)
        self._pythonpath = self.config.worker_pythonpath or str(stage_worker(self.config.shared_dir))
        self._pool = ThreadPoolExecutor(max_workers=_SUBMIT_THREADS,
                                        thread_name_prefix=f"sbatch-{self.name}")

    def _refresh_nodes(self, *, required: bool = False) -> None:
        self._last_refresh = time.monotonic()
        out = self.runner.run(commands.sinfo_argv(self.config.partition))
        nodes = parsers.parse_sinfo_nodes(out.stdout) if out.ok else []
        if not nodes:
            if required:
                raise SiteAgentError(
                    f"site {self.config.name}: cannot list its nodes ({out.describe()}). Check that the "
                    f"controller in {self.config.slurm_conf} is up and the partition exists.",
                    site=self.config.name, transient=not out.ok)
            return
        usable = sum(n.usable for n in nodes)
        if usable != self._usable_nodes and not required:
            log.warning("site %s: %d of %d nodes take jobs (%s)", self.config.name, usable, len(nodes),
                        ", ".join(f"{n.name} {n.state}" for n in nodes))
        self._usable_nodes = usable
        self._nodes = len(nodes)
        self._total_cores = sum(n.cpus for n in nodes)
        self._max_cores = max(n.cpus for n in nodes)
        self._max_memory_mb = max(n.memory_mb for n in nodes)

    def close(self) -> None:
        """Cancel every job still queued or running."""
        live = [job.job_id for job in self._jobs.values()]
        if live:
            try:
                self.runner.run(commands.scancel_argv(live))
            except SiteAgentError as exc:
                log.warning("could not cancel jobs at %s: %s", self.config.name, exc)
        self._jobs.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        self._poller.shutdown(wait=False, cancel_futures=True)

    # --------------------------------------------------------------------------------- submit
    def submit(self, submissions: Sequence[Submission]) -> None:
        """Write each attempt to the shared filesystem and sbatch it (a few sbatch calls in parallel)."""
        if self._pool is None:
            raise SiteAgentError(f"site {self.config.name}: agent not started.", site=self.config.name)
        results = list(self._pool.map(self._submit_one, submissions))
        for sub, error in zip(submissions, results, strict=True):
            if error is not None:  # the controller did not answer (in time): try again later, at no cost
                self._mark_unavailable(error)
                self._pending_updates.append(AttemptUpdate(attempt_id=sub.attempt_id, outcome=TaskOutcome(
                    lost=True, charge_retry=False, detail=error)))

    def _submit_one(self, sub: Submission) -> str | None:
        directory = self.attempts_dir / sub.attempt_id
        spec = commands.launch_spec(sub.spec)
        script = directory / "job.sh"
        if spec.container is not None:
            self._write_container_job(sub, spec, directory, script)
        elif spec.checkpoint == "criu":
            problem = self._write_criu_job(sub, directory, script)
            if problem is not None:
                self._pending_updates.append(batch.failed(sub.attempt_id, "CheckpointError", problem))
                return None
        elif spec.kind is TaskKind.COMMAND:  # run directly: no Python start-up on the compute node
            directory.mkdir(parents=True, exist_ok=True)
            script.write_text(commands.command_job_script(attempt_id=sub.attempt_id, spec=spec,
                                                          attempt_dir=str(directory)))
        else:
            write_attempt(directory, spec, sub.function, sub.dependency_results, sub.data, sub.restore)
            script.write_text(commands.job_script(
                attempt_id=sub.attempt_id, spec=spec, attempt_dir=str(directory), python=self.config.python,
                pythonpath=self._pythonpath))
        argv = commands.sbatch_argv(
            spec=spec, name=commands.job_name(self.config.name, sub.attempt_id), attempt_dir=str(directory),
            script=str(script), partition=self.config.partition, account=self.config.account,
            qos=self.config.qos, signal_lead_s=self.config.signal_lead_s,
        )
        try:
            out = self.runner.run(argv)
        except SiteAgentError as exc:  # sbatch timed out or cannot run: this attempt only
            return str(exc)
        if not out.ok:
            if _unreachable(out):
                return f"site {self.config.name}: sbatch could not reach the controller ({out.describe()})"
            self._pending_updates.append(batch.failed(sub.attempt_id, "SubmitError",
                                                 f"sbatch refused the job: {out.describe()}"))
            return None
        job_id = parsers.parse_sbatch_parsable(out.stdout)
        self._jobs[sub.attempt_id] = _Job(attempt_id=sub.attempt_id, spec=spec, job_id=job_id,
                                          directory=directory, submitted_at=time.monotonic(), data=sub.data)
        self._pending_updates.append(AttemptUpdate(attempt_id=sub.attempt_id, native_id=job_id))
        return None

    def _write_container_job(self, sub: Submission, spec: TaskSpec, directory: Path, script: Path) -> None:
        """The job of a task with container=: apptainer exec on the node, after checking image and Python."""
        directory.mkdir(parents=True, exist_ok=True)
        bind = [self.config.shared_dir, *store_paths(sub.data)]
        for path in bind:  # apptainer refuses to bind what does not exist (a store nobody wrote to yet)
            Path(path).mkdir(parents=True, exist_ok=True)
        runner = self.config.apptainer
        if spec.kind is TaskKind.COMMAND:
            text = apptainer.command_job_script(attempt_id=sub.attempt_id, spec=spec,
                                                attempt_dir=str(directory), apptainer=runner, bind=bind)
        else:
            write_attempt(directory, spec, sub.function, sub.dependency_results, sub.data, sub.restore)
            text = apptainer.python_job_script(attempt_id=sub.attempt_id, spec=spec,
                                               attempt_dir=str(directory), apptainer=runner, bind=bind,
                                               pythonpath=self._pythonpath, want=_PYTHON)
        script.write_text(text)

    def _write_criu_job(self, sub: Submission, directory: Path, script: Path) -> str | None:
        """task.json and job script of a checkpointable command; a problem message if it cannot run."""
        if self.config.checkpoint_dir is None:
            return f"site {self.config.name} has no checkpoint_dir: it cannot run checkpoint='criu' tasks"
        restore = None
        if sub.restore is not None:
            try:
                restore = local_path(sub.restore)
            except TypeError:
                return (f"site {self.config.name}: checkpoints must be in a file store to be restored; "
                        f"{sub.restore.describe()} is not")
        directory.mkdir(parents=True, exist_ok=True)
        workdir = os.path.join(self.config.checkpoint_dir, sub.spec.task_id)
        task = commands.criu_task(sub.spec, workdir=workdir, criu=self.config.criu, restore=restore,
                                  signal_lead_s=self.config.signal_lead_s)
        (directory / CRIU_TASK_FILE).write_text(json.dumps(task))
        script.write_text(commands.criu_job_script(
            attempt_id=sub.attempt_id, spec=sub.spec, attempt_dir=str(directory), python=self.config.python,
            pythonpath=self._pythonpath))
        return None

    def checkpoint(self, attempt_ids: Sequence[AttemptId], *, stop: bool = True) -> list[AttemptId]:
        """Ask running checkpointable jobs to checkpoint and stop (USR2 to their batch shell).

        With stop=False: take a restart point and go on (CRIU jobs only: a file their wrapper watches).
        """
        jobs = [self._jobs[a] for a in attempt_ids if a in self._jobs and self._jobs[a].spec.checkpoint]
        if not stop:
            jobs = [j for j in jobs if j.spec.checkpoint == "criu"]
            for job in jobs:
                (job.directory / CHECKPOINT_NOW).touch()
            return [j.attempt_id for j in jobs]
        if jobs:
            out = self.runner.run(commands.signal_argv([j.job_id for j in jobs], "USR2"))
            if not out.ok:
                raise SiteAgentError(f"site {self.config.name}: could not signal jobs for a checkpoint: "
                                     f"{out.describe()}", site=self.config.name, transient=True)
        return [j.attempt_id for j in jobs]

    def reattach(self, attempt_id: AttemptId, spec: TaskSpec, native_id: str) -> bool:
        """Track a job an earlier scheduler submitted; the next polls resolve it like any other."""
        directory = self.attempts_dir / attempt_id
        if not directory.is_dir():
            return False
        self._jobs[attempt_id] = _Job(attempt_id=attempt_id, spec=commands.launch_spec(spec),
                                      job_id=native_id, directory=directory, submitted_at=time.monotonic())
        return True

    # ----------------------------------------------------------------------------------- poll
    def poll(self) -> list[AttemptUpdate]:
        """At most once per poll_interval: one squeue call, then outcome files for finished jobs.

        squeue runs in the agent's own thread and a poll waits for it at most _POLL_WAIT_S: an
        unreachable controller (whose commands retry for ~9 s) slows no other site. A site without jobs
        is still probed every _IDLE_PROBE_S (an idle site whose controller died gets no new jobs, instead
        of finding out with sbatch calls that time out), and an unavailable one every poll_interval, so
        it gets work again once it answers.
        """
        updates, self._pending_updates = self._pending_updates, []
        now = time.monotonic()
        if self._squeue is None:
            busy = bool(self._jobs) or not self.available
            interval = self.config.poll_interval if busy else max(self.config.poll_interval, _IDLE_PROBE_S)
            if now - self._last_poll < interval:
                return updates
            self._last_poll = self._squeue_since = now
            self._squeue = self._poller.submit(self.runner.run, commands.squeue_argv(self._user))
        try:
            out = self._squeue.result(timeout=_POLL_WAIT_S)
        except FutureTimeout:
            return updates  # a slow or unreachable controller: look again at the next step
        except SiteAgentError as exc:
            self._squeue = None
            self._mark_unavailable(str(exc))
            return updates
        self._squeue = None
        if not out.ok:
            self._mark_unavailable(out.describe())
            return updates
        answered_again = not self.available
        if answered_again:
            log.warning("site %s answers again", self.config.name)
            self._answered_again_at = now
        self.available, self.unavailable_reason = True, ""
        listed = parsers.parse_squeue(out.stdout)
        statuses = {job.job_id: status for job in self._jobs.values()
                    if (status := self._ours(job, listed.get(job.job_id))) is not None}
        accounted = self._accounted([job for job in self._jobs.values() if job.job_id not in statuses
                                     and job.missing_polls + 1 >= _SACCT_AFTER_POLLS])
        never_start: list[str] = []
        for job in list(self._jobs.values()):
            update = self._check(job, statuses.get(job.job_id), accounted.get(job.job_id), never_start)
            if update is not None:
                updates.append(update)
                if update.outcome is not None:
                    del self._jobs[job.attempt_id]
        if never_start:
            self.runner.run(commands.scancel_argv(never_start))
        if answered_again or time.monotonic() - self._last_refresh >= _NODE_REFRESH_S:
            self._refresh_nodes()
        return updates

    def _ours(self, job: _Job, status: parsers.JobStatus | None) -> parsers.JobStatus | None:
        """The status squeue lists under the job's id, unless it names another job.

        A controller that lost its state (a crash) gives our job's id to another.
        """
        if status is not None and status.name and status.name != commands.job_name(self.config.name,
                                                                                   job.attempt_id):
            return None
        return status

    def _check(self, job: _Job, status: parsers.JobStatus | None, accounted: parsers.JobStatus | None,
               never_start: list[str]) -> AttemptUpdate | None:
        warning = job.directory / WALLTIME_WARNING_FILE
        if job.attempt_id not in self.walltime_warnings and warning.exists():
            self.walltime_warnings[job.attempt_id] = time.time()
        outcome = self._read_outcome(job)
        if outcome is None and job.spec.checkpoint == "criu":
            point = self._restart_point(job)
            if point is not None:
                return AttemptUpdate(attempt_id=job.attempt_id, checkpoint=point, native_id=job.job_id)
        if outcome is None and job.spec.checkpoint == "cooperative":
            saved = latest(job.directory)
            if saved is not None and saved.object_id != job.last_saved:
                job.last_saved = saved.object_id
                return AttemptUpdate(attempt_id=job.attempt_id, checkpoint=saved, native_id=job.job_id)
        if outcome is not None:
            run_s = time.monotonic() - job.submitted_at
            self._mean_run_s += 0.2 * (run_s - self._mean_run_s)
            return AttemptUpdate(attempt_id=job.attempt_id, outcome=outcome, native_id=job.job_id)
        if status is None:
            job.missing_polls += 1
            if accounted is not None and accounted.state.finished:
                return self._explain_finished_without_outcome(job, accounted)
            if job.missing_polls >= self.config.vanish_after_polls:
                return self._lost_by_site(job, f"VANISHED: job {job.job_id} left squeue without an outcome "
                                               "file")
            return None
        job.missing_polls = 0
        stalled = self._stalled(job, status)
        if stalled is not None:
            never_start.append(job.job_id)
            return stalled
        if status.state is JobState.QUEUED and status.reason in parsers.NEVER_STARTS:
            never_start.append(job.job_id)
            return batch.failed(job.attempt_id, "SubmitError",
                           f"job {job.job_id} can never start at site {self.config.name} "
                           f"(Slurm reason {status.reason}); lower the request or pick another partition",
                           native_id=job.job_id)
        if status.state is JobState.RUNNING and not job.reported_running:
            job.reported_running = True
            return AttemptUpdate(attempt_id=job.attempt_id, running=True, native_id=job.job_id)
        if not status.state.finished:
            return None
        job.finished_polls += 1
        if job.finished_polls < _OUTCOME_GRACE_POLLS:
            return None
        return self._explain_finished_without_outcome(job, status)

    def _accounted(self, jobs: Sequence[_Job]) -> dict[str, parsers.JobStatus]:
        """What slurmdbd recorded of jobs squeue no longer lists, in one sacct call.

        Nothing without accounting; a record under another job's name (an id reused after a lost state)
        is left out.
        """
        if not self._accounting or not jobs:
            return {}
        out = self.runner.run(commands.sacct_argv([job.job_id for job in jobs]))
        records = parsers.parse_sacct(out.stdout) if out.ok else {}
        return {job.job_id: record for job in jobs if (record := records.get(job.job_id)) is not None
                and record.name == commands.job_name(self.config.name, job.attempt_id)}

    def _stalled(self, job: _Job, status: parsers.JobStatus) -> AttemptUpdate | None:
        """Withdraw a job that waited stall_after_s on unusable nodes, so the task can run elsewhere."""
        if not status.stalled:
            job.stalled_since = None
            return None
        now = time.monotonic()
        if job.stalled_since is None:
            job.stalled_since = now
            self._last_refresh = -_NODE_REFRESH_S  # the site likely lost its nodes: re-read them now
        if now - job.stalled_since < self.config.stall_after_s:
            return None
        waited = now - job.stalled_since
        return _lost(job, f"job {job.job_id} waited {waited:.0f} s at site {self.config.name} on unusable "
                          f"nodes (Slurm reason: {status.reason}); withdrawn to run elsewhere", charge=False)

    def _read_outcome(self, job: _Job) -> TaskOutcome | None:
        """The attempt's own record of how it ended: a worker's outcome, an exit status, a checkpoint."""
        if job.spec.container is not None:
            try:
                check = (job.directory / apptainer.CHECK_FILE).read_text()
            except FileNotFoundError:
                pass
            else:
                return TaskOutcome(failure=RemoteFailure(
                    error_type="ContainerError", traceback="",
                    message=apptainer.check_problem(check, job.spec, self.config.name, _PYTHON)))
        if job.spec.kind is not TaskKind.COMMAND:
            return read_outcome(job.directory)
        if job.spec.checkpoint == "criu":
            checkpointed = self._checkpoint_outcome(job)
            if checkpointed is not None:
                return checkpointed
        return batch.command_outcome_in(job.directory, job.spec, job.data)

    def _restart_point(self, job: _Job) -> DataRef | None:
        """The newest restart point a running CRIU job took (older unreported ones are dropped)."""
        notes = sorted(job.directory.glob("restart-*.json"), key=lambda p: int(p.stem.split("-")[1]))
        if not notes:
            return None
        for old in notes[:-1]:
            (job.directory / json.loads(old.read_text())["archive"]).unlink(missing_ok=True)
            old.unlink()
        record = json.loads(notes[-1].read_text())
        ref = adopt_file(str(job.directory / record["archive"]), self._store_of(job),
                         object_id=f"{job.attempt_id}.{notes[-1].stem}", size=int(record["size"]),
                         digest=str(record["digest"]))
        notes[-1].unlink()
        return ref

    def _store_of(self, job: _Job) -> StoreSpec:
        store = job.data.store if job.data is not None else None
        return store or self.config.store or self.config.default_store()

    def _checkpoint_outcome(self, job: _Job) -> TaskOutcome | None:
        """A checkpoint the job's wrapper recorded, adopted into the site's store; or why it failed."""
        record_file = job.directory / CHECKPOINT_RECORD
        if record_file.exists():
            record = json.loads(record_file.read_text())
            ref = adopt_file(str(job.directory / CHECKPOINT_ARCHIVE), self._store_of(job),
                             object_id=f"{job.attempt_id}.ckpt", size=int(record["size"]),
                             digest=str(record["digest"]))
            record_file.rename(job.directory / (CHECKPOINT_RECORD + ".adopted"))
            detail = (f"{record['reason']} checkpoint at {self.config.name}: {ref.size / 1e6:.1f} MB, dump "
                      f"{float(record['dump_s']):.2f} s")
            return TaskOutcome(checkpoint=ref, checkpoint_reason=str(record["reason"]), detail=detail)
        error = job.directory / "criu-error"
        if error.exists():
            return TaskOutcome(failure=RemoteFailure(
                error_type="CheckpointError", message=f"job {job.job_id} at site {self.config.name}: "
                f"{error.read_text().strip()}", traceback=batch.tail(job.directory / "job.err")))
        return None

    def _explain_finished_without_outcome(self, job: _Job, status: parsers.JobStatus) -> AttemptUpdate:
        err = batch.tail(job.directory / "job.err")
        where = f"job {job.job_id} at site {self.config.name}"
        if status.state is JobState.TIMEOUT:
            return AttemptUpdate(attempt_id=job.attempt_id, native_id=job.job_id, outcome=TaskOutcome(
                failure=RemoteFailure(error_type="WalltimeExceeded", traceback=err, walltime_exceeded=True,
                                      message=f"{where} hit its Slurm time limit")))
        if status.state is JobState.CANCELLED:
            if job.cancelled:
                return AttemptUpdate(attempt_id=job.attempt_id, native_id=job.job_id,
                                     outcome=TaskOutcome(cancelled=True, detail=f"{where} cancelled"))
            return self._lost_by_site(job, f"{where} was cancelled outside metasched ({status.native_state})")
        if status.state is JobState.NODE_FAIL:
            return _lost(job, f"{where}: node failure", charge=True)
        return batch.failed(job.attempt_id, f"Slurm{status.state.value.title()}",
                       f"{where} ended {status.native_state} ({status.reason}) without a result; its stderr "
                       f"is below and in {job.directory}/job.err", traceback=err, native_id=job.job_id)

    def _lost_by_site(self, job: _Job, detail: str) -> AttemptUpdate:
        """A job the site dropped: charged to the task, unless the controller just came back from an outage.

        A restarted slurmctld forgets, cancels or duplicates the jobs of the state it lost.
        """
        if time.monotonic() - self._answered_again_at < _OUTAGE_GRACE_S:
            return _lost(job, f"{detail}, after the controller was unreachable", charge=False)
        return _lost(job, detail, charge=True)

    def _mark_unavailable(self, reason: str) -> None:
        if self.available:
            log.warning("site %s unavailable: %s", self.config.name, reason)
        self.available, self.unavailable_reason = False, reason

    # ------------------------------------------------------------------------------ cancel/load
    def cancel(self, attempt_ids: Sequence[AttemptId]) -> None:
        """Scancel the jobs of these attempts in one call."""
        jobs = [self._jobs[a] for a in attempt_ids if a in self._jobs]
        for job in jobs:
            job.cancelled = True
        if jobs:
            self.runner.run(commands.scancel_argv([j.job_id for j in jobs]))

    def load(self) -> SiteLoad:
        """Capacity from sinfo; no free slots while the controller does not answer (or is slow to)."""
        inflight = len(self._jobs)
        slow = self._squeue is not None and time.monotonic() - self._squeue_since > _SLOW_S
        accepting = self.available and self._usable_nodes and not slow
        backlog = max(0, inflight - self._total_cores)
        return SiteLoad(
            site=self.name,
            total_cores=self._total_cores,
            max_cores_per_task=self._max_cores,
            max_memory_mb=self._max_memory_mb,
            gpus=self.config.gpus_per_node,
            nodes=self._nodes,
            inflight=inflight,
            max_inflight=self.config.max_jobs if accepting else inflight,
            est_wait_s=backlog * self._mean_run_s / max(1, self._total_cores),
            capabilities=_capabilities(self.config),
        )


def _capabilities(config: SlurmSite) -> frozenset[str]:
    """Cooperative checkpoints work on any site; CRIU needs a checkpoint_dir (and CRIU on the nodes)."""
    return frozenset({"checkpoint:cooperative", *(["checkpoint:criu"] if config.checkpoint_dir else []),
                      *(f"container:{runtime}" for runtime in config.container_runtimes)})


def _unreachable(out: CommandOutput) -> bool:
    return any(marker in out.stderr for marker in _UNREACHABLE)


def _lost(job: _Job, detail: str, *, charge: bool) -> AttemptUpdate:
    return AttemptUpdate(attempt_id=job.attempt_id, native_id=job.job_id,
                         outcome=TaskOutcome(lost=True, charge_retry=charge, detail=detail))
