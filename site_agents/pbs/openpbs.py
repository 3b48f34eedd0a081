"""The OpenPBS / PBS Pro dialect (OpenPBS 23.06): pure builders and parsers, no I/O.

Follows the OpenPBS 23.06 reference guide: ``qsub`` reads ``#PBS`` lines (resources as one chunk
``-l select=1:ncpus=C:mem=Mmb:ngpus=G``, ``-l walltime=HH:MM:SS``), prints the job id
(``123.server``); ``qstat -f -F json -x ID...`` reports queued, running *and* finished jobs (history
must be enabled on the server: ``job_history_enable=True``), with ``Exit_status`` once a job ended;
``pbsnodes -av -F json`` lists the vnodes and their ``resources_available.ncpus``. Recorded real output
in tests/data/openpbs (each file says where it comes from).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

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

#: Exit_status values below zero are the server's JOB_EXEC_* codes (OpenPBS src/include/job.h): the job
#: script did not run to its end. The ones a user meets, by name.
JOB_EXEC_CODES = {
    -1: "JOB_EXEC_FAIL1 (job could not start)",
    -2: "JOB_EXEC_FAIL2 (job could not start, after its files were created)",
    -3: "JOB_EXEC_RETRY (start failed, retried)",
    -4: "JOB_EXEC_INITABT (job aborted on MoM initialization)",
    -10: "JOB_EXEC_FAILUID (invalid uid/gid for job)",
    -11: "JOB_EXEC_RERUN (job rerun)",
    -20: "JOB_EXEC_RERUN_MS_FAIL (mother superior connection failed)",
    -27: "JOB_EXEC_KILL_MEM (exceeded mem)",
    -29: "JOB_EXEC_KILL_WALLTIME (exceeded walltime)",
}
EXIT_WALLTIME = -29

_RUNNING = {"R", "E", "B", "S", "U"}  # running, exiting, array begun, suspended (by server / by user)
_FINISHED = {"F", "X", "M"}  # finished, subjob finished, moved to another server


class OpenPBS:
    """OpenPBS 23.06 and PBS Professional."""

    name = "openpbs"

    def directives(self, *, spec: TaskSpec, name: str, attempt_dir: str, queue: str | None = None,
                   account: str | None = None) -> list[str]:
        """``-N``, bash, stdout/stderr in the attempt directory, not rerunnable, one chunk, walltime.

        Not rerunnable (``-r n``): metasched, not the server, decides about another attempt.
        """
        res = spec.resources
        chunk = f"select=1:ncpus={res.cores}"
        if res.memory_mb:
            chunk += f":mem={math.ceil(res.memory_mb)}mb"
        if res.gpus:
            chunk += f":ngpus={res.gpus}"
        lines = [f"-N {name}", "-S /bin/bash", f"-o {attempt_dir}/job.out", f"-e {attempt_dir}/job.err",
                 "-r n", f"-l {chunk}"]
        if res.walltime_s is not None:
            lines.append(f"-l walltime={hhmmss(res.walltime_s + WALLTIME_MARGIN_S)}")
        if queue:
            lines.append(f"-q {queue}")
        if account:
            lines.append(f"-A {account}")
        check_directives(spec, lines, "PBS")
        return [f"#PBS {line}" for line in lines]

    def qsub_argv(self, script: str, directives: Sequence[str]) -> list[str]:
        """Submit the script: qsub reads every option from its ``#PBS`` lines."""
        return ["qsub", script]

    def parse_qsub(self, stdout: str) -> str | None:
        """The job id qsub printed (``123.server``)."""
        lines = stdout.strip().splitlines()
        first = lines[-1].strip() if lines else ""
        return first if first and sequence_number(first).isdigit() else None

    def qstat_argv(self, job_ids: Sequence[str]) -> list[str]:
        """Full status of these jobs as JSON, history included (-x)."""
        return ["qstat", "-f", "-F", "json", "-x", *job_ids]

    def parse_qstat(self, text: str) -> dict[str, JobStatus]:
        """Every job of ``qstat -f -F json``; an empty or non-JSON answer lists none."""
        data = _json(text)
        jobs: dict[str, JobStatus] = {}
        for job_id, attrs in (data.get("Jobs") or {}).items():
            if isinstance(attrs, dict):
                jobs[sequence_number(job_id)] = _job(job_id, attrs)
        return jobs

    def nodes_argv(self) -> list[str]:
        """Every vnode, as JSON."""
        return ["pbsnodes", "-av", "-F", "json"]

    def parse_nodes(self, text: str) -> Capacity:
        """Cores of the vnodes that can take jobs (not down, offline, unknown or unresolvable)."""
        nodes = (_json(text).get("nodes") or {}).values()
        cores = [_int((n.get("resources_available") or {}).get("ncpus")) for n in nodes
                 if isinstance(n, dict) and _usable(str(n.get("state", "")))]
        return Capacity(total_cores=sum(cores), max_cores_per_node=max(cores, default=0), nodes=len(cores))

    def describe_exit(self, status: int | None) -> str:
        """Exit_status in words: a script exit code, a signal, or a JOB_EXEC_* code."""
        return _describe_exit(status)

    def walltime_killed(self, job: JobStatus) -> bool:
        """The server (its MoM) ended the job for exceeding its walltime."""
        return job.exit_status == EXIT_WALLTIME or "walltime" in job.comment.lower()


def _job(job_id: str, attrs: dict[str, Any]) -> JobStatus:
    letter = str(attrs.get("job_state", "")).strip()
    exit_status = attrs.get("Exit_status")
    if letter in _FINISHED:
        state = JobState.FINISHED
    elif letter in _RUNNING:
        state = JobState.RUNNING
    elif letter == "H" and "s" in str(attrs.get("Hold_Types", "")):
        state = JobState.HELD_BY_SYSTEM  # e.g. "job held, too many failed attempts to run"
    else:
        state = JobState.QUEUED  # Q, W (waiting for its start time), T (transit), H by user/operator
    return JobStatus(job_id=job_id, name=str(attrs.get("Job_Name", "")), state=state, native_state=letter,
                     exit_status=_int(exit_status) if exit_status is not None else None,
                     comment=str(attrs.get("comment", "")))


def _usable(state: str) -> bool:
    return not any(word in state for word in ("down", "offline", "unknown", "unresolvable", "stale"))


def _int(value: object) -> int:
    try:
        return int(str(value))
    except ValueError:
        return 0


def _json(text: str) -> dict[str, Any]:
    start = text.find("{")
    if start < 0:
        return {}
    try:
        data = json.loads(text[start:])
    except json.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


def _describe_exit(status: int | None) -> str:
    if status is not None and status < 0:
        return f"exit status {status} {JOB_EXEC_CODES.get(status, '(a JOB_EXEC code)')}"
    return describe_signal_exit(status)
