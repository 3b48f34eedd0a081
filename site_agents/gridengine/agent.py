"""The Grid Engine agent: one job per attempt, one ``qstat -xml`` per poll, ``qacct`` for the unexplained.

An attempt is a directory in the site's shared filesystem holding its job script (``#$`` directives),
its inputs and, once it ends, its outcome: ``outcome.pkl`` from metasched's worker (function tasks) or
``exit-status`` from the command script. The agent trusts that record first (site_agents.batch_agent).
A job that leaves qstat without one is explained from ``qacct -j`` (h_rt enforced, deleted outside
metasched, failed to start) or, if the accounting never mentions it, declared lost. A job in an error
state (``Eqw``: it will not start until an admin clears it) is deleted and its attempt fails with Grid
Engine's error reason.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from metasched.errors import SiteAgentError
from metasched.records import RemoteFailure, TaskOutcome, TaskSpec
from site_agents import batch
from site_agents.base import AttemptUpdate
from site_agents.batch_agent import BatchAgent, BatchJob, Capacity, job_name, lost
from site_agents.gridengine import commands, parsers
from site_agents.gridengine.config import GridEngineSite
from site_agents.runner import CommandOutput

_OUTCOME_GRACE_POLLS = 2  # an outcome file may appear a little after the job left qstat


class GridEngineAgent(BatchAgent[GridEngineSite, parsers.JobStatus]):
    """Submits attempts with qsub, watches them with one qstat per poll, deletes them with qdel."""

    def __init__(self, config: GridEngineSite) -> None:
        super().__init__(config)
        self._errored: list[str] = []

    def start(self) -> None:
        """Check the cell answers, learn its slots, stage the worker where execution hosts import it."""
        self.check_shared_dir()
        out = self.runner.run(commands.qstat_f_argv())
        if not out.ok:
            raise SiteAgentError(f"site {self.config.name}: Grid Engine does not answer ({out.describe()}). "
                                 "Check the login prefix and SGE_ROOT/SGE_CELL in environment.",
                                 site=self.config.name, transient=True)
        queues = parsers.parse_qstat_f_xml(out.stdout)
        if queues.total_slots == 0:
            raise SiteAgentError(f"site {self.config.name}: the cell has no queue slots (qstat -f lists no "
                                 "queue instance)", site=self.config.name)
        self._capacity = Capacity(total_cores=queues.total_slots,
                                  max_cores_per_node=queues.max_slots_per_host, nodes=queues.hosts)
        self.stage()

    # ------------------------------------------------------------------------------ Grid Engine's commands
    def directives(self, spec: TaskSpec, name: str, attempt_dir: str) -> list[str]:
        """The ``#$`` lines."""
        return commands.directives(spec=spec, name=name, attempt_dir=attempt_dir, queue=self.config.queue,
                                   project=self.config.project, pe=self.config.pe)

    def submit_argv(self, script: str, directives: Sequence[str]) -> list[str]:
        """Qsub -terse (the directives are in the script)."""
        return commands.qsub_argv(script)

    def parse_submitted(self, stdout: str) -> str | None:
        """The id qsub -terse printed."""
        return parsers.parse_qsub_terse(stdout)

    def site_down(self, out: CommandOutput) -> bool:
        """The qmaster did not answer."""
        return parsers.qmaster_unreachable(out.stderr)

    def status_argv(self, job_ids: Sequence[str]) -> list[str]:
        """Every job of this user, as XML."""
        return commands.qstat_argv()

    def answered(self, out: CommandOutput) -> bool:
        """A failed qstat never answered."""
        return False

    def parse_status(self, text: str) -> Mapping[str, parsers.JobStatus]:
        """Jobs by id."""
        return parsers.parse_qstat_xml(text)

    # ------------------------------------------------------------------------------ what a status means
    def check(self, job: BatchJob, status: parsers.JobStatus | None) -> AttemptUpdate | None:
        """Running, waiting, in an error state, or gone without an outcome file."""
        if status is not None and status.name and status.name != job_name(self.config.name, job.attempt_id):
            status = None  # not our job (an id reused after the cell lost its state)
        if status is None:
            job.missing_polls += 1
            if job.missing_polls < _OUTCOME_GRACE_POLLS:
                return None
            return self._explain_gone(job)
        job.missing_polls = 0
        if status.state is parsers.JobState.ERROR:
            self._errored.append(job.job_id)
            shown = self.runner.run(commands.qstat_j_argv(job.job_id))
            reason = parsers.error_reason(shown.stdout) or status.native_state
            return batch.failed(job.attempt_id, "SchedulerError",
                                f"job {job.job_id} at site {self.config.name} went into error state "
                                f"{status.native_state} and was deleted: {reason}", native_id=job.job_id)
        if status.state is parsers.JobState.RUNNING:
            return self.running(job)
        return None

    def after_poll(self) -> None:
        """Delete the jobs found in an error state."""
        if self._errored:
            self.runner.run(self.delete_argv(self._errored))
            self._errored = []

    def _explain_gone(self, job: BatchJob) -> AttemptUpdate | None:
        where = f"job {job.job_id} at site {self.config.name}"
        accounting = parsers.parse_qacct(self.runner.run(commands.qacct_argv(job.job_id)).stdout)
        if accounting is None:
            if job.missing_polls < self.config.vanish_after_polls:
                return None  # the accounting file may lag
            return lost(job, f"VANISHED: {where} left qstat with no outcome file and no accounting record")
        if job.cancelled:
            return self.cancelled(job, where)
        err = batch.tail(job.directory / "job.err")
        if accounting.walltime_exceeded:
            return AttemptUpdate(attempt_id=job.attempt_id, native_id=job.job_id, outcome=TaskOutcome(
                failure=RemoteFailure(error_type="WalltimeExceeded", traceback=err, walltime_exceeded=True,
                                      message=f"{where} hit its h_rt limit ({accounting.failed_reason})")))
        if accounting.deleted:
            return lost(job, f"{where} was deleted outside metasched (qacct: failed {accounting.failed} "
                             f"{accounting.failed_reason}, exit status {accounting.exit_status})")
        return batch.failed(job.attempt_id, "SchedulerError",
                            f"{where} ended without a result (qacct: failed {accounting.failed} "
                            f"{accounting.failed_reason}, exit status {accounting.exit_status}); its stderr "
                            f"is below and in {job.directory}/job.err", traceback=err, native_id=job.job_id)
