"""Deleting and signalling a batch agent's jobs: cancel and checkpoint.

A mixin of ``BatchAgent`` (its jobs, dialect, runner and transport). A server that does not answer is
not asked to delete or signal (its commands would wait out their retries in the scheduler's step): a
checkpoint that needs a signal is refused (SiteAgentError), a job cancelled meanwhile is deleted at its next
answer (``Deletions`` in the agent's poll), as are the jobs of a deletion that failed (the server stopped
answering just then; or one of them had ended: deleted again by id if still listed, else by name).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

from metasched.errors import SiteAgentError
from metasched.records import AttemptId, CheckpointKind, SiteLoad
from site_agents.batch.config import BatchSite
from site_agents.batch.dialect import Dialect
from site_agents.batch.jobs import BatchJob
from site_agents.batch.submitting import Submitter
from site_agents.batch.transport import Transport
from site_agents.runner import CommandRunner


class JobControl:
    """Cancel and checkpoint for ``BatchAgent`` (see the module docstring)."""

    config: BatchSite
    dialect: Dialect
    transport: Transport
    runner: CommandRunner
    _jobs: dict[AttemptId, BatchJob]
    _submitter: Submitter

    def load(self) -> SiteLoad:
        """The site's load (the agent's): whether its server answers now."""
        raise NotImplementedError

    def cancel(self, attempt_ids: Sequence[AttemptId]) -> None:
        """Delete these attempts' jobs in one call; at a site not answering (scancel would wait), later."""
        self._submitter.withdraw(attempt_ids)  # on their way: deleted once the site has them (``settle``)
        jobs = [self._jobs[a] for a in attempt_ids if a in self._jobs]
        deleted = False
        if jobs and self.load().status_current:
            with contextlib.suppress(SiteAgentError):  # it stopped answering just now: at its next answer
                deleted = self.runner.run(self.dialect.delete_argv([j.job_id for j in jobs])).ok
        for job in jobs:
            job.cancelled, job.undeleted = True, not deleted

    def checkpoint(self, attempt_ids: Sequence[AttemptId], *, stop: bool = True) -> list[AttemptId]:
        """Ask running checkpointable jobs to checkpoint and stop (USR2 to their batch shell).

        With stop=False: take a restart point and go on (CRIU jobs only: a request their wrapper watches).
        """
        jobs = [self._jobs[a] for a in attempt_ids if a in self._jobs and self._jobs[a].spec.checkpoint]
        if not stop:
            jobs = [j for j in jobs if j.spec.checkpoint is CheckpointKind.CRIU]
            for job in jobs:
                job.attempt.request_restart_point()
                self.transport.send_files(job.attempt, [job.attempt.restart_request_file.name])
            return [j.attempt_id for j in jobs]
        argv = self.dialect.signal_argv([j.job_id for j in jobs], "USR2") if jobs else None
        if argv is None:
            return []
        if not self.load().status_current:
            raise SiteAgentError(f"site {self.config.name} does not answer now: no signal sent; ask again "
                                 "once it does.", site=self.config.name, transient=True)
        out = self.runner.run(argv)
        if not out.ok:
            raise SiteAgentError(f"site {self.config.name}: could not signal jobs for a checkpoint: "
                                 f"{out.describe()}", site=self.config.name, transient=True)
        return [j.attempt_id for j in jobs]
