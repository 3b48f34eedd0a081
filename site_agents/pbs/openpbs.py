"""The OpenPBS / PBS Pro dialect (OpenPBS 23.06): pure builders and parsers, no I/O.

Follows the OpenPBS 23.06 reference guide and what a live 23.06.06 server did (recordings in
tests/data/openpbs-23.06.06): ``qsub`` reads ``#PBS`` lines (resources as chunks
``-l select=N:ncpus=C:mem=Mmb:ngpus=G``, ``-l walltime=HH:MM:SS``; paths double-quoted, as a space is
otherwise refused with "directive error") and prints the job id (``123.server``); ``qstat -f -F json -x
ID...`` reports queued, running *and* finished jobs (history must be enabled on the server:
``job_history_enable=True``), with ``Exit_status`` once a job ended and ``run_count``; ``pbsnodes -av -F
json`` lists the vnodes and their ``resources_available.ncpus``.

How a finished job ended: ``Exit_status`` -29 (JOB_EXEC_KILL_WALLTIME) or a walltime comment is the
time limit; a comment saying "terminated" means deleted (by ``qdel``, whoever issued it: a root-owned job
deleted while running ends with ``Exit_status`` 0); 256 + N is a signal PBS sent, other negative values
are JOB_EXEC codes (the script did not run to its end); 128 + N is a signal from elsewhere (the task's own
shell reports it).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from metasched.outcomes import describe_exit as exit_in_words
from site_agents.batch.dialect import Capacity, JobEnd, JobRequest, JobState, JobStatus, check_header, hhmmss
from site_agents.batch.forecast import QueuedJob
from site_agents.pbs.family import PBSFamily, queued_job, quoted_path, sequence_number
from site_agents.runner import CommandOutput

#: Exit_status values below zero are the server's JOB_EXEC_* codes (OpenPBS src/include/job.h).
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


class OpenPBS(PBSFamily):
    """OpenPBS 23.06 and PBS Professional."""

    name = "OpenPBS"

    def header(self, job: JobRequest) -> list[str]:
        """``-N``, bash, stdout/stderr in the attempt directory, not rerunnable, chunks, walltime.

        Not rerunnable (``-r n``): metasched, not the server, decides about another attempt (the server
        may still run a job again after a restart: the job script's claim refuses that second run).
        """
        res = job.spec.resources
        chunk = f"select={res.nodes}:ncpus={res.cores}"
        if res.memory_mb:
            chunk += f":mem={math.ceil(res.memory_mb)}mb"
        if res.gpus:
            chunk += f":ngpus={res.gpus}"
        lines = [f"-N {job.name}", "-S /bin/bash", f"-o {quoted_path(str(job.attempt.job_stdout))}",
                 f"-e {quoted_path(str(job.attempt.job_stderr))}", "-r n", f"-l {chunk}"]
        if job.limit_s is not None:
            lines.append(f"-l walltime={hhmmss(job.limit_s)}")
        if self.queue:
            lines.append(f"-q {self.queue}")
        if self.account:
            lines.append(f"-A {self.account}")
        check_header(job.spec, lines, "PBS")
        return [f"#PBS {line}" for line in lines]

    def submit_argv(self, job: JobRequest, header: Sequence[str]) -> list[str]:
        """Submit the script: qsub reads every option from its ``#PBS`` lines."""
        return ["qsub", str(job.attempt.script)]

    def status_argv(self, user: str, job_ids: Sequence[str]) -> list[str]:
        """Full status of these jobs as JSON, history included (-x)."""
        return ["qstat", "-f", "-F", "json", "-x", *job_ids]

    def parse_status(self, out: CommandOutput) -> Mapping[str, JobStatus] | None:
        """Every job of the answer (qstat exits non-zero when some ids are unknown, listing the others)."""
        text = out.stdout + out.stderr
        answered = bool(out.stdout.strip()) or "unknown job id" in text.lower()
        if not out.ok and (self.unreachable(out) or not answered):
            return None
        return parse_qstat(out.stdout)

    def queue_argv(self) -> list[str]:
        """Every user's jobs (no history), as JSON."""
        return ["qstat", "-f", "-F", "json"]

    def parse_queue(self, out: CommandOutput) -> list[QueuedJob] | None:
        """The running and queued jobs; None if qstat did not answer."""
        return parse_queue(out.stdout, datetime.now()) if out.ok else None

    def nodes_argv(self) -> list[str]:
        """Every vnode, as JSON."""
        return ["pbsnodes", "-av", "-F", "json"]

    def parse_nodes(self, out: CommandOutput) -> Capacity | None:
        """Cores of the vnodes that can take jobs (not down, offline, unknown or unresolvable)."""
        if not out.ok:
            return None
        nodes = [n for n in (_json(out.stdout).get("nodes") or {}).values() if isinstance(n, dict)]
        up = [n for n in nodes if _usable(str(n.get("state", "")))]
        usable = [_int((n.get("resources_available") or {}).get("ncpus")) for n in up]
        down = [f"{n.get('Mom', '?')} {n.get('state')}" for n in nodes if n not in up]
        return Capacity(total_cores=sum(usable), max_cores_per_node=max(usable, default=0), nodes=len(nodes),
                        usable_nodes=len(usable), detail=f"({', '.join(down)})" if down else "")


def parse_qstat(text: str) -> dict[str, JobStatus]:
    """Every job of ``qstat -f -F json`` by sequence number; an empty or non-JSON answer lists none."""
    jobs: dict[str, JobStatus] = {}
    for job_id, attrs in (_json(text).get("Jobs") or {}).items():
        if isinstance(attrs, dict):
            jobs[sequence_number(job_id)] = _job(job_id, attrs)
    return jobs


def parse_queue(text: str, now: datetime) -> list[QueuedJob]:
    """Every running and queued job of ``qstat -f -F json``.

    Attribute groups are flattened as ``qstat -f`` prints them (``Resource_List.ncpus``).
    """
    jobs = []
    for job_id, attrs in (_json(text).get("Jobs") or {}).items():
        if not isinstance(attrs, dict):
            continue
        flat = {f"{key}.{sub}" if isinstance(value, dict) else key: inner
                for key, value in attrs.items()
                for sub, inner in (value.items() if isinstance(value, dict) else [("", value)])}
        job = queued_job(job_id, flat, now)
        if job is not None:
            jobs.append(job)
    return jobs


def _job(job_id: str, attrs: dict[str, Any]) -> JobStatus:
    letter = str(attrs.get("job_state", "")).strip()
    raw_exit = attrs.get("Exit_status")
    exit_status = _int(raw_exit) if raw_exit is not None else None
    comment = str(attrs.get("comment", ""))
    end = None
    if letter in _FINISHED:
        state, end = JobState.FINISHED, ended(exit_status, comment)
    elif letter in _RUNNING:
        state = JobState.RUNNING
    elif letter == "H" and "s" in str(attrs.get("Hold_Types", "")):
        state = JobState.HELD  # held by the system (e.g. too many failed attempts to run)
    else:
        state = JobState.QUEUED  # Q, W (waiting for its start time), T (transit), H by user/operator
    said = describe_exit(exit_status) if letter in _FINISHED else ""
    reason = "; ".join(part for part in (said, comment) if part)
    run_count = attrs.get("run_count")
    return JobStatus(job_id=job_id, name=str(attrs.get("Job_Name", "")), state=state, native_state=letter,
                     reason=reason, end=end, run_count=_int(run_count) if run_count is not None else None)


def ended(exit_status: int | None, comment: str) -> JobEnd:
    """How a finished job ended (see the module docstring)."""
    text = comment.lower()
    if exit_status == EXIT_WALLTIME or "walltime" in text:
        return JobEnd.TIMEOUT
    if "terminated" in text:
        return JobEnd.CANCELLED
    if exit_status is None:
        return JobEnd.UNKNOWN
    if exit_status < 0 or exit_status >= 256:
        return JobEnd.KILLED
    return JobEnd.COMPLETED if exit_status == 0 else JobEnd.FAILED


def describe_exit(status: int | None) -> str:
    """Exit_status in words: a script exit code, a signal, or a JOB_EXEC_* code."""
    if status is None:
        return "no exit status"
    if status < 0:
        return f"exit status {status} {JOB_EXEC_CODES.get(status, '(a JOB_EXEC code)')}"
    return exit_in_words(status)


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
