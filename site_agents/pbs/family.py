"""What the OpenPBS and Torque dialects share: ``qsub``/``qstat``/``qdel``/``pbsnodes`` conventions."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

from metasched.records import Resources
from site_agents.batch.dialect import JobStatus, seconds_of
from site_agents.batch.forecast import QueuedJob
from site_agents.runner import CommandOutput

_UNREACHABLE = ("cannot connect to", "unable to contact", "connection refused", "communication failure",
                "could not connect", "timed out")


def sequence_number(job_id: str) -> str:
    """The part of a job id that is unique within one server ("123" of "123.server.domain").

    qsub and qstat may print a job's server name differently (short or fully qualified); jobs are
    matched on this part.
    """
    return job_id.strip().split(".", 1)[0]


_YEAR_S = 365 * 86400.0  # a longer limit means none (the Torque-style wrappers print Slurm's UNLIMITED so)


def queued_job(job_id: str, attrs: Mapping[str, object], now: datetime) -> QueuedJob | None:
    """One job of a whole-queue ``qstat -f`` for the wait forecast (None: held, waiting, finished...).

    `attrs` maps attribute names as ``qstat -f`` prints them (``Resource_List.ncpus``...) to values. A
    running job (R, E) keeps what is left of its ``walltime`` after ``resources_used.walltime``; a
    queued one (Q) its whole limit and the server's ``estimated.start_time`` where it keeps one.
    """
    letter = str(attrs.get("job_state", ""))
    if letter not in ("R", "E", "Q"):
        return None
    limit = seconds_of(str(attrs.get("Resource_List.walltime", "")))
    limit = None if limit is not None and limit > _YEAR_S else limit
    if letter != "Q" and limit is not None:
        limit = max(0.0, limit - (seconds_of(str(attrs.get("resources_used.walltime", ""))) or 0.0))
    expected = None
    with contextlib.suppress(ValueError):
        start = datetime.strptime(str(attrs.get("estimated.start_time", "")), "%a %b %d %H:%M:%S %Y")
        expected = max(0.0, (start - now).total_seconds()) if letter == "Q" else None
    return QueuedJob(job_id=sequence_number(job_id), user=str(attrs.get("Job_Owner", "")).split("@")[0],
                     running=letter != "Q", cores=_cores(attrs), remaining_s=limit, expected_start_s=expected)


def _cores(attrs: Mapping[str, object]) -> int:
    """``Resource_List.ncpus``, else nodes x ppn of ``Resource_List.nodes`` (Torque), else 1."""
    ncpus = str(attrs.get("Resource_List.ncpus", ""))
    if ncpus.isdigit():
        return max(1, int(ncpus))
    nodes = re.fullmatch(r"(\d+)(?::ppn=(\d+))?.*", str(attrs.get("Resource_List.nodes", "")))
    return int(nodes.group(1)) * int(nodes.group(2) or 1) if nodes else 1


def server_unreachable(output: str) -> bool:
    """True when a client program failed because the server did not answer (not because of the job)."""
    text = output.lower()
    return any(marker in text for marker in _UNREACHABLE)


def quoted_path(path: str) -> str:
    """A path as a PBS directive takes it: double-quoted (OpenPBS refuses an unquoted space).

    A path with a double quote, a newline or a backslash cannot be written in a directive at all.
    """
    if any(c in path for c in '"\n\r\\'):
        raise ValueError(f"the path {path!r} cannot be written in a #PBS directive (it holds a double "
                         "quote, a backslash or a newline): use a shared_dir without them")
    return f'"{path}"'


class PBSFamily:
    """The parts of a PBS dialect that do not depend on the flavour (a base of OpenPBS and Torque)."""

    give_up_on: tuple[str, ...] = ()

    def __init__(self, *, queue: str | None = None, account: str | None = None) -> None:
        self.queue = queue
        self.account = account

    def parse_submitted(self, out: CommandOutput) -> str | None:
        """The job id qsub printed: its last line (``123.server``, or a bare ``123``)."""
        lines = out.stdout.strip().splitlines()
        last = lines[-1].strip() if lines else ""
        return last if last and sequence_number(last).isdigit() else None

    def prepare(self, run: Callable[[list[str]], CommandOutput]) -> None:
        """Nothing to learn at start."""

    def unreachable(self, out: CommandOutput) -> bool:
        """A connection error from the client programs."""
        return server_unreachable(out.stdout + out.stderr)

    def status_key(self, job_id: str) -> str:
        """Qsub and qstat may print the server's name differently: match on the sequence number."""
        return sequence_number(job_id)

    def delete_argv(self, job_ids: Sequence[str]) -> list[str]:
        """Delete several jobs in one call."""
        return ["qdel", *job_ids]

    def delete_by_name_argvs(self, names: Sequence[str]) -> list[list[str]] | None:
        """None: qdel takes ids only (the jobs are found by name in the status listing)."""
        return None

    def start_argv(self, shape: Resources, *, limit_s: float | None, memory: bool) -> list[str] | None:
        """None: qsub cannot ask when a job would start without queueing it.

        OpenPBS's estimated starts are read from the queue listing instead.
        """
        return None

    def parse_start(self, out: CommandOutput) -> float | None:
        """Never asked (see start_argv)."""
        return None

    def accounting_argvs(self, job_ids: Sequence[str]) -> list[list[str]]:
        """No accounting look-up: finished jobs stay in qstat (job history, keep_completed)."""
        return []

    def parse_accounting(self, text: str) -> Mapping[str, JobStatus]:
        """No accounting."""
        return {}

    def hold_reason_argv(self, job_id: str) -> list[str] | None:
        """The comment in qstat says why a job is held."""
        return None

    def parse_hold_reason(self, text: str) -> str:
        """No separate look-up."""
        return ""

    def signal_argv(self, job_ids: Sequence[str], signal: str) -> list[str] | None:
        """Not offered yet: qsig is untested here (and missing from the Torque-style wrappers)."""
        return None

    def parallel_prefix(self, nodes: int) -> tuple[str, ...]:
        """One chunk per node; the command runs once, on the first node (it may start mpiexec itself)."""
        return ()
