"""The Grid Engine dialect (SGE 8.1.9 family): qsub options, ``qstat -xml``, ``qacct -j`` (pure).

Options go on qsub's command line (an argv: paths need no quoting in directive lines): ``-S /bin/bash``
(not the queue's shell), ``-wd`` the attempt directory, separate stdout/stderr files there, ``-r n``
(metasched, not Grid Engine, decides about another attempt), cores as slots of the parallel environment
`pe`, memory as ``h_vmem`` per slot, the time limit as ``h_rt``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from metasched.records import Resources
from site_agents.batch.dialect import Capacity, JobRequest, JobStatus, check_header
from site_agents.batch.forecast import QueuedJob
from site_agents.gridengine import parsers
from site_agents.runner import CommandOutput


@dataclass(frozen=True, slots=True, kw_only=True)
class GridEngine:
    """Grid Engine 8.1.9 (see the module docstring)."""

    queue: str | None = None
    project: str | None = None
    pe: str = "smp"
    name: str = "Grid Engine"
    give_up_on: tuple[str, ...] = ()

    def prepare(self, run: Callable[[list[str]], CommandOutput]) -> None:
        """Nothing to learn at start."""

    def header(self, job: JobRequest) -> list[str]:
        """No directive lines: every option goes on qsub's command line."""
        return []

    def options(self, job: JobRequest) -> list[str]:
        """The qsub options of one attempt."""
        res, attempt = job.spec.resources, job.attempt
        argv = ["-N", job.name, "-S", "/bin/bash", "-wd", str(attempt.path), "-o", str(attempt.job_stdout),
                "-e", str(attempt.job_stderr), "-r", "n"]
        if res.cores > 1:
            argv += ["-pe", self.pe, str(res.cores)]
        if res.memory_mb:
            argv += ["-l", f"h_vmem={math.ceil(res.memory_mb / max(1, res.cores))}M"]
        if job.limit_s is not None:
            argv += ["-l", f"h_rt={math.ceil(job.limit_s)}"]
        for flag, value in (("-q", self.queue), ("-P", self.project)):
            if value:
                argv += [flag, value]
        check_header(job.spec, argv, "Grid Engine")
        return argv

    def submit_argv(self, job: JobRequest, header: Sequence[str]) -> list[str]:
        """``qsub -terse`` (prints only the job id) with the options, then the script."""
        return ["qsub", "-terse", *self.options(job), str(job.attempt.script)]

    def parse_submitted(self, out: CommandOutput) -> str | None:
        """The id qsub -terse printed."""
        return parsers.parse_qsub_terse(out.stdout)

    def unreachable(self, out: CommandOutput) -> bool:
        """The qmaster did not answer."""
        return parsers.qmaster_unreachable(out.stderr)

    def status_argv(self, user: str, job_ids: Sequence[str]) -> list[str]:
        """Every job of `user`, as XML."""
        return ["qstat", "-xml", "-u", user]

    def parse_status(self, out: CommandOutput) -> Mapping[str, JobStatus] | None:
        """Jobs by id; a failed qstat never answered."""
        return parsers.parse_qstat_xml(out.stdout) if out.ok else None

    def status_key(self, job_id: str) -> str:
        """Qstat lists jobs under the id qsub printed."""
        return job_id

    def delete_argv(self, job_ids: Sequence[str]) -> list[str]:
        """Delete several jobs in one call."""
        return ["qdel", *job_ids]

    def delete_by_name_argvs(self, names: Sequence[str]) -> list[list[str]]:
        """``qdel`` takes job names as well as ids."""
        return [["qdel", *names]]

    def nodes_argv(self) -> list[str]:
        """Queue instances and their slots, as XML."""
        return ["qstat", "-f", "-xml"]

    def parse_nodes(self, out: CommandOutput) -> Capacity | None:
        """Slots of the cell's queue instances (each host's instance counts as a node)."""
        if not out.ok:
            return None
        queues = parsers.parse_qstat_f_xml(out.stdout)
        usable = queues.hosts if queues.total_slots else 0
        closed = f"queue instances taking no jobs: {'; '.join(queues.closed)}" if queues.closed else ""
        return Capacity(total_cores=queues.total_slots, max_cores_per_node=queues.max_slots_per_host,
                        nodes=queues.hosts + len(queues.closed), usable_nodes=usable,
                        detail=closed if usable else f"(no queue instance with slots{'; ' if closed else ''}"
                                                     f"{closed})")

    def queue_argv(self) -> list[str]:
        """Every user's jobs with their hard requests (h_rt), as XML."""
        return ["qstat", "-xml", "-u", "*", "-r"]

    def parse_queue(self, out: CommandOutput) -> list[QueuedJob] | None:
        """The running and waiting jobs; None if qstat did not answer."""
        return parsers.parse_queue_xml(out.stdout, datetime.now()) if out.ok else None

    def start_argv(self, shape: Resources, *, limit_s: float | None, memory: bool) -> list[str] | None:
        """None: Grid Engine's qsub cannot say when a job would start (``-w v`` checks fit only)."""
        return None

    def parse_start(self, out: CommandOutput) -> float | None:
        """Never asked (see start_argv)."""
        return None

    def accounting_argvs(self, job_ids: Sequence[str]) -> list[list[str]]:
        """``qacct -j`` of each job qstat stopped listing."""
        return [["qacct", "-j", job_id] for job_id in job_ids]

    def parse_accounting(self, text: str) -> Mapping[str, JobStatus]:
        """The job's last accounting record ({} while the accounting file does not have it yet)."""
        record = parsers.parse_qacct(text)
        return {} if record is None else {record.job_id: parsers.accounted_status(record)}

    def hold_reason_argv(self, job_id: str) -> list[str]:
        """``qstat -j`` says why a job sits in Eqw."""
        return ["qstat", "-j", job_id]

    def parse_hold_reason(self, text: str) -> str:
        """The error reason lines, timestamps dropped."""
        return parsers.error_reason(text)

    def signal_argv(self, job_ids: Sequence[str], signal: str) -> list[str] | None:
        """Grid Engine has no way to signal a job's shell."""
        return None

    def parallel_prefix(self, nodes: int) -> tuple[str, ...]:
        """Multi-node commands run once (a parallel environment's own launcher is the task's business)."""
        return ()
