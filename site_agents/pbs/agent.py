"""The PBS-family agent: one job per attempt, one ``qstat -f`` per poll, in the site's dialect.

An attempt is a directory in the site's shared filesystem holding its job script (``#PBS`` lines),
its inputs and, once it ends, its outcome: ``outcome.pkl`` from metasched's worker (function tasks) or
``exit-status`` from the command script. The agent trusts that record first (site_agents.batch_agent).
A job that finished without one is explained from what qstat says of it (walltime, killed by a signal,
a JOB_EXEC code); a job that left qstat altogether (no job history) is declared lost after a few polls.
A job the server held (too many failed starts) is deleted and its attempt fails with the server's comment.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

from metasched.errors import SiteAgentError
from metasched.records import RemoteFailure, TaskOutcome, TaskSpec
from site_agents import batch
from site_agents.base import AttemptUpdate
from site_agents.batch_agent import BatchAgent, BatchJob, job_name, lost
from site_agents.pbs.config import PBSSite
from site_agents.pbs.jobs import Dialect, JobState, JobStatus, sequence_number
from site_agents.pbs.jobs import server_unreachable as unreachable
from site_agents.pbs.openpbs import OpenPBS
from site_agents.pbs.torque import Torque
from site_agents.runner import CommandOutput

_OUTCOME_GRACE_POLLS = 2  # an outcome file may appear a little after the job finished
DIALECTS: dict[str, Dialect] = {"openpbs": OpenPBS(), "torque": Torque()}


class PBSAgent(BatchAgent[PBSSite, JobStatus]):
    """Submits attempts with qsub, watches them with one qstat per poll, deletes them with qdel."""

    def __init__(self, config: PBSSite) -> None:
        super().__init__(config)
        self.dialect = DIALECTS[config.dialect]
        self._held: list[str] = []

    def start(self) -> None:
        """Check the server answers, learn its nodes' cores, stage the worker where nodes import it."""
        self.check_shared_dir()
        out = self.runner.run(self.dialect.nodes_argv())
        if not out.ok:
            raise SiteAgentError(f"site {self.config.name}: the PBS server does not answer "
                                 f"({out.describe()}). Check the login prefix and PBS_SERVER in environment.",
                                 site=self.config.name, transient=True)
        self._capacity = self.dialect.parse_nodes(out.stdout)
        if self._capacity.total_cores == 0:
            raise SiteAgentError(f"site {self.config.name}: pbsnodes lists no node that can take jobs (all "
                                 f"down or offline?): {out.stdout.strip()[:300]}", site=self.config.name)
        self.stage()

    # ------------------------------------------------------------------------------ the dialect
    def directives(self, spec: TaskSpec, name: str, attempt_dir: str) -> list[str]:
        """The dialect's ``#PBS`` lines."""
        return self.dialect.directives(spec=spec, name=name, attempt_dir=attempt_dir, queue=self.config.queue,
                                       account=self.config.account)

    def submit_argv(self, script: str, directives: Sequence[str]) -> list[str]:
        """Qsub in the dialect's way."""
        return self.dialect.qsub_argv(script, directives)

    def parse_submitted(self, stdout: str) -> str | None:
        """The id qsub printed."""
        return self.dialect.parse_qsub(stdout)

    def site_down(self, out: CommandOutput) -> bool:
        """A connection error, or a failed qsub while pbsnodes does not answer either."""
        return unreachable(out.stdout + out.stderr) or not self._answers()

    def _answers(self) -> bool:
        try:
            return self.runner.run(self.dialect.nodes_argv()).ok
        except SiteAgentError:
            return False

    def status_argv(self, job_ids: Sequence[str]) -> list[str]:
        """Qstat of these jobs; pbsnodes as a probe when there are none (an unavailable site)."""
        return self.dialect.qstat_argv(job_ids) if job_ids else self.dialect.nodes_argv()

    def answered(self, out: CommandOutput) -> bool:
        """Qstat exits non-zero when some ids are unknown (purged from the history), listing the others."""
        text = out.stdout + out.stderr
        return not unreachable(text) and (bool(out.stdout.strip()) or "unknown job id" in text.lower())

    def parse_status(self, text: str) -> Mapping[str, JobStatus]:
        """Jobs by sequence number."""
        return self.dialect.parse_qstat(text)

    def status_key(self, job_id: str) -> str:
        """Qsub and qstat may print the server's name differently: match on the sequence number."""
        return sequence_number(job_id)

    # ------------------------------------------------------------------------------ what a status means
    def check(self, job: BatchJob, status: JobStatus | None) -> AttemptUpdate | None:
        """Running, waiting, held by the server, or ended without an outcome file."""
        if status is not None and status.name and status.name != job_name(self.config.name, job.attempt_id):
            status = None  # not our job (an id reused after the server lost its state)
        if status is None or status.state is JobState.FINISHED:
            job.missing_polls += 1
            if job.missing_polls < _OUTCOME_GRACE_POLLS:
                return None
            return self._explain_ended(job, status)
        job.missing_polls = 0
        if status.state is JobState.HELD_BY_SYSTEM:
            self._held.append(job.job_id)
            return batch.failed(job.attempt_id, "SchedulerError",
                                f"job {job.job_id} at site {self.config.name} was held by the server and was "
                                f"deleted: {status.comment or status.native_state}", native_id=job.job_id)
        if status.state is JobState.RUNNING:
            return self.running(job)
        return None

    def after_poll(self) -> None:
        """Delete the jobs the server held."""
        if self._held:
            self.runner.run(self.delete_argv(self._held))
            self._held = []

    def _explain_ended(self, job: BatchJob, status: JobStatus | None) -> AttemptUpdate | None:
        where = f"job {job.job_id} at site {self.config.name}"
        if status is None and job.missing_polls < self.config.vanish_after_polls:
            return None  # between states, or the server is slow to list it
        if job.cancelled:
            return self.cancelled(job, where)
        err = batch.tail(job.directory / "job.err")
        if status is None:
            return lost(job, f"VANISHED: {where} left qstat with no outcome file (is job history "
                             "enabled on the server? finished jobs then stay listed)")
        said = self.dialect.describe_exit(status.exit_status)
        said += f": {status.comment}" if status.comment else ""
        if self.dialect.walltime_killed(status) or self._ran_past_walltime(job):
            return AttemptUpdate(attempt_id=job.attempt_id, native_id=job.job_id, outcome=TaskOutcome(
                failure=RemoteFailure(error_type="WalltimeExceeded", traceback=err, walltime_exceeded=True,
                                      message=f"{where} was ended by its walltime limit ({said})")))
        if status.exit_status is None or status.exit_status >= 256 or status.exit_status < 0:
            return lost(job, f"{where} ended without a result, killed or deleted outside metasched ({said})")
        return batch.failed(job.attempt_id, "SchedulerError",
                            f"{where} ended without a result ({said}); its stderr is below and in "
                            f"{job.directory}/job.err", traceback=err, native_id=job.job_id)

    def _ran_past_walltime(self, job: BatchJob) -> bool:
        limit = job.spec.resources.walltime_s
        return (limit is not None and job.started_at is not None
                and time.monotonic() - job.started_at >= limit + batch.WALLTIME_MARGIN_S)
