"""A submitted attempt as the batch agent tracks it, and the launcher seam it was started through."""

from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass
from typing import Protocol

from metasched.attempt_dir import AttemptDir
from metasched.data.objects import DataContext, DataRef
from metasched.data.stores import StoreSpec
from metasched.outcomes import Failed, TaskOutcome, failed
from metasched.records import AttemptId, TaskSpec
from metasched.sites.base import Submission

log = logging.getLogger(__name__)


class Launcher(Protocol):
    """How an attempt starts inside its allocation, and how to read the records only it writes.

    ``write`` stores the attempt's inputs and returns its job script (without directives); ``outcome``
    reads how the attempt ended (None until it has); ``progress`` a restart point a running attempt took
    since the last look (None if none).
    """

    def write(self, sub: Submission, attempt: AttemptDir) -> str:
        """The job script of `sub` (its inputs written to `attempt`)."""
        ...

    def outcome(self, job: BatchJob) -> TaskOutcome | None:
        """The attempt's own record of how it ended, if it has ended."""
        ...

    def progress(self, job: BatchJob) -> DataRef | None:
        """A new restart point of the running attempt, if it took one."""
        ...


@dataclass(slots=True, kw_only=True)
class BatchJob:
    """One submitted attempt and what the agent has seen of it."""

    attempt_id: AttemptId
    spec: TaskSpec
    job_id: str
    attempt: AttemptDir
    launcher: Launcher
    store: StoreSpec  # where its big results and checkpoints go
    submitted_at: float
    predicted_wait_s: float = 0.0  # what the site's load predicted at submission
    forecast_wait_s: float | None = 0.0  # ... before the learned correction (what the learners learn from
    # at start; None: it queued behind ours while their run time was not known, its wait teaches nothing)
    data: DataContext | None = None
    restoring: bool = False  # continues from a checkpoint
    cancelled: bool = False  # metasched deleted it
    undeleted: bool = False  # cancelled while the site did not answer: deleted at its next answer
    started_at: float | None = None
    missing_polls: int = 0  # polls in a row the status did not list it
    finished_polls: int = 0  # polls it was listed finished without an outcome record
    stalled_since: float | None = None
    last_saved: str = ""  # the last cooperative checkpoint reported
    refused_runs: int = 0  # further runs of the job the claim refused (reported once each)
    unread: int = 0  # polls in a row its record of how it ended could not be read
    progress_problem: str = ""  # why its newest restart point could not be read (said once)
    run_count_noted: int = 1  # the highest run count the scheduler reported and was noted

    def ran_s(self, now: float) -> float | None:
        """How long the job has been running (None: never seen running)."""
        return None if self.started_at is None else now - self.started_at

    def news(self, run_count: int | None) -> list[str]:
        """What is new and worth recording about the job although it changes nothing (each said once).

        Runs the attempt's claim refused (the scheduler started the job again), and a run count higher
        than the scheduler reported before (`run_count`: its latest word, where it says).
        """
        notes = []
        refused = self.attempt.refused_runs()
        if len(refused) > self.refused_runs:
            notes += [f"the scheduler ran {self.where} again; run refused by the attempt's claim ({line})"
                      for line in refused[self.refused_runs:]]
            self.refused_runs = len(refused)
        if run_count is not None and run_count > self.run_count_noted:
            notes.append(f"the scheduler reports {self.where} started {run_count} times")
            self.run_count_noted = run_count
        return notes

    @property
    def where(self) -> str:
        """``job 123`` (for messages that add ``at site X``); ``attempt ID`` before its id is known."""
        return f"job {self.job_id}" if self.job_id else f"attempt {self.attempt_id}"

    def unreadable(self, site: str, exc: Exception, *, give_up_after: int) -> Failed | None:
        """The attempt's record of how it ended could not be read (a node's full disk, a broken copy).

        Looked at again at the next polls (a shared filesystem or an SSH copy may be caught mid-change);
        after `give_up_after` polls in a row the attempt failed, saying why: the campaign's other attempts
        are none of its concern.
        """
        self.unread += 1
        said = f"{type(exc).__name__}: {exc}"
        log.warning("site %s: could not read how %s ended (%d of %d tries): %s", site, self.where,
                    self.unread, give_up_after, said)
        if self.unread < give_up_after:
            return None
        return failed("SiteAgentError", f"metasched could not read how {self.where} ended at site {site} "
                                        f"(in {self.attempt.path}): {said}", traceback=traceback.format_exc())

    def restart_point(self, site: str) -> tuple[DataRef | None, list[str]]:
        """A restart point the running attempt took since the last look (its launcher's ``progress``).

        One that cannot be read is a note instead (once per problem): the task runs on, and it is read
        again next time.
        """
        try:
            return self.launcher.progress(self), []
        except Exception as exc:
            problem = f"{type(exc).__name__}: {exc}"
        if problem == self.progress_problem:
            return None, []
        self.progress_problem = problem
        log.warning("site %s: could not read a restart point of %s: %s", site, self.where, problem)
        return None, [f"a restart point of {self.where} could not be read: {problem}"]
