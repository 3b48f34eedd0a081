"""The Torque dialect: pure builders and parsers, no I/O.

Torque's ``qsub`` takes ``-l nodes=1:ppn=C`` (cores on one node), ``-l walltime=HH:MM:SS`` and
``-l mem=Mmb``, and prints the job id (``123.server``, or a bare ``123``); ``qstat -f`` prints one
``Job Id:`` block per job (``job_state`` Q/R/E/C/H/W/S/T, ``exit_status`` once completed);
``pbsnodes -a`` one block per node (``state``, ``np`` cores).

The options are both written as ``#PBS`` lines and passed on the qsub command line: real Torque reads
either (the command line wins, and they are the same), while the Torque-style commands Debian's
``slurm-wlm-torque`` puts over Slurm read only the command line. Those wrappers are what CI tests this
dialect against (ci/torque-wrappers); their ``qstat -f`` has no exit status.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from metasched.records import TaskSpec
from site_agents.batch import WALLTIME_MARGIN_S, check_directives
from site_agents.pbs.jobs import (
    Capacity,
    JobState,
    JobStatus,
    describe_signal_exit,
    hhmmss,
    sequence_number,
)

_RUNNING = {"R", "E", "S"}
_FINISHED = {"C"}
_DOWN = ("down", "offline", "unknown")


class Torque:
    """Torque 4-6 (and Debian's Torque-style wrappers over Slurm)."""

    name = "torque"

    def directives(self, *, spec: TaskSpec, name: str, attempt_dir: str, queue: str | None = None,
                   account: str | None = None) -> list[str]:
        """The options, one per ``#PBS`` line (the same ones go on the qsub command line)."""
        res = spec.resources
        resources = [f"nodes=1:ppn={res.cores}" + (f":gpus={res.gpus}" if res.gpus else "")]
        if res.memory_mb:
            resources.append(f"mem={math.ceil(res.memory_mb)}mb")
        if res.walltime_s is not None:
            resources.append(f"walltime={hhmmss(res.walltime_s + WALLTIME_MARGIN_S)}")
        # One -l with a comma-separated list: the wrappers keep only the last -l they are given.
        lines = [f"-N {name}", f"-o {attempt_dir}/job.out", f"-e {attempt_dir}/job.err", "-r n",
                 f"-l {','.join(resources)}"]
        if queue:
            lines.append(f"-q {queue}")
        if account:
            lines.append(f"-A {account}")
        check_directives(spec, lines, "PBS")
        return [f"#PBS {line}" for line in lines]

    def qsub_argv(self, script: str, directives: Sequence[str]) -> list[str]:
        """The directives again as arguments (each ``-X value`` split in two), then the script."""
        argv = ["qsub"]
        for line in directives:
            option, _, value = line.removeprefix("#PBS ").partition(" ")
            argv += [option, value] if value else [option]
        return [*argv, script]

    def parse_qsub(self, stdout: str) -> str | None:
        """The job id qsub printed (its last line: ``123.server`` or ``123``)."""
        lines = stdout.strip().splitlines()
        last = lines[-1].strip() if lines else ""
        return last if last and sequence_number(last).isdigit() else None

    def qstat_argv(self, job_ids: Sequence[str]) -> list[str]:
        """Full status of every job (completed ones stay listed for the server's keep_completed)."""
        return ["qstat", "-f"]

    def parse_qstat(self, text: str) -> dict[str, JobStatus]:
        """Every ``Job Id:`` block of ``qstat -f``."""
        jobs: dict[str, JobStatus] = {}
        for job_id, attrs in _blocks(text, header=re.compile(r"^Job Id:\s*(\S+)")):
            letter = attrs.get("job_state", "")
            state = (JobState.FINISHED if letter in _FINISHED else JobState.RUNNING if letter in _RUNNING
                     else JobState.QUEUED)
            raw_exit = attrs.get("exit_status", attrs.get("Exit_status"))
            jobs[sequence_number(job_id)] = JobStatus(
                job_id=job_id, name=attrs.get("Job_Name", ""), state=state, native_state=letter,
                exit_status=int(raw_exit) if raw_exit and re.fullmatch(r"-?\d+", raw_exit) else None,
                comment=attrs.get("comment", ""))
        return jobs

    def nodes_argv(self) -> list[str]:
        """Every node."""
        return ["pbsnodes", "-a"]

    def parse_nodes(self, text: str) -> Capacity:
        """Cores (``np``) of the nodes not down or offline."""
        blocks = _blocks(text, header=re.compile(r"^(\S+)\s*$"))
        cores = [int(attrs.get("np", "0") or 0) for _, attrs in blocks
                 if not any(word in attrs.get("state", "") for word in _DOWN)]
        return Capacity(total_cores=sum(cores), max_cores_per_node=max(cores, default=0), nodes=len(cores))

    def describe_exit(self, status: int | None) -> str:
        """An exit status in words."""
        return describe_signal_exit(status)

    def walltime_killed(self, job: JobStatus) -> bool:
        """Torque leaves no walltime mark the agent can rely on; the agent compares elapsed time."""
        return False


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
