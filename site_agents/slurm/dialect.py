"""The Slurm dialect: sbatch options on the command line, one squeue per poll, sacct, sinfo (pure).

Options go on sbatch's command line (an argv: paths with spaces or quotes need no quoting), not as
``#SBATCH`` lines. ``--no-requeue``: metasched, not Slurm, decides about another attempt. The environment
is Slurm's default (``--export=ALL``) of the small, secret-free environment the runner gives sbatch:
``NONE``/``NIL`` made each job start 2-4x slower here (they make slurmd rebuild a login environment).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from metasched.errors import SiteAgentError
from metasched.records import Resources
from site_agents.batch.dialect import Capacity, JobRequest, JobStatus
from site_agents.batch.forecast import QueuedJob
from site_agents.runner import CommandOutput
from site_agents.slurm import parsers

_UNREACHABLE = ("Unable to contact slurm controller", "Socket timed out", "Zero Bytes were transmitted",
                "Connection refused", "Transport endpoint")
# A Slurm client retries these for up to 60 s before it gives up: its first line says all there is to say.
GIVE_UP_ON = ("cannot stat file", "Munge encode failed", "failed to fetch config")


@dataclass(slots=True, kw_only=True)
class SlurmDialect:
    """Slurm 22.05 to 26.05 (see the module docstring)."""

    site: str
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    accounting: bool | None = None  # sacct answers (slurmdbd); None: asked at start
    name: str = "Slurm"
    give_up_on: tuple[str, ...] = GIVE_UP_ON

    def prepare(self, run: Callable[[list[str]], CommandOutput]) -> None:
        """Ask the controller whether it keeps accounting in slurmdbd (unless the site said)."""
        if self.accounting is None:
            shown = run(["scontrol", "show", "config"])
            if not shown.ok and self.unreachable(shown):
                raise SiteAgentError(f"site {self.site}: the Slurm controller does not answer "
                                     f"({shown.describe()}).", site=self.site, transient=True)
            self.accounting = shown.ok and parsers.has_slurmdbd_accounting(shown.stdout)

    def header(self, job: JobRequest) -> list[str]:
        """No directive lines: every option goes on sbatch's command line."""
        return []

    def submit_argv(self, job: JobRequest, header: Sequence[str]) -> list[str]:
        """The sbatch command line of one attempt."""
        directory = job.attempt
        argv = ["sbatch", "--parsable", f"--job-name={job.name}", f"--chdir={directory.path}",
                f"--output={directory.job_stdout}", f"--error={directory.job_stderr}", "--no-requeue",
                *self._request(job.spec.resources, limit_s=job.limit_s, memory=job.nodes_report_memory)]
        if job.warning_lead_s is not None:
            argv.append(f"--signal=B:USR1@{job.warning_lead_s}")
        return [*argv, str(directory.script)]

    def _request(self, res: Resources, *, limit_s: float | None, memory: bool) -> list[str]:
        """The options asking for `res` (a job's, or ``--test-only``'s): nodes, CPUs, memory, GPUs, time."""
        argv = [f"--nodes={res.nodes}", f"--cpus-per-task={res.cores}"]
        if res.nodes > 1:
            argv.append("--ntasks-per-node=1")
        if res.memory_mb and memory:
            argv.append(f"--mem={res.memory_mb}M")
        if res.gpus:
            argv.append(f"--gres=gpu:{res.gpus}")
        if limit_s is not None:
            argv.append(f"--time={math.ceil(limit_s / 60)}")
        for flag, value in (("partition", self.partition), ("account", self.account), ("qos", self.qos)):
            if value:
                argv.append(f"--{flag}={value}")
        return argv

    def parse_submitted(self, out: CommandOutput) -> str | None:
        """The job id ``sbatch --parsable`` printed."""
        return parsers.parse_sbatch_parsable(out.stdout)

    def unreachable(self, out: CommandOutput) -> bool:
        """The controller did not answer."""
        return any(marker in out.stderr for marker in _UNREACHABLE)

    def status_argv(self, user: str, job_ids: Sequence[str]) -> list[str]:
        """Every job of `user`, finished ones included (until MinJobAge)."""
        return ["squeue", "--noheader", "--states=all", f"--user={user}", "--format=%i|%T|%r|%j"]

    def parse_status(self, out: CommandOutput) -> Mapping[str, JobStatus] | None:
        """The jobs squeue listed; None if it did not answer."""
        return parsers.parse_squeue(out.stdout) if out.ok else None

    def status_key(self, job_id: str) -> str:
        """Squeue lists jobs under the id sbatch printed."""
        return job_id

    def delete_argv(self, job_ids: Sequence[str]) -> list[str]:
        """Cancel several jobs in one call."""
        return ["scancel", *job_ids]

    def delete_by_name_argvs(self, names: Sequence[str]) -> list[list[str]]:
        """``scancel --name`` takes one name."""
        return [["scancel", f"--name={name}"] for name in names]

    def nodes_argv(self) -> list[str]:
        """Nodes of the partition (or all): name, CPUs, memory, state."""
        argv = ["sinfo", "--noheader", "--Node", "--format=%N|%c|%m|%T"]
        return [*argv, f"--partition={self.partition}"] if self.partition else argv

    def parse_nodes(self, out: CommandOutput) -> Capacity | None:
        """What the partition's usable nodes offer; None if sinfo did not answer."""
        nodes = parsers.parse_sinfo_nodes(out.stdout) if out.ok else []
        if not nodes:
            return None if not out.ok else parsers.capacity([])
        return parsers.capacity(nodes)

    def queue_argv(self) -> list[str]:
        """Every user's pending and running jobs in the partition (or all)."""
        argv = ["squeue", "--noheader", "--all", "--states=PENDING,RUNNING",
                "--format=%i|%T|%C|%L|%l|%S|%u|%P"]
        return [*argv, f"--partition={self.partition}"] if self.partition else argv

    def parse_queue(self, out: CommandOutput) -> list[QueuedJob] | None:
        """The listed jobs; None if squeue did not answer."""
        return parsers.parse_queue(out.stdout, datetime.now()) if out.ok else None

    def start_argv(self, shape: Resources, *, limit_s: float | None, memory: bool) -> list[str]:
        """``sbatch --test-only`` of a job of this shape: the controller's expected start, nothing queued."""
        return ["sbatch", "--test-only", *self._request(shape, limit_s=limit_s, memory=memory), "--wrap=true"]

    def parse_start(self, out: CommandOutput) -> float | None:
        """Seconds until the job asked about would start; None if sbatch did not say."""
        return parsers.parse_test_only(out.stderr, datetime.now()) if out.ok else None

    def accounting_argvs(self, job_ids: Sequence[str]) -> list[list[str]]:
        """One sacct call for every job squeue stopped listing (none without slurmdbd)."""
        if not self.accounting or not job_ids:
            return []
        return [["sacct", "--noheader", "--parsable2", f"--jobs={','.join(job_ids)}",
                 "--format=JobIDRaw,State,ExitCode,JobName"]]

    def parse_accounting(self, text: str) -> Mapping[str, JobStatus]:
        """The job rows sacct printed."""
        return parsers.parse_sacct(text)

    def hold_reason_argv(self, job_id: str) -> list[str] | None:
        """Squeue's reason says why a job can never start."""
        return None

    def parse_hold_reason(self, text: str) -> str:
        """No separate look-up."""
        return ""

    def signal_argv(self, job_ids: Sequence[str], signal: str) -> list[str]:
        """Send `signal` to the batch shell of these jobs (the checkpoint wrapper, the worker)."""
        return ["scancel", "--batch", f"--signal={signal}", *job_ids]

    def parallel_prefix(self, nodes: int) -> tuple[str, ...]:
        """Multi-node commands start through ``srun`` (one rank per node) inside their allocation."""
        return ("srun", f"--nodes={nodes}", f"--ntasks={nodes}")
