"""The batch agent: one job per attempt at any batch scheduler, through its dialect.

Attempts are job scripts in the site's shared filesystem (``metasched.attempt_dir``), written by a
launcher and submitted a few at a time on the submitter's own thread (``submitting``): the scheduler's
step never waits for a server to take jobs. Each poll asks the scheduler once about every job, on the
agent's own thread: a server that does not answer (Slurm commands retry for ~9 s) never holds up the
scheduler and its other sites for more than ``POLL_WAIT_S`` per step, and a site whose status has not
answered for ``SLOW_S`` gets no new jobs. A site with no jobs is probed every ``IDLE_PROBE_S`` (listing
its nodes), so a dead server is noticed before work is sent there. The attempt's own record of how it
ended comes first; the scheduler's word (its listing, then its accounting) only explains a job that
ended without one (``explain``).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from metasched.attempt_dir import AttemptDir
from metasched.errors import SiteAgentError
from metasched.outcomes import Failed, LossReason, Lost
from metasched.records import AttemptId, Capability, Resources, SiteLoad, SiteName, TaskSpec
from metasched.sites.base import AttemptUpdate, Submission
from site_agents.batch import explain
from site_agents.batch.config import BatchSite
from site_agents.batch.control import JobControl
from site_agents.batch.dialect import Capacity, Dialect, JobState, JobStatus, can_signal
from site_agents.batch.forecast import PROBE_SHAPES, QueueWait
from site_agents.batch.jobs import BatchJob
from site_agents.batch.launchers import Launchers, LaunchRefused, site_launchers
from site_agents.batch.rounds import (
    Answer,
    Deletions,
    Listing,
    ask_starts,
    jobs_by_name,
    list_queue,
    start_questions,
    status_round,
)
from site_agents.batch.submitting import Submitter, job_name, job_store
from site_agents.batch.transport import transport_for, worker_path

log = logging.getLogger(__name__)

POLL_WAIT_S = 0.25  # how long one poll waits for the status command
# A status round unanswered this long (3 poll intervals, at least SLOW_MIN_S, at most SLOW_S): no new jobs
# until it answers. A server that is shutting down may accept connections and answer none for a while.
SLOW_S = 3.0
SLOW_MIN_S = 1.0
IDLE_PROBE_S = 2.0  # a site without jobs is still probed this often
NODES_REFRESH_S = 30.0  # how often the nodes (down, drained, back) are read again
ASK_TIMEOUT_S = 3.0  # how long a new shape's expected start may hold up the scheduler's step
QUEUE_REFRESH_S = 10.0  # how often every user's queue is read (for the wait forecast), where the dialect can
OUTCOME_GRACE_POLLS = 3  # a finished job's record may appear a little later on a shared filesystem


class BatchAgent(JobControl):
    """Submits each attempt as a batch job and tracks them all with one status call per poll."""

    def __init__(self, config: BatchSite, dialect: Dialect, *, env: Mapping[str, str] | None = None) -> None:
        self.config = config
        self.dialect = dialect
        self.transport = transport_for(config, {**config.environment, **(env or {})}, dialect.give_up_on)
        self.runner = self.transport.runner
        self.available = True
        self.unavailable_reason = ""
        self.user = ""
        self.via_group = False  # the site's user is another, who writes attempt dirs through their group
        self.pythonpath = ""  # where the site's nodes import metasched's worker from (known once started)
        self._named: dict[str, str] | None = None  # job ids by name, listed once for re-attaching
        self._jobs: dict[AttemptId, BatchJob] = {}
        self._pending: list[AttemptUpdate] = []
        self._capacity = Capacity(total_cores=0, max_cores_per_node=0, nodes=0, usable_nodes=0)
        self.launchers: Launchers | None = None  # how attempts start on the nodes (known once started)
        self._capabilities: frozenset[Capability] = frozenset()
        self._answered_again_at = -explain.OUTAGE_GRACE_S
        self._last_poll = 0.0
        self._last_nodes = 0.0
        self._last_queue = -QUEUE_REFRESH_S
        self.waits = QueueWait()
        self._submitter = Submitter(config, dialect, self.transport)
        self._poller = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"status-{config.name}")
        self._lister = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"queue-{config.name}")
        self._listing: Future[Listing] | None = None
        self._round: Future[Answer] | None = None
        self._round_since = 0.0

    @property
    def name(self) -> SiteName:
        """The site this agent serves."""
        return SiteName(self.config.name)

    # ------------------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Check the site answers, learn who we are there and its nodes, stage the worker."""
        problem = self.transport.shared_dir_problem()
        if problem:
            raise SiteAgentError(f"site {self.config.name}: {problem}.", site=self.config.name)
        self.dialect.prepare(self.runner.run)
        who = self.transport.site_user()
        self.user, self.via_group = who.name, who.for_group
        listed = self.runner.run(self.dialect.nodes_argv())
        capacity = self.dialect.parse_nodes(listed)
        if capacity is None or capacity.usable_nodes == 0:
            said = capacity.detail if capacity is not None else listed.describe()
            raise SiteAgentError(f"site {self.config.name}: no node can take jobs ({said}). Check that the "
                                 f"{self.dialect.name} server is up and the login and environment reach it.",
                                 site=self.config.name, transient=capacity is None)
        self._capacity, self._last_nodes = capacity, time.monotonic()
        self._last_queue = time.monotonic()
        self._take_listing(list_queue(self.dialect, self.runner.run))
        self.pythonpath = worker_path(self.config, self.transport)
        self.launchers = site_launchers(self.config, self.dialect, self.pythonpath)
        self._capabilities = self.launchers.offered(can_signal(self.dialect))

    def close(self, *, delete: bool = True) -> None:
        """Delete every job still queued or running (not with `delete` False: another agent tracks them)."""
        self.settle()
        if delete and (unsure := self._submitter.delete_unsure(self.user)):  # sbatch timed out, job queued
            log.warning("site %s: jobs %s may be left: their submissions were never answered",
                        self.config.name, ", ".join(unsure))
        live = [job.job_id for job in self._jobs.values()] if delete else []
        if live:
            try:
                self.runner.run(self.dialect.delete_argv(live))
            except SiteAgentError as exc:
                log.warning("could not delete jobs at %s: %s", self.config.name, exc)
        self._jobs.clear()
        self._submitter.close()
        self._poller.shutdown(wait=False, cancel_futures=True)
        self._lister.shutdown(wait=False, cancel_futures=True)
        self.transport.close()

    # ------------------------------------------------------------------------------ submit
    def submit(self, submissions: Sequence[Submission], *, wait: bool = False) -> None:
        """Hand attempts to the submitter's thread; the answers come with the next polls (`wait`: now)."""
        if self.launchers is None:
            raise SiteAgentError(f"site {self.config.name}: agent not started.", site=self.config.name)
        self._submitter.send(submissions, self.launchers, for_group=self.via_group,
                             memory_tracked=not self._capacity.memory_untracked)
        if wait:
            self.settle()

    def settle(self, *, wait: bool = True) -> None:
        """Take the site's answers to the submissions handed over (with `wait`: to all, once it has)."""
        if not (arrived := self._submitter.arrived(wait=wait)):
            return
        load = self.load()  # without these
        load.submit_s = 0.0  # their jobs are queued: the waits predicted from now on
        for sent in arrived:
            if (job := sent.job) is not None:
                job.predicted_wait_s, job.forecast_wait_s = self.waits.submitted(load, job.spec.resources)
                self._jobs[job.attempt_id] = job
            elif isinstance(lost := sent.update.outcome, Lost) and lost.reason is LossReason.SITE_UNAVAILABLE:
                self.mark_unavailable(lost.detail)
            self._pending.append(sent.update)
        self.cancel([sent.sub.attempt_id for sent in arrived if sent.withdrawn and sent.job is not None])

    def job_id(self, attempt_id: AttemptId) -> str:
        """The job id of an attempt in flight ("" if none)."""
        return job.job_id if (job := self._jobs.get(attempt_id)) else ""

    # ------------------------------------------------------------------------------ poll
    def poll(self) -> list[AttemptUpdate]:
        """At most once per poll_interval: the status round's answer, then each job's record and status."""
        self.settle(wait=False)
        updates, self._pending = self._pending, []
        now = time.monotonic()
        if self._round is None:
            busy = bool(self._jobs) or not self.available
            interval = self.config.poll_interval if busy else max(self.config.poll_interval, IDLE_PROBE_S)
            if now - self._last_poll < interval:
                return updates
            self._last_poll = self._round_since = now
            nodes_due = not self.available or now - self._last_nodes >= NODES_REFRESH_S
            listing_due = now - self._last_queue >= QUEUE_REFRESH_S or self.waits.recheck_due(now)
            if self._listing is None and listing_due:  # (sooner: an expected start to confirm)
                self._last_queue = now
                questions = start_questions(self.dialect, self.waits.probe_shapes(), self._capacity)
                self._listing = self._lister.submit(list_queue, self.dialect, self.runner.run, questions)
            asked = [(j.job_id, j.missing_polls) for j in self._jobs.values()]
            self._round = self._poller.submit(self._status_round, asked, nodes_due,
                                              [j.attempt for j in self._jobs.values()])
        try:
            answer = self._round.result(timeout=POLL_WAIT_S)
        except FutureTimeout:
            return updates  # a slow or unreachable server: look again at the next step
        except SiteAgentError as exc:
            self._round = None
            self.mark_unavailable(str(exc))
            return updates
        self._round = None
        if answer.statuses is None:
            self.mark_unavailable(answer.problem)
            return updates
        if not self.available:
            log.warning("site %s answers again", self.config.name)
            self._answered_again_at = now
        self.available, self.unavailable_reason = True, ""
        self._submitter.heard(self.user)
        if (capacity := answer.capacity) is not None:
            if capacity.usable_nodes != self._capacity.usable_nodes:
                log.warning("site %s: %d of %d nodes take jobs %s", self.config.name, capacity.usable_nodes,
                            capacity.nodes, capacity.detail)
            self._capacity, self._last_nodes = capacity, now
        if self._listing is not None and self._listing.done():
            if not self._listing.exception():
                self._take_listing(self._listing.result())
            self._listing = None
        delete = Deletions()
        for job in list(self._jobs.values()):
            status = self._ours(job, answer.statuses.get(self.dialect.status_key(job.job_id)))
            update = self._check(job, status, answer, delete)
            if update is not None and isinstance(failed := update.outcome, Failed):  # say where its output is
                update = dataclasses.replace(update, outcome=failed.with_files(job.attempt.output_files()))
            if update is not None:
                updates.append(update)
                if update.outcome is not None:
                    del self._jobs[job.attempt_id]
        delete.run(self.dialect, self.runner.run, self.user)
        return updates

    def _status_round(self, asked: list[tuple[str, int]], nodes_due: bool,
                      attempts: list[AttemptDir]) -> Answer:
        """On the poller thread: the scheduler's word and what the jobs wrote, in one round trip."""
        return status_round(self.dialect, self.runner.run, self.user, asked, nodes_due,
                            status_run=lambda argv: self.transport.run_and_fetch(argv, attempts))

    def _ours(self, job: BatchJob, status: JobStatus | None) -> JobStatus | None:
        """The status listed under the job's id, unless it names another job.

        A server that lost its state gives our job's id to another.
        """
        if status is not None and status.name and status.name != job_name(self.config.name, job.attempt_id):
            return None
        return status

    def _check(self, job: BatchJob, status: JobStatus | None, answer: Answer,
               delete: Deletions) -> AttemptUpdate | None:
        if job.undeleted:  # cancelled while the site did not answer
            job.undeleted = False
            delete.add(job.job_id, job_name(self.config.name, job.attempt_id), listed=status is not None)
        news = job.news(status.run_count if status is not None else None)
        for line in news:
            log.warning("site %s: %s", self.config.name, line)
        try:
            outcome = job.launcher.outcome(job)
        except Exception as exc:  # what the node left cannot be read: this attempt's problem, not the loop's
            outcome = job.unreadable(self.config.name, exc, give_up_after=OUTCOME_GRACE_POLLS)
            if outcome is None:
                return None
            if status is not None and status.state is not JobState.FINISHED:  # not beside the retry
                delete.ids.append(job.job_id)
        else:
            job.unread = 0
        if outcome is not None:
            self.waits.ended(time.monotonic() - (job.started_at or job.submitted_at))
            return AttemptUpdate(attempt_id=job.attempt_id, outcome=outcome, native_id=job.job_id,
                                 note="; ".join(news))
        update = self._explain(job, status, answer, delete)
        unread: list[str] = []
        saved = None
        if update is None or update.outcome is None:
            saved, unread = job.restart_point(self.config.name)
        note = "; ".join(news + unread)
        if saved is None and not note:
            return update
        return dataclasses.replace(update or AttemptUpdate(attempt_id=job.attempt_id, native_id=job.job_id),
                                   checkpoint=saved, note=note)

    def _explain(self, job: BatchJob, status: JobStatus | None, answer: Answer,
                 delete: Deletions) -> AttemptUpdate | None:
        """What the scheduler's word means for a job that has left no record (yet)."""
        site, now = self.config.name, time.monotonic()
        after_outage = now - self._answered_again_at < explain.OUTAGE_GRACE_S
        if status is None:
            job.missing_polls += 1
            accounted = self._ours(job, answer.accounted.get(job.job_id))
            if accounted is not None and accounted.state is JobState.FINISHED:
                return explain.ended(job, accounted, site, ran_s=job.ran_s(now),
                                     after_outage=after_outage)
            if job.missing_polls >= self.config.vanish_after_polls:
                # By its unique name, not its id: the server may have given the id to another job. A lost
                # job must not keep running beside its task's next attempt.
                delete.names.append(job_name(self.config.name, job.attempt_id))
                return explain.vanished(job, site, polls=job.missing_polls, after_outage=after_outage)
            return None
        job.missing_polls = 0
        if status.state is not JobState.STALLED:
            job.stalled_since = None
        match status.state:
            case JobState.STALLED:
                job.stalled_since = job.stalled_since or now
                self._last_nodes = -NODES_REFRESH_S  # the site likely lost its nodes: read them again now
                if now - job.stalled_since < self.config.stall_after_s:
                    return None
                delete.ids.append(job.job_id)
                return explain.stalled(job, status, site, now - job.stalled_since)
            case JobState.HELD:
                delete.ids.append(job.job_id)
                return explain.held(job, status, site, answer.hold_reasons.get(status.job_id, ""))
            case JobState.RUNNING if job.started_at is None:
                job.started_at = now
                self.waits.started(job.forecast_wait_s, now - job.submitted_at, job.spec.resources)
                return AttemptUpdate(attempt_id=job.attempt_id, running=True, native_id=job.job_id)
            case JobState.FINISHED:
                job.finished_polls += 1
                if job.finished_polls < OUTCOME_GRACE_POLLS:
                    return None
                return explain.ended(job, status, site, ran_s=job.ran_s(now), after_outage=after_outage)
        return None

    def mark_unavailable(self, reason: str) -> None:
        """No new work until the server answers again."""
        if self.available:
            log.warning("site %s unavailable: %s", self.config.name, reason)
        self.available, self.unavailable_reason = False, reason

    # ------------------------------------------------------------------------------ reattach
    def reattach(self, attempt_id: AttemptId, spec: TaskSpec, native_id: str) -> bool:
        """Track a job an earlier scheduler submitted; the next polls resolve it like any other.

        Without its id (that scheduler stopped between the submit call and journaling its answer), the job
        is found by its unique name, or by the outcome it left; one that never reached the site is not.
        """
        attempt = self.transport.attempt(attempt_id)
        if not attempt.exists():  # a site with its own filesystem, resumed on another machine
            self.transport.restore(attempt)
        if not attempt.exists() or self.launchers is None:
            return False
        try:
            launcher = self.launchers.for_(spec)
        except LaunchRefused:  # the site no longer runs such tasks (its configuration changed)
            return False
        if not native_id:
            if self._named is None:  # one listing for every attempt re-attached by name
                self._named = jobs_by_name(self.dialect, self.runner.run, self.user)
            native_id = (self._named or {}).get(job_name(self.config.name, attempt_id), "")
        job = BatchJob(attempt_id=attempt_id, spec=spec, job_id=native_id, attempt=attempt, launcher=launcher,
                       store=job_store(self.config, None), submitted_at=time.monotonic(),
                       restoring=attempt.restores())
        try:
            outcome = None if native_id else launcher.outcome(job)
        except Exception as exc:  # a resumed campaign is not stopped by one attempt's record
            outcome = job.unreadable(self.config.name, exc, give_up_after=1)
        if outcome is not None:  # it ended, and has already left the scheduler's listing
            self._pending.append(AttemptUpdate(attempt_id=attempt_id, outcome=outcome))
        elif native_id:
            self._jobs[attempt_id] = job
        return bool(native_id) or outcome is not None

    def expect(self, shapes: Sequence[Resources]) -> None:
        """Shapes of the campaign's tasks: the scheduler is asked when such a job would start.

        At once for a new shape (before its tasks are placed: one command per new shape), then with every
        whole-queue listing.
        """
        new = [shape for shape in shapes if shape not in self.waits.shapes]
        for shape in shapes:
            self.waits.seen(shape)
        questions = start_questions(self.dialect, new[-PROBE_SHAPES:], self._capacity)
        if not questions or not self.available:
            return
        asked = time.monotonic()
        try:  # the scheduler's own step waits for this: a server slow to answer is asked at the next listing
            starts = ask_starts(self.dialect, lambda argv: self.runner.run(argv, timeout_s=ASK_TIMEOUT_S),
                                questions)
        except SiteAgentError as exc:
            log.info("site %s: no expected start for new task shapes yet (%s)", self.config.name, exc)
            return
        self.waits.answered(starts, at=asked)

    def _take_listing(self, listing: Listing) -> None:
        if listing.jobs is not None:
            self.waits.listed(listing.jobs, usable_cores=self._capacity.total_cores, ours=self.user)
        self.waits.answered(listing.starts, at=self._last_queue)

    # ------------------------------------------------------------------------------ load
    def load(self) -> SiteLoad:
        """Capacity as last listed, the wait as forecast from the whole queue (``self.waits``).

        No free room while the server does not answer (or is slow to); room for the submitter's ``window``.
        """
        inflight = len(self._jobs) + self._submitter.in_flight
        capacity = self._capacity
        patience = min(SLOW_S, max(SLOW_MIN_S, 3 * self.config.poll_interval))
        slow = self._round is not None and time.monotonic() - self._round_since > patience
        silent = bool(self._submitter.silent)  # a submission left unanswered since the last answer
        current = self.available and not slow and not silent
        accepting = current and capacity.usable_nodes > 0
        unanswered = None if self.available else self.unavailable_reason
        problem = "" if accepting else explain.not_taking_work(unanswered, slow=slow, silent=silent,
                                                               detail=capacity.detail)
        return SiteLoad(
            site=self.name, total_cores=capacity.total_cores, max_cores_per_task=capacity.max_cores_per_node,
            max_memory_mb=capacity.max_memory_mb, gpus=self.config.gpus_per_node, nodes=capacity.nodes,
            inflight=inflight, max_inflight=self.config.max_jobs if accepting else inflight,
            intake=len(self._jobs) + self._submitter.window, submit_s=self._submitter.submit_s,
            est_wait_s=self.waits.est_wait_s, open_cores=self.waits.open_cores(capacity.total_cores),
            cycle_s=self.waits.cycle_s, learns=True, learned_s=self.waits.learned_s, accepting=accepting,
            problem=problem,
            capabilities=self._capabilities, reports_start=True, status_current=current,
            shape_waits=self.waits.shape_waits(), shape_starts=self.waits.shape_starts(time.monotonic()))

    @property
    def capacity(self) -> Capacity:
        """The site's nodes as last listed."""
        return self._capacity
