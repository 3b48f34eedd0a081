"""The Torque dialect: pure builders and parsers, no I/O.

Torque's ``qsub`` takes ``-l nodes=N:ppn=C`` (cores on each node), ``-l walltime=HH:MM:SS`` and
``-l mem=Mmb``, and prints the job id (``123.server``, or a bare ``123``); ``qstat -f`` prints one
``Job Id:`` block per job (``job_state`` Q/R/E/C/H/W/S/T, ``exit_status`` once completed);
``pbsnodes -a`` one block per node (``state``, ``np`` cores).

The options are both written as ``#PBS`` lines and passed on the qsub command line: real Torque reads
either (the command line wins, and they are the same), while the Torque-style commands Debian's
``slurm-wlm-torque`` puts over Slurm read only the command line. Those wrappers are what CI tests this
dialect against (ci/torque-wrappers); their ``qstat -f`` has no exit status, so a completed job without an
outcome record and without an exit status is taken as killed or deleted outside metasched; and their
``qsub`` runs sbatch through a shell with the paths unquoted, so a shared directory whose path a shell
would split or interpret is refused with that reason.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from datetime import datetime

from metasched.outcomes import describe_exit
from site_agents.batch.dialect import Capacity, JobEnd, JobRequest, JobState, JobStatus, check_header, hhmmss
from site_agents.batch.forecast import QueuedJob
from site_agents.pbs.family import PBSFamily, queued_job, quoted_path, sequence_number
from site_agents.runner import CommandOutput

_RUNNING = {"R", "E", "S"}
# The Torque-style qsub over Slurm hands its paths to sbatch through a shell, unquoted: only these survive.
_SHELL_SAFE = re.compile(r"[A-Za-z0-9_./+,=:@%-]+")
_FINISHED = {"C"}
_DOWN = ("down", "offline", "unknown")
_JOB_ID = re.compile(r"^Job Id:\s*(\S+)")


class Torque(PBSFamily):
    """Torque 4-6 (and Debian's Torque-style wrappers over Slurm)."""

    name = "Torque"

    def header(self, job: JobRequest) -> list[str]:
        """The options, one per ``#PBS`` line (the same ones go on the qsub command line)."""
        res = job.spec.resources
        resources = [f"nodes={res.nodes}:ppn={res.cores}" + (f":gpus={res.gpus}" if res.gpus else "")]
        if res.memory_mb:
            resources.append(f"mem={math.ceil(res.memory_mb)}mb")
        if job.limit_s is not None:
            resources.append(f"walltime={hhmmss(job.limit_s)}")
        # One -l with a comma-separated list: the wrappers keep only the last -l they are given.
        shell_safe(str(job.attempt.path))
        lines = [f"-N {job.name}", f"-o {quoted_path(str(job.attempt.job_stdout))}",
                 f"-e {quoted_path(str(job.attempt.job_stderr))}", "-r n", f"-l {','.join(resources)}"]
        if self.queue:
            lines.append(f"-q {self.queue}")
        if self.account:
            lines.append(f"-A {self.account}")
        check_header(job.spec, lines, "PBS")
        return [f"#PBS {line}" for line in lines]

    def submit_argv(self, job: JobRequest, header: Sequence[str]) -> list[str]:
        """The directives again as arguments (each ``-X value`` split in two, quotes off), then the script."""
        argv = ["qsub"]
        for line in header:
            option, _, value = line.removeprefix("#PBS ").partition(" ")
            value = value[1:-1] if len(value) > 1 and value[0] == value[-1] == '"' else value
            argv += [option, value] if value else [option]
        return [*argv, str(job.attempt.script)]

    def status_argv(self, user: str, job_ids: Sequence[str]) -> list[str]:
        """Full status of every job (completed ones stay listed for the server's keep_completed)."""
        return ["qstat", "-f"]

    def parse_status(self, out: CommandOutput) -> Mapping[str, JobStatus] | None:
        """Every ``Job Id:`` block of ``qstat -f``; None if qstat did not answer."""
        if not out.ok:
            return None
        return parse_qstat(out.stdout)

    def queue_argv(self) -> list[str]:
        """Every user's jobs (the same listing as the status)."""
        return ["qstat", "-f"]

    def parse_queue(self, out: CommandOutput) -> list[QueuedJob] | None:
        """The running and queued jobs; None if qstat did not answer."""
        if not out.ok:
            return None
        now = datetime.now()
        jobs = (queued_job(job_id, attrs, now) for job_id, attrs in _blocks(out.stdout, header=_JOB_ID))
        return [job for job in jobs if job is not None]

    def nodes_argv(self) -> list[str]:
        """Every node."""
        return ["pbsnodes", "-a"]

    def parse_nodes(self, out: CommandOutput) -> Capacity | None:
        """Cores (``np``) of the nodes not down or offline."""
        if not out.ok:
            return None
        blocks = _blocks(out.stdout, header=re.compile(r"^(\S+)\s*$"))
        usable = [int(attrs.get("np", "0") or 0) for _, attrs in blocks
                  if not any(word in attrs.get("state", "") for word in _DOWN)]
        down = [f"{name} {attrs.get('state')}" for name, attrs in blocks
                if any(word in attrs.get("state", "") for word in _DOWN)]
        return Capacity(total_cores=sum(usable), max_cores_per_node=max(usable, default=0), nodes=len(blocks),
                        usable_nodes=len(usable), detail=f"({', '.join(down)})" if down else "")


def shell_safe(path: str) -> str:
    """Refuse a path a shell would split or interpret (a space, a quote, ``$``...), saying why."""
    if not _SHELL_SAFE.fullmatch(path):
        raise ValueError(f"the path {path!r} holds a space or a character a shell interprets: the "
                         "Torque-style qsub commands pass paths to sbatch through a shell unquoted, so a job "
                         "could not be submitted; use a shared_dir of letters, digits and ._-/ only")
    return path


def parse_qstat(text: str) -> dict[str, JobStatus]:
    """Every ``Job Id:`` block of ``qstat -f``, by sequence number."""
    jobs: dict[str, JobStatus] = {}
    for job_id, attrs in _blocks(text, header=_JOB_ID):
        letter = attrs.get("job_state", "")
        raw_exit = attrs.get("exit_status", attrs.get("Exit_status"))
        exit_status = int(raw_exit) if raw_exit and re.fullmatch(r"-?\d+", raw_exit) else None
        state, end = JobState.QUEUED, None
        if letter in _FINISHED:
            state = JobState.FINISHED
            end = (JobEnd.UNKNOWN if exit_status is None else JobEnd.KILLED if exit_status >= 256
                   else JobEnd.COMPLETED if exit_status == 0 else JobEnd.FAILED)
        elif letter in _RUNNING:
            state = JobState.RUNNING
        said = describe_exit(exit_status) if exit_status is not None else ""
        jobs[sequence_number(job_id)] = JobStatus(
            job_id=job_id, name=attrs.get("Job_Name", ""), state=state, native_state=letter, end=end,
            reason="; ".join(part for part in (said, attrs.get("comment", "")) if part))
    return jobs


def _blocks(text: str, *, header: re.Pattern[str]) -> list[tuple[str, dict[str, str]]]:
    """Split text into header lines each followed by indented ``key = value`` lines.

    A wrapped value continues on further indented lines without " = ".
    """
    blocks: list[tuple[str, dict[str, str]]] = []
    last_key = ""
    for line in text.splitlines():
        if not line.strip():
            continue
        if not line[0].isspace():
            found = header.match(line)
            if found:
                blocks.append((found.group(1), {}))
                last_key = ""
            continue
        if not blocks:
            continue
        key, sep, value = line.strip().partition(" = ")
        attrs = blocks[-1][1]
        if sep:
            attrs[key] = value.strip()
            last_key = key
        elif last_key:
            attrs[last_key] += line.strip()
    return blocks
