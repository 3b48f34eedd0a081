"""Writing attempts and submitting their jobs: the batch agent's outgoing half.

A batch of submissions is handed to the submitter's own thread (``send``) and the agent takes the site's
answers back at its next polls (``arrived``), each as soon as it came: the scheduler's step never waits
for a server to take jobs (a busy controller's sbatch can take seconds, a stopped one's ~9 s), so one site
slow to take its jobs holds back no other site's results. On that thread each attempt's directory and job
script are written (``AttemptDir.here``), then every directory of the batch goes to the site in one
``Transport.send`` (nothing to do on a shared filesystem), then the jobs are submitted a few at a time
(each submission is a round trip to the server), a batch's beside the one before.

The agent takes no more than its ``window`` on the way at once: ``SUBMIT_AHEAD_S`` of submitting at the
pace the site has kept (one per thread until it has answered), so that work a slow site cannot queue
yet stays with the scheduler, free to go to another site; the pace (``submit_s``) is also part of the
site's predicted wait. Once the server leaves one submission unanswered, no more are sent until it
answers again (``heard``): each would wait as long, batch after batch, while the server is gone. A
submission left unanswered (timed out, or its command killed: a login container being stopped) may
still have queued its job; it is deleted by its unique name at that next answer, so that it cannot run
beside the attempt placed again in its stead.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from queue import SimpleQueue

from metasched.attempt_dir import AttemptDir
from metasched.data.objects import DataContext
from metasched.data.stores import StoreSpec
from metasched.errors import SiteAgentError
from metasched.outcomes import LossReason, Lost, failed
from metasched.records import AttemptId, TaskSpec
from metasched.sites.base import AttemptUpdate, Submission
from site_agents.batch.config import BatchSite
from site_agents.batch.dialect import Dialect, JobRequest, with_header
from site_agents.batch.jobs import BatchJob, Launcher
from site_agents.batch.launchers import Launchers, LaunchRefused, refused, time_limit_s, warning_lead_s
from site_agents.batch.rounds import Deletions
from site_agents.batch.transport import Transport

SUBMIT_THREADS = 4  # submissions in flight at once (each is a round trip to the server)
SUBMIT_AHEAD_S = 1.0  # how much submitting (at the site's recent pace) may be handed over ahead
PACE_WEIGHT = 0.3  # the weight of the latest submission's round trip in the recent one (``submit_s``)
LOGIN_PROBE_S = 10.0  # how long `true` through the login prefix may take after a failed submission

#: A submission's job (None if it did not start) and its update.
Sent = tuple[BatchJob | None, AttemptUpdate]


@dataclass(frozen=True, slots=True, kw_only=True)
class Written:
    """An attempt whose directory and job script are written, not yet submitted."""

    sub: Submission
    request: JobRequest
    launcher: Launcher
    header: list[str]


@dataclass(frozen=True, slots=True)
class Arrived:
    """The site's answer to one submission, as the agent takes it back."""

    sub: Submission
    job: BatchJob | None  # None: it did not start (its update says why)
    update: AttemptUpdate
    withdrawn: bool  # cancelled while on its way: its job is to be deleted


def job_name(site: str, attempt_id: str) -> str:
    """The scheduler's job name of an attempt: unique, and starts with a letter (as PBS requires)."""
    return f"ms-{site}-{attempt_id}"


def job_store(config: BatchSite, data: DataContext | None) -> StoreSpec:
    """Where an attempt's big results and checkpoints go: its campaign's store here, else the site's."""
    return (data.store if data is not None else None) or config.store or config.default_store()


class Submitter:
    """Turns submissions into jobs at one site (see the module docstring)."""

    def __init__(self, config: BatchSite, dialect: Dialect, transport: Transport) -> None:
        self.config, self.dialect, self.transport = config, dialect, transport
        # why the server left a submission unanswered since it last answered ("" if it did not): set by the
        # submitting threads, cleared by the agent's next answered status round (``heard``)
        self.silent = ""
        # handed over, answer not taken, and when (the agent's thread; the oldest first)
        self._on_way: dict[AttemptId, tuple[Submission, float]] = {}
        self._withdrawn: set[AttemptId] = set()  # ... and cancelled meanwhile
        self._pace: float | None = None  # how long the submissions the server answered took, recently
        # put as each comes; an error that is not the site's is put in its stead, and raised by ``arrived``
        self._answers: SimpleQueue[tuple[AttemptId, Sent] | Exception] = SimpleQueue()
        self._unsure: deque[str] = deque()  # job names of submissions left unanswered after they were sent
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"batches-{config.name}")
        self._pool = ThreadPoolExecutor(max_workers=SUBMIT_THREADS,
                                        thread_name_prefix=f"submit-{config.name}")

    def send(self, submissions: Sequence[Submission], launchers: Launchers, *, for_group: bool,
             memory_tracked: bool) -> None:
        """Hand a batch to the submitter's thread (batches go in order); ``arrived`` takes the answers."""
        subs, now = list(submissions), time.monotonic()
        self._on_way.update((sub.attempt_id, (sub, now)) for sub in subs)
        self._thread.submit(self._reporting, self._submit, subs, launchers, for_group=for_group,
                            memory_tracked=memory_tracked)

    @property
    def in_flight(self) -> int:
        """Submissions handed over whose answers the agent has not taken."""
        return len(self._on_way)

    @property
    def submit_s(self) -> float:
        """How long a submission takes here: the answered ones' recent pace (0 before the first answer).

        Longer while the oldest on its way has taken longer already: a site that has not answered yet is
        not taken for a fast one.
        """
        oldest = next(iter(self._on_way.values()), None)
        on_way = time.monotonic() - oldest[1] if oldest is not None else 0.0
        return max(self._pace or 0.0, on_way)

    @property
    def window(self) -> int:
        """How many submissions may be on their way at once (``submission_window`` at the recent pace)."""
        return submission_window(self._pace)

    def withdraw(self, attempt_ids: Sequence[AttemptId]) -> None:
        """Cancelled while on their way: their jobs, if the server takes them, are to be deleted."""
        self._withdrawn.update(a for a in attempt_ids if a in self._on_way)

    def heard(self, user: str) -> None:
        """The server answered: submit again, and delete any job a submission left unanswered had queued."""
        self.silent = ""
        self.delete_unsure(user)

    def delete_unsure(self, user: str) -> list[str]:
        """Delete the jobs submissions left unanswered may have queued all the same; the names still unsure.

        They are `user`'s: where jobs are deleted by id only, they are looked up by name among its jobs.
        """
        deletions = Deletions()
        while self._unsure:
            deletions.names.append(self._unsure.popleft())
        try:
            self._unsure.extend(deletions.run(self.dialect, self.transport.runner.run, user))
        except SiteAgentError:  # not answering after all: at the next answer
            self._unsure.extend(deletions.names)
        return list(self._unsure)

    def arrived(self, *, wait: bool = False) -> list[Arrived]:
        """The answers that came since the last call, each as soon as its own came; with `wait`, every one.

        An exception other than the site's (``SiteAgentError``: the attempts come back lost) is raised.
        """
        taken: list[Arrived] = []
        while (len(taken) < len(self._on_way)) if wait else not self._answers.empty():
            answer = self._answers.get()
            if isinstance(answer, Exception):
                for back in taken:  # taken at the next call
                    self._answers.put((back.sub.attempt_id, (back.job, back.update)))
                raise answer
            attempt_id, (job, update) = answer
            taken.append(Arrived(self._on_way[attempt_id][0], job, update, attempt_id in self._withdrawn))
        for arrived in taken:
            del self._on_way[arrived.sub.attempt_id]
            self._withdrawn.discard(arrived.sub.attempt_id)
        return taken

    def close(self) -> None:
        """Wait for submissions in flight (take their answers with ``arrived(wait=True)`` first)."""
        self._thread.shutdown(wait=True)
        self._pool.shutdown(wait=True)

    def _submit(self, submissions: Sequence[Submission], launchers: Launchers, *, for_group: bool,
                memory_tracked: bool) -> None:
        """On the submitter's thread: write, send and submit; each answer is put as it comes."""
        try:
            written = [self._write(sub, launchers, for_group=for_group, memory_tracked=memory_tracked)
                       for sub in submissions]
        except SiteAgentError as exc:  # none submitted
            for sub in submissions:
                lost = _lost(self.config.name, sub.attempt_id, f"submission failed: {exc}",
                             charge_retry=not exc.transient)
                self._answer(sub.attempt_id, None, lost)
            return
        ready = [w for w in written if isinstance(w, Written)]
        for refusal in (w for w in written if not isinstance(w, Written)):
            self._answer(refusal.attempt_id, None, refusal)
        try:
            if not self.silent:
                self.transport.send([w.request.attempt for w in ready])
        except SiteAgentError as exc:  # none reached the site
            self.silent = str(exc)
            for w in ready:
                self._answer(w.sub.attempt_id, None, self._unanswered(w.sub.attempt_id, str(exc)))
            return
        for w in ready:  # each answered as its submission returns, the next batch's beside these
            self._pool.submit(self._reporting, self._submit_answered, w)

    def _answer(self, attempt_id: AttemptId, job: BatchJob | None, update: AttemptUpdate) -> None:
        self._answers.put((attempt_id, (job, update)))

    def _reporting(self, work: Callable[..., None], *args: object, **kwargs: object) -> None:
        """Run `work` on a thread of the submitter's; an error that is not the site's goes to ``arrived``."""
        try:
            work(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - raised on the agent's thread, where it is seen
            self._answers.put(exc)

    def _write(self, sub: Submission, launchers: Launchers, *, for_group: bool,
               memory_tracked: bool) -> Written | AttemptUpdate:
        """The attempt's directory and job script, or why it cannot start here."""
        attempt = self.transport.attempt(sub.attempt_id).create(for_group=for_group)
        request = self._request(sub.spec, attempt, memory_tracked)
        try:
            launcher = launchers.for_(sub.spec)
            header = self.dialect.header(request)
            attempt.write_script(with_header(launcher.write(sub, attempt), header))
        except (LaunchRefused, ValueError) as exc:
            return refused(sub, exc)
        return Written(sub=sub, request=request, launcher=launcher, header=header)

    def _submit_answered(self, written: Written) -> None:
        self._answer(written.sub.attempt_id, *self._submit_one(written))

    def _submit_one(self, written: Written) -> Sent:
        sub, request = written.sub, written.request
        if self.silent:
            return None, self._unanswered(sub.attempt_id, f"not submitted, the server left another "
                                                          f"submission unanswered: {self.silent}")
        began = time.monotonic()
        try:
            out = self.transport.runner.run(self.dialect.submit_argv(request, written.header))
        except SiteAgentError as exc:  # timed out or cannot run: this attempt only, at no cost
            return None, self._left_unanswered(written, str(exc))
        job_id = self.dialect.parse_submitted(out) if out.ok else None
        if not out.ok and (self.dialect.unreachable(out) or out.killed or self._login_down()):
            return None, self._left_unanswered(written, out.describe())
        took = time.monotonic() - began  # answered (a job id, or a refusal): the site's pace
        pace = self._pace
        self._pace = took if pace is None else pace + PACE_WEIGHT * (took - pace)
        if job_id is None:
            said = " ".join(f"{out.stderr} {out.stdout}".split())  # some print their errors on stdout
            return None, AttemptUpdate(attempt_id=sub.attempt_id, outcome=failed(
                "SubmitError", f"{out.argv[0]} at site {self.config.name} refused task {sub.spec.name!r} "
                f"(exit {out.returncode}): {said[-600:]}"))
        job = BatchJob(attempt_id=sub.attempt_id, spec=sub.spec, job_id=job_id, attempt=request.attempt,
                       launcher=written.launcher, store=job_store(self.config, sub.data),
                       submitted_at=time.monotonic(), data=sub.data, restoring=sub.restore is not None)
        return job, AttemptUpdate(attempt_id=sub.attempt_id, native_id=job_id)

    def _login_down(self) -> bool:
        """Whether the login prefix itself fails (``docker exec`` into a stopped container).

        Then a failed submission is the site's doing, not the job's.
        """
        runner = self.transport.runner
        try:
            return bool(runner.login) and not runner.run(["true"], timeout_s=LOGIN_PROBE_S).ok
        except SiteAgentError:
            return True

    def _left_unanswered(self, written: Written, reason: str) -> AttemptUpdate:
        """A submission sent and not answered: none sent until the server answers again.

        Its job, if it was queued after all, is deleted by name then (``heard``).
        """
        self.silent = reason
        self._unsure.append(written.request.name)
        return self._unanswered(written.sub.attempt_id, reason)

    def _unanswered(self, attempt_id: AttemptId, reason: str) -> AttemptUpdate:
        """The server did not answer: the attempt is placed again (anywhere) without a retry charged."""
        return _lost(self.config.name, attempt_id, reason, charge_retry=False)

    def _request(self, spec: TaskSpec, attempt: AttemptDir, memory_tracked: bool) -> JobRequest:
        walltime = spec.resources.walltime_s
        lead = warning_lead_s(walltime, self.config.signal_lead_s) if walltime is not None else None
        return JobRequest(spec=spec, name=job_name(self.config.name, attempt.attempt_id), attempt=attempt,
                          limit_s=time_limit_s(spec), warning_lead_s=lead, nodes_report_memory=memory_tracked)


def submission_window(submit_s: float | None) -> int:
    """How many submissions may be on their way to a site whose submissions took `submit_s` recently.

    ``SUBMIT_AHEAD_S`` of them at that pace, at least one per submitting thread (also before the site has
    answered any: None); the scheduler keeps the rest, free to place them elsewhere.
    """
    if submit_s is None:
        return SUBMIT_THREADS
    return max(SUBMIT_THREADS, int(SUBMIT_THREADS * SUBMIT_AHEAD_S / max(submit_s, 1e-3)))


def _lost(site: str, attempt_id: AttemptId, reason: str, *, charge_retry: bool) -> AttemptUpdate:
    return AttemptUpdate(attempt_id=attempt_id, outcome=Lost(reason=LossReason.SITE_UNAVAILABLE,
                                                             detail=f"site {site}: {reason}",
                                                             charge_retry=charge_retry))
