"""How an attempt ended, as a tagged union the scheduler handles with ``match``.

An agent reports exactly one of these per attempt: ``Succeeded`` (the pickled result, or a ref of it in
the site's store), ``Failed`` (the task's own failure, or one the site reports for it), ``RestoreFailed``
(the attempt could not continue from its checkpoint: the scheduler falls back to a restart),
``Lost`` (the site lost the attempt; ``reason`` says how, ``charge_retry`` whether it uses one of the
task's retries), ``Cancelled`` (metasched stopped it) or ``Checkpointed`` (it stopped with a checkpoint
the next attempt continues from).

Also here: the one description of a finished command (the same wherever it ran) and of an exit status.
"""

from __future__ import annotations

import dataclasses
import enum
import signal
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cloudpickle

from metasched.records import STDERR_TAIL, CommandResult, RemoteFailure, TaskSpec, Usage

if TYPE_CHECKING:
    from metasched.data.objects import DataContext, DataRef


class LossReason(enum.Enum):
    """Why a site lost an attempt (the attempt's journaled reason)."""

    VANISHED = "vanished"  # the scheduler stopped listing the job and it left no outcome
    DELETED_OUTSIDE = "deleted outside metasched"  # scancel/qdel by a user or an admin
    NODE_FAILURE = "node failure"
    SITE_UNAVAILABLE = "site unavailable"  # the server did not answer a submission: placed again
    STALLED = "stalled"  # waited too long on unusable nodes: withdrawn to run elsewhere
    KILLED = "killed"  # the job ended by a signal from outside the task, without a result
    WORKER_DIED = "worker died"  # the process running it died (local site)
    NEIGHBOUR_STOPPED = "neighbour stopped"  # a packed neighbour was cancelled (local site)
    SCHEDULER_RESTART = "scheduler restart"  # the scheduler that tracked it is gone
    BLOCK_ENDED = "pilot block ended"  # the pilot block it ran in was cancelled, timed out or lost a node


class CheckpointReason(enum.Enum):
    """Why an attempt stopped with a checkpoint."""

    REQUESTED = "requested"  # a migration (or a drain) asked for it
    WALLTIME = "walltime"  # its time limit was near


@dataclass(frozen=True, slots=True, kw_only=True)
class Succeeded:
    """The task returned: its serialized result (or an encoded ref of it in the site's store)."""

    result: bytes
    usage: Usage | None = None  # None where the worker could not measure it
    stdout: str = ""  # the ends of what a Python task printed (a command's output is in its result)
    stderr: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Failed:
    """The task failed, or the site ended it without a result for a reason of the task's."""

    failure: RemoteFailure
    usage: Usage | None = None

    def with_files(self, files: tuple[str, ...]) -> Failed:
        """The same failure, saying where the attempt's whole output is."""
        return dataclasses.replace(self, failure=dataclasses.replace(self.failure, files=files))


@dataclass(frozen=True, slots=True, kw_only=True)
class RestoreFailed:
    """The attempt could not restore the task's checkpoint; the next one starts from scratch."""

    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Lost:
    """The site lost the attempt; the task may run again."""

    reason: LossReason
    detail: str
    charge_retry: bool = True  # False when the loss was the site's doing, not the task's

    def describe(self) -> str:
        """The reason and what the site said, for the journal."""
        return f"{self.reason.value}: {self.detail}" if self.detail else self.reason.value


@dataclass(frozen=True, slots=True, kw_only=True)
class Cancelled:
    """Metasched stopped the attempt."""

    detail: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Checkpointed:
    """The attempt stopped with this checkpoint (in the site's store); the next attempt continues it."""

    ref: DataRef
    reason: CheckpointReason
    detail: str = ""
    usage: Usage | None = None


TaskOutcome = Succeeded | Failed | RestoreFailed | Lost | Cancelled | Checkpointed


def failed(error_type: str, message: str, *, traceback: str = "", walltime_exceeded: bool = False,
           stdout: str = "", stderr: str = "") -> Failed:
    """A failure as the site or the worker reports it (with the ends of what the attempt printed)."""
    return Failed(failure=RemoteFailure(error_type=error_type, message=message, traceback=traceback,
                                        walltime_exceeded=walltime_exceeded, stdout=stdout[-STDERR_TAIL:],
                                        stderr=stderr[-STDERR_TAIL:]))


def describe_exit(status: int) -> str:
    """An exit status in words: a plain status, or the signal that killed the process.

    A shell reports a child killed by signal N as 128 + N (137: SIGKILL, e.g. the out-of-memory killer);
    PBS reports a job its MoM killed by signal N as 256 + N.
    """
    for base in (256, 128):
        if base < status < base + 65:
            number = status - base
            try:
                name = signal.Signals(number).name
            except ValueError:
                name = f"signal {number}"
            return f"killed by signal {number} ({name}, exit status {status})"
    return f"exit status {status}"


def command_outcome(spec: TaskSpec, *, returncode: int, stdout: str, stderr: str,
                    walltime_exceeded: bool = False) -> TaskOutcome:
    """The outcome of a finished command, the same wherever it ran (a worker, a batch job's script)."""
    command = spec.command
    argv = command.argv if command is not None else ()
    if walltime_exceeded:
        message = (f"walltime of {spec.resources.walltime_s:g} s exceeded; process group of "
                   f"{argv[0] if argv else '?'!r} killed")
        return failed("WalltimeExceeded", message, walltime_exceeded=True, stdout=stdout, stderr=stderr)
    if (command is None or command.check) and returncode != 0:
        return failed("CommandFailed", f"command {list(argv)!r} {_ended(returncode)}", stdout=stdout,
                      stderr=stderr)
    result = CommandResult(argv=argv, returncode=returncode, stdout=stdout, stderr=stderr)
    return Succeeded(result=cloudpickle.dumps(result))


def _ended(returncode: int) -> str:
    if returncode < 0:  # subprocess: killed by signal -returncode
        return describe_exit(128 - returncode)
    said = describe_exit(returncode)
    return f"was {said}" if said.startswith("killed") else f"exited with status {returncode}"


def reported(outcome: TaskOutcome) -> tuple[Usage | None, tuple[str, str]]:
    """What the attempt used, and the ends of its stdout and stderr: a Python task's prints, a failure's."""
    match outcome:
        case Succeeded(usage=usage, stdout=out, stderr=err):
            return usage, (out, err)
        case Failed(usage=usage, failure=failure):
            return usage, (failure.stdout, failure.stderr)
        case Checkpointed(usage=usage):
            return usage, ("", "")
    return None, ("", "")


def with_usage(outcome: TaskOutcome, usage: Usage | None) -> TaskOutcome:
    """The outcome with `usage`, if it is one that carries usage and has none yet."""
    if usage is None or not isinstance(outcome, Succeeded | Failed | Checkpointed):
        return outcome
    if outcome.usage is not None:
        return outcome
    return dataclasses.replace(outcome, usage=usage)


def store_if_big(spec: TaskSpec, outcome: TaskOutcome, data: DataContext | None) -> TaskOutcome:
    """Put a result bigger than the threshold in the site's store; the outcome then carries its ref."""
    if data is None or not isinstance(outcome, Succeeded) or len(outcome.result) <= data.threshold:
        return outcome
    from metasched.data.objects import encode_ref, put_blob

    ref = put_blob(data.store, outcome.result, object_id=spec.task_id)
    return dataclasses.replace(outcome, result=encode_ref(ref))
