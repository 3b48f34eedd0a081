"""An attempt's directory: the one owner of its layout and of every read and write of it.

A batch attempt is a directory in its site's shared filesystem (``<shared_dir>/.metasched/attempts/<id>``).
The agent writes the job script and the attempt's inputs there; the job (the command script, the worker,
the CRIU wrapper) writes how the attempt ended and what it saw on the way; the agent reads that record
first and asks the scheduler only to explain a job that ended without one. Job scripts, the worker
(``metasched.worker``), the CRIU wrapper (``metasched.checkpoint.criu_job``), cooperative checkpoints and
every agent go through this class, so no file name is spelled anywhere else.

Imports only the standard library and metasched's records at module level: the CRIU wrapper runs it on a
compute node's own Python.
"""

from __future__ import annotations

import json
import os
import pickle
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any

from metasched.attempt_records import AttemptInputs, CheckpointRecord, ExitStatus, parse_exit_status
from metasched.records import STDERR_TAIL, TaskSpec, Usage

if TYPE_CHECKING:
    from metasched.data.objects import DataContext, DataRef
    from metasched.data.stores import StoreSpec
    from metasched.outcomes import TaskOutcome

def write_atomically(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that a reader sees the old file or the whole new one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def group_writable(path: Path) -> None:
    """Let the directory's group write it too (a site whose commands run as another user of that group)."""
    path.chmod(path.stat().st_mode | stat.S_IRWXG)


def site_area(shared_dir: str) -> Path:
    """The directory of metasched's own in a site's shared filesystem (attempts, staged worker, store)."""
    return Path(shared_dir) / ".metasched"


class AttemptDir:
    """One attempt's directory (see the module docstring); cheap to build, does no I/O until asked.

    `path` is where the site's jobs see it (what job scripts and scheduler commands name); `here` is where
    this process reads and writes it: the same place on a shared filesystem, a local copy of it for a site
    reached over SSH (``site_agents.batch.transport``, which moves the files between the two).
    """

    def __init__(self, path: str | os.PathLike[str], *, here: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path)
        self.here = self.path if here is None else Path(here)

    @staticmethod
    def root(shared_dir: str) -> Path:
        """Where a site's attempt directories live, in its shared filesystem."""
        return site_area(shared_dir) / "attempts"

    @classmethod
    def of(cls, shared_dir: str, attempt_id: str, *, local_area: Path | None = None) -> AttemptDir:
        """The directory of one attempt at a site (kept here in `local_area`, the site area's local copy)."""
        here = None if local_area is None else local_area / "attempts" / attempt_id
        return cls(cls.root(shared_dir) / attempt_id, here=here)

    def _local(self, path: Path) -> Path:
        """Where this process reads or writes one of the directory's files."""
        return path if self.here == self.path else self.here / path.relative_to(self.path)

    @property
    def attempt_id(self) -> str:
        """The attempt this directory belongs to."""
        return self.path.name

    def create(self, *, for_group: bool = False) -> AttemptDir:
        """Make the directory (and its parents) if missing; `for_group`: writable by its group too."""
        self.here.mkdir(parents=True, exist_ok=True)
        if for_group:
            group_writable(self.here)
        return self

    def exists(self) -> bool:
        """Whether the directory is there (a re-attached attempt's must be)."""
        return self.here.is_dir()

    def __repr__(self) -> str:
        return f"AttemptDir({str(self.path)!r})"

    # ------------------------------------------------------------------ files job scripts write
    @property
    def script(self) -> Path:
        """The job script the scheduler runs."""
        return self.path / "job.sh"

    @property
    def job_stdout(self) -> Path:
        """The job's own standard output (the scheduler writes it)."""
        return self.path / "job.out"

    @property
    def job_stderr(self) -> Path:
        """The job's own standard error (the scheduler writes it)."""
        return self.path / "job.err"

    @property
    def exit_status_file(self) -> Path:
        """``<exit status> <start epoch> <end epoch>`` of a command, written atomically when it ends."""
        return self.path / "exit-status"

    @property
    def command_stdout(self) -> Path:
        """A command task's standard output."""
        return self.path / "cmd.out"

    @property
    def command_stderr(self) -> Path:
        """A command task's standard error."""
        return self.path / "cmd.err"

    @property
    def warning_file(self) -> Path:
        """Written when the scheduler warned that the time limit is near (Slurm's USR1)."""
        return self.path / "walltime-warning"

    @property
    def claim_marker(self) -> Path:
        """Made (``mkdir``, atomic) by the first run of the job; a second run of it finds it and stops."""
        return self.path / "claimed"

    @property
    def refused_runs_file(self) -> Path:
        """One line per further run of the job the claim refused: ``<epoch> <job id> <host>``."""
        return self.path / "refused-runs"

    @property
    def container_stdout(self) -> Path:
        """Standard output of the attempt's container (local site, Docker)."""
        return self.path / "container.out"

    @property
    def container_stderr(self) -> Path:
        """Standard error of the attempt's container (local site, Docker)."""
        return self.path / "container.err"

    @property
    def container_check_file(self) -> Path:
        """Written by a container job whose image or Python is unusable on its node."""
        return self.path / "container-check"

    # ------------------------------------------------------------------ inputs and outcomes
    def write_script(self, text: str) -> None:
        """The job script (directives, prologue, body)."""
        self._local(self.script).write_text(text)

    def write_inputs(self, inputs: AttemptInputs) -> None:
        """Store the attempt where the job's worker reads it."""
        self.create()
        write_atomically(self.here / "attempt.pkl", pickle.dumps(inputs, protocol=pickle.HIGHEST_PROTOCOL))

    def read_inputs(self) -> AttemptInputs:
        """The attempt the agent stored."""
        inputs: AttemptInputs = pickle.loads((self.here / "attempt.pkl").read_bytes())
        return inputs

    def write_outcome(self, outcome: TaskOutcome) -> None:
        """The worker's record of how the attempt ended."""
        write_atomically(self.here / "outcome.pkl", pickle.dumps(outcome, protocol=pickle.HIGHEST_PROTOCOL))

    def worker_outcome(self) -> TaskOutcome | None:
        """The outcome the worker wrote, or None (yet)."""
        try:
            data = (self.here / "outcome.pkl").read_bytes()
        except FileNotFoundError:
            return None
        outcome: TaskOutcome = pickle.loads(data)
        return outcome

    def write_exit_status(self, returncode: int, start: float, end: float) -> None:
        """A command's exit status and span (the CRIU wrapper's; the command script writes its own)."""
        write_atomically(self._local(self.exit_status_file), f"{returncode} {start} {end}\n".encode())

    def exit_status(self) -> ExitStatus | None:
        """What a command's job recorded, or None until it is complete."""
        try:
            return parse_exit_status(self._local(self.exit_status_file).read_text())
        except FileNotFoundError:
            return None

    def command_outcome(self, spec: TaskSpec, data: DataContext | None) -> TaskOutcome | None:
        """A command job's outcome from its exit status and output files; None until it is complete.

        A walltime stop is recognised by the exit status of ``timeout`` (124, or 137 after its KILL) and
        the time the command ran; a big output goes to the site's store like any result.
        """
        from metasched.outcomes import command_outcome, store_if_big, with_usage

        status = self.exit_status()
        if status is None:
            return None
        walltime = spec.resources.walltime_s
        stopped = (walltime is not None and status.returncode in (124, 137)
                   and status.elapsed_s >= walltime - 0.5)
        outcome = command_outcome(spec, returncode=status.returncode, walltime_exceeded=stopped,
                                  stdout=tail(self._local(self.command_stdout), None),
                                  stderr=tail(self._local(self.command_stderr), None))
        if status.cpu_s is not None:  # no Python on the node: no memory peak
            outcome = with_usage(outcome, Usage(wall_s=status.elapsed_s, cpu_s=status.cpu_s, max_rss_mb=None))
        return store_if_big(spec, outcome, data)

    # ------------------------------------------------------------------ what the job saw
    def note_walltime_warning(self, at: float) -> None:
        """Record the scheduler's warning that the time limit is near."""
        self._local(self.warning_file).write_text(f"{at}\n")

    def refused_runs(self) -> list[str]:
        """The further runs of the job that the claim refused (a scheduler ran the job again)."""
        return [line for line in tail(self._local(self.refused_runs_file), None).splitlines() if line.strip()]

    def output_files(self) -> tuple[str, ...]:
        """The attempt's output files that exist: the job's own, a command's, a container's."""
        paths = (self.job_stdout, self.job_stderr, self.command_stdout, self.command_stderr,
                 self.container_stdout, self.container_stderr)
        return tuple(str(here) for here in map(self._local, paths) if here.exists())

    def job_output(self) -> str:
        """What the job itself printed (a probe job's answer), stripped; empty if nothing (yet)."""
        return tail(self._local(self.job_stdout), None).strip()

    def stderr_tail(self, limit: int = STDERR_TAIL) -> str:
        """The end of the job's own stderr (why a job ended without a record)."""
        return tail(self._local(self.job_stderr), limit)

    def command_output_tail(self, limit: int = STDERR_TAIL) -> tuple[str, str]:
        """The ends of a command's stderr and stdout (a pilot's own words, for a block that never joined)."""
        return tail(self._local(self.command_stderr), limit), tail(self._local(self.command_stdout), limit)

    def container_check(self) -> str | None:
        """What a container job's check on its node found wrong, or None."""
        try:
            return self._local(self.container_check_file).read_text()
        except FileNotFoundError:
            return None

    # ------------------------------------------------------------------ CRIU checkpoints
    @property
    def criu_task_file(self) -> Path:
        """The CRIU wrapper's task: argv, env, working directory, restore archive, time limit."""
        return self.path / "task.json"

    @property
    def images_dir(self) -> Path:
        """CRIU's image directory (dump and restore)."""
        return self.path / "images"

    @property
    def checkpoint_archive(self) -> Path:
        """The archive of a stopping checkpoint (images + working directory)."""
        return self.path / "checkpoint.tar"

    @property
    def checkpoint_record_file(self) -> Path:
        """Size, hash and reason of ``checkpoint_archive``; its presence means the job checkpointed."""
        return self.path / "checkpoint.json"

    @property
    def restart_request_file(self) -> Path:
        """Made by the agent: take a restart point now and keep running (or, if it says "stop", stop)."""
        return self.path / "checkpoint-now"

    @property
    def restore_timing_file(self) -> Path:
        """How long unpacking and restoring took (written by the wrapper)."""
        return self.path / "restore.json"

    @property
    def restored_pid_file(self) -> Path:
        """The restored task's pid, as ``criu restore --pidfile`` writes it."""
        return self.path / "restored.pid"

    def restart_archive(self, number: int) -> Path:
        """The archive of the n-th restart point (the task kept running)."""
        return self.path / f"restart-{number}.tar"

    def restart_record_file(self, number: int) -> Path:
        """The record of the n-th restart point."""
        return self.path / f"restart-{number}.json"

    def write_criu_task(self, task: dict[str, Any]) -> None:
        """The CRIU wrapper's task."""
        self.create()
        self._local(self.criu_task_file).write_text(json.dumps(task))

    def restores(self) -> bool:
        """Whether this attempt continues from a checkpoint (a CRIU restore, or a cooperative state)."""
        if self._local(self.criu_task_file).exists():
            return bool(self.read_criu_task().get("restore"))
        try:
            return self.read_inputs().restore is not None
        except (OSError, EOFError, pickle.UnpicklingError):
            return False

    def read_criu_task(self) -> dict[str, Any]:
        """The CRIU wrapper's task."""
        task: dict[str, Any] = json.loads(self._local(self.criu_task_file).read_text())
        return task

    def write_checkpoint_record(self, path: Path, record: dict[str, Any]) -> None:
        """A checkpoint's (or restart point's) record, written last and atomically."""
        write_atomically(path, json.dumps(record).encode())

    def request_restart_point(self, *, stop: bool = False) -> None:
        """Ask the running wrapper for a restart point, or (`stop`) a checkpoint that ends the attempt."""
        write_atomically(self._local(self.restart_request_file), b"stop" if stop else b"")

    def take_restart_request(self) -> str | None:
        """What the agent asked the wrapper for: "stop", "restart point" or None; the request is consumed."""
        try:
            said = self._local(self.restart_request_file).read_bytes()
        except FileNotFoundError:
            return None
        self._local(self.restart_request_file).unlink(missing_ok=True)
        return "stop" if said == b"stop" else "restart point"

    def write_criu_error(self, text: str) -> None:
        """Why the wrapper could not start, restore or checkpoint the task (the attempt fails)."""
        (self.here / "criu-error").write_text(f"{text}\n")

    def criu_error(self) -> str | None:
        """The wrapper's fatal error, or None."""
        try:
            return (self.here / "criu-error").read_text().strip()
        except FileNotFoundError:
            return None

    def note_checkpoint_failed(self, text: str) -> None:
        """A checkpoint failed but the task goes on."""
        (self.here / "checkpoint-failed").write_text(f"{text}\n")

    def take_checkpoint(self, store: StoreSpec, object_id: str) -> CheckpointRecord | None:
        """The stopping checkpoint the wrapper wrote, adopted into `store` once (None if there is none)."""
        try:
            record = json.loads(self._local(self.checkpoint_record_file).read_text())
        except FileNotFoundError:
            return None
        ref = self._adopt(self.checkpoint_record_file.name, record, store, object_id)
        return CheckpointRecord(ref=ref, reason=str(record["reason"]), dump_s=float(record["dump_s"]))

    def take_restart_point(self, store: StoreSpec) -> DataRef | None:
        """The newest restart point the running wrapper took, adopted into `store`; older ones are dropped."""
        from metasched.data.objects import discard_files

        notes = sorted(self.here.glob("restart-*.json"), key=lambda p: int(p.stem.split("-")[1]))
        if not notes:
            return None
        where = self._where(store)
        discard_files(store, [str(where / name) for old in notes[:-1]
                              for name in (json.loads(old.read_text())["archive"], old.name)])
        for old in notes[:-1]:
            old.unlink(missing_ok=True)
        record = json.loads(notes[-1].read_text())
        return self._adopt(notes[-1].name, record, store, f"{self.attempt_id}.{notes[-1].stem}")

    def _adopt(self, note: str, record: dict[str, Any], store: StoreSpec, object_id: str) -> DataRef:
        """The archive `note` announced, made an object of `store` where the store is (over SSH: there).

        The note is renamed ``<note>.adopted`` there and here, so an archive is adopted once.
        """
        from metasched.data.objects import adopt_file

        where = self._where(store)
        ref = adopt_file(str(where / record["archive"]), store, object_id=object_id, size=int(record["size"]),
                         digest=str(record["digest"]), record=str(where / note))
        if (self.here / note).exists():  # the local copy of a site reached over SSH
            (self.here / note).rename(self.here / f"{note}.adopted")
        return ref

    def _where(self, store: StoreSpec) -> Path:
        """This directory as seen where `store` is: here, or (a store over SSH) at the site."""
        from metasched.data.stores import over_ssh

        return self.path if over_ssh(store) else self.here

    # ------------------------------------------------------------------ cooperative checkpoints
    def save_cooperative(self, ref: DataRef) -> None:
        """Record the state a cooperative task just saved (the agent reports it as a restart point)."""
        write_atomically(self.here / "coop-checkpoint", pickle.dumps(ref))

    def cooperative_checkpoint(self) -> DataRef | None:
        """The last state a cooperative task saved, if any."""
        try:
            ref: DataRef = pickle.loads((self.here / "coop-checkpoint").read_bytes())
        except FileNotFoundError:
            return None
        return ref


def tail(path: Path, limit: int | None = STDERR_TAIL) -> str:
    """The end of a text file (all of it with limit=None); empty if it cannot be read."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return text if limit is None else text[-limit:]
