"""What the OpenPBS and Torque dialects share: ``qsub``/``qstat``/``qdel``/``pbsnodes`` conventions."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from site_agents.batch.dialect import JobStatus
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

    def delete_by_name_argvs(self, names: Sequence[str]) -> list[list[str]]:
        """None: qdel takes ids only (a name would need qselect first)."""
        return []

    def queue_argv(self) -> list[str] | None:
        """Not read yet: the site's wait is learned from the waits of our own jobs alone."""
        return None

    def parse_queue(self, out: CommandOutput) -> list[QueuedJob] | None:
        """No whole-queue listing."""
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
