"""How an attempt starts inside its allocation: the worker, a command, Apptainer, or the CRIU wrapper.

As Parsl keeps launchers apart from providers, a launcher knows nothing of the scheduler: it writes the
attempt's inputs and job script (``write``) and reads the records only it produces (``outcome``,
``progress``), all through ``metasched.attempt_dir``. The agent picks one per attempt (``Launchers.for_``).
"""

from __future__ import annotations

import math
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass

from metasched.attempt_dir import AttemptDir
from metasched.attempt_records import AttemptInputs
from metasched.data.objects import DataRef, local_path, store_paths
from metasched.outcomes import (
    Checkpointed,
    CheckpointReason,
    RestoreFailed,
    TaskOutcome,
    failed,
)
from metasched.records import Capability, CheckpointKind, Image, Resources, TaskKind, TaskSpec
from metasched.sites.base import AttemptUpdate, Submission
from site_agents.batch import scripts
from site_agents.batch.config import BatchSite
from site_agents.batch.dialect import WALLTIME_MARGIN_S, Dialect, can_signal
from site_agents.batch.jobs import BatchJob, Launcher
from site_agents.containers import python_mismatch

#: The Python that pickled the functions this process submits (a node's worker must match it).
DRIVER_PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


class LaunchRefused(Exception):  # noqa: N818  (not an error of metasched's: a reason to fail an attempt)
    """An attempt cannot be started here; its message is the attempt's failure."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type


def refused(sub: Submission, exc: LaunchRefused | ValueError) -> AttemptUpdate:
    """The failure of an attempt its launcher refused, or whose job script could not be written."""
    kind = exc.error_type if isinstance(exc, LaunchRefused) else "SubmitError"
    return AttemptUpdate(attempt_id=sub.attempt_id, outcome=failed(kind, str(exc)))


def _inputs(sub: Submission) -> AttemptInputs:
    return AttemptInputs(spec=sub.spec, function=sub.function, dependency_results=sub.dependency_results,
                         data=sub.data, restore=sub.restore)


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerLauncher:
    """A Python function task: metasched's worker runs it on the node (cooperative checkpoints too)."""

    python: str
    pythonpath: str

    def write(self, sub: Submission, attempt: AttemptDir) -> str:
        """Store the attempt's inputs; the script runs the worker on them."""
        attempt.write_inputs(_inputs(sub))
        body = scripts.python_module_body(attempt, module="metasched.worker", python=self.python,
                                          pythonpath=self.pythonpath)
        return scripts.script(attempt, sub.spec, what="Python task", body=body)

    def outcome(self, job: BatchJob) -> TaskOutcome | None:
        """The worker's outcome record."""
        return job.attempt.worker_outcome()

    def progress(self, job: BatchJob) -> DataRef | None:
        """A state a cooperative task saved since the last look."""
        if job.spec.checkpoint is not CheckpointKind.COOPERATIVE:
            return None
        saved = job.attempt.cooperative_checkpoint()
        if saved is None or saved.object_id == job.last_saved:
            return None
        job.last_saved = saved.object_id
        return saved


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandLauncher:
    """A command task run directly by the job script (no Python start-up on the node)."""

    parallel_prefix: Callable[[int], tuple[str, ...]]

    def write(self, sub: Submission, attempt: AttemptDir) -> str:
        """The command script (multi-node commands start once per node through the dialect's prefix)."""
        nodes = sub.spec.resources.nodes
        prefix = self.parallel_prefix(nodes) if nodes > 1 else ()
        body = scripts.command_body(attempt, sub.spec, prefix=prefix)
        return scripts.script(attempt, sub.spec, what="command task", body=body)

    def outcome(self, job: BatchJob) -> TaskOutcome | None:
        """The exit status the script recorded, with the command's output."""
        return job.attempt.command_outcome(job.spec, job.data)

    def progress(self, job: BatchJob) -> DataRef | None:
        """Commands take no restart points."""
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class ApptainerLauncher:
    """A task with ``container=Image(sif=...)``: checked on the node, then run in ``apptainer exec``.

    The job first checks that the SIF is readable and (Python tasks) that the image's Python has the
    driver's major.minor version; a failed check ends the attempt with a ``ContainerError`` that says what
    to fix. The attempt directory, the site's shared directory, the task's working directory and its file
    stores are bound at their own paths.
    """

    apptainer: tuple[str, ...]
    shared_dir: str
    pythonpath: str
    site: str

    def write(self, sub: Submission, attempt: AttemptDir) -> str:
        """The container job script (the attempt's inputs stored for Python tasks)."""
        image = _image(sub.spec)
        sif = image.sif or ""
        bind = [self.shared_dir, *store_paths(sub.data)]
        if sub.spec.kind is TaskKind.COMMAND:
            command = sub.spec.command
            cwd = command.cwd if command is not None and command.cwd else str(attempt.path)
            wrap = [*self.apptainer, "--bind", scripts.binds([str(attempt.path), cwd, *bind]), "--pwd", cwd,
                    sif]
            precheck = "\n".join([scripts.missing_image_check(attempt, sif, "record 127; exit 127"),
                                  scripts.make_binds(bind)])
            body = scripts.command_body(attempt, sub.spec, wrap=wrap, precheck=precheck)
            return scripts.script(attempt, sub.spec, what=f"command task in {image.name}", body=body)
        attempt.write_inputs(_inputs(sub))
        body = scripts.apptainer_python_body(attempt, apptainer=self.apptainer, sif=sif, python=image.python,
                                             bind=bind, pythonpath=self.pythonpath, want=DRIVER_PYTHON)
        return scripts.script(attempt, sub.spec, what=f"Python task in {image.name}", body=body)

    def outcome(self, job: BatchJob) -> TaskOutcome | None:
        """A failed check on the node, else the worker's or the command's record."""
        check = job.attempt.container_check()
        if check is not None:
            return failed("ContainerError", check_problem(check, job.spec, self.site))
        if job.spec.kind is TaskKind.COMMAND:
            return job.attempt.command_outcome(job.spec, job.data)
        return job.attempt.worker_outcome()

    def progress(self, job: BatchJob) -> DataRef | None:
        """Container tasks take no restart points here."""
        return None


def _image(spec: TaskSpec) -> Image:
    if spec.container is None or spec.container.sif is None:
        raise LaunchRefused("ContainerError", f"task {spec.name!r} has no Apptainer image (Image(sif=...))")
    return spec.container


def check_problem(text: str, spec: TaskSpec, site: str) -> str:
    """The user's message for what a container job's check on its node recorded."""
    image = _image(spec)
    first, _, answer = text.partition("\n")
    kind, _, host = first.partition(" ")
    if kind == "missing":
        return (f"image {image.name!r}: {image.sif} is not readable on node {host or '?'} of site {site}; "
                "put the SIF on a filesystem the compute nodes share (build it with `apptainer build`)")
    have = answer.strip()
    if not re.fullmatch(r"\d+\.\d+", have):
        return (f"image {image.name!r} cannot run {image.python!r} for Python tasks on node {host}: "
                f"{have[-300:]}")
    return python_mismatch(image.name, have=have, python=image.python, want=DRIVER_PYTHON)


@dataclass(frozen=True, slots=True, kw_only=True)
class CriuLauncher:
    """A ``checkpoint="criu"`` command task: the CRIU wrapper (``metasched.checkpoint.criu_job``) runs it.

    The wrapper is the batch shell itself (``exec``), so the scheduler's USR1 warning and a USR2 from
    metasched reach it. It records a checkpoint (adopted into the site's store here), a restart point, or
    the command's exit status like a plain command job.
    """

    python: str
    pythonpath: str
    checkpoint_dir: str
    criu: str
    signal_lead_s: int
    site: str
    leave_by: float | None = None  # in a pilot block: its end less the lead (time.time()), see criu_job

    def write(self, sub: Submission, attempt: AttemptDir) -> str:
        """The wrapper's task (time limit and warning lead as the scheduler enforces them) and script."""
        spec = sub.spec
        restore = None
        if sub.restore is not None:
            try:
                restore = local_path(sub.restore)
            except TypeError:
                raise LaunchRefused("CheckpointError", f"site {self.site}: checkpoints must be in a file "
                                    f"store to be restored; {sub.restore.describe()} is not") from None
        command = spec.command
        if command is None:
            raise LaunchRefused("CheckpointError", f"task {spec.name!r}: checkpoint='criu' is for commands")
        walltime = spec.resources.walltime_s
        attempt.write_criu_task({
            "argv": list(command.argv), "env": dict(command.env),
            "workdir": os.path.join(self.checkpoint_dir, spec.task_id), "criu": self.criu, "restore": restore,
            "checkpoint_on_warning": walltime is not None, "checkpoint_every_s": spec.checkpoint_every_s,
            "time_limit_s": time_limit_s(spec) if walltime is not None else None,
            "lead_s": warning_lead_s(walltime, self.signal_lead_s) if walltime is not None else None,
            "leave_by": self.leave_by})
        body = scripts.python_module_body(attempt, module="metasched.checkpoint.criu_job", python=self.python,
                                          pythonpath=self.pythonpath)
        return scripts.script(attempt, spec, what="checkpointable command task", body=body,
                              path=scripts.SBIN_PATH)

    def outcome(self, job: BatchJob) -> TaskOutcome | None:
        """A checkpoint the wrapper took, or why it could not run, else the command's exit status."""
        record = job.attempt.take_checkpoint(job.store, object_id=f"{job.attempt_id}.ckpt")
        if record is not None:
            detail = (f"{record.reason} checkpoint at {self.site}: {record.ref.size / 1e6:.1f} MB, dump "
                      f"{record.dump_s:.2f} s")
            return Checkpointed(ref=record.ref, reason=CheckpointReason(record.reason), detail=detail)
        error = job.attempt.criu_error()
        if error is not None:
            message = f"{job.where} at site {self.site}: {error}"
            if job.restoring:
                return RestoreFailed(message=message)
            return failed("CheckpointError", message, traceback=job.attempt.stderr_tail())
        return job.attempt.command_outcome(job.spec, job.data)

    def progress(self, job: BatchJob) -> DataRef | None:
        """The newest restart point the running wrapper took (older unreported ones are dropped)."""
        return job.attempt.take_restart_point(job.store)


def time_limit_s(spec: TaskSpec) -> float | None:
    """The time limit a job asks its scheduler for, in whole minutes.

    A checkpointable task gets exactly its walltime (rounded up to the minute): its walltime is per
    attempt, and the scheduler's warning makes it checkpoint and continue in a new attempt. Any other task
    gets ``WALLTIME_MARGIN_S`` more, so the worker's own exact walltime stops it first and reports it
    precisely.
    """
    return shape_limit_s(spec.resources, checkpointed=spec.checkpoint is not None)


def shape_limit_s(resources: Resources, *, checkpointed: bool = False) -> float | None:
    """``time_limit_s`` of a task of this shape (not checkpointable unless said)."""
    if resources.walltime_s is None:
        return None
    return 60.0 * math.ceil(resources.walltime_s / 60) + (0.0 if checkpointed else float(WALLTIME_MARGIN_S))


def warning_lead_s(walltime_s: float, signal_lead_s: int) -> int:
    """How long before the time limit the scheduler warns: the site's lead, at most half the walltime."""
    return min(signal_lead_s, max(1, int(walltime_s // 2)))


@dataclass(frozen=True, slots=True, kw_only=True)
class Launchers:
    """The launchers of one site; ``for_`` picks the one an attempt starts through."""

    worker: WorkerLauncher
    command: CommandLauncher
    apptainer: ApptainerLauncher | None = None
    criu: CriuLauncher | None = None

    def for_(self, spec: TaskSpec) -> Launcher:
        """Containers through Apptainer, CRIU tasks through the wrapper, commands directly, or the worker."""
        if spec.container is not None:
            if self.apptainer is None:
                raise LaunchRefused("ContainerError", "this site runs no containers")
            return self.apptainer
        if spec.checkpoint is CheckpointKind.CRIU:
            if self.criu is None:
                raise LaunchRefused("CheckpointError", "this site has no checkpoint_dir (or cannot signal "
                                    "jobs): it cannot run checkpoint='criu' tasks")
            return self.criu
        return self.command if spec.kind is TaskKind.COMMAND else self.worker

    def offered(self, signals: bool) -> frozenset[Capability]:
        """Cooperative checkpoints where jobs can be `signal`led, CRIU and containers where launched."""
        offered: set[Capability] = {Capability.CHECKPOINT_COOPERATIVE} if signals else set()
        if self.criu is not None:
            offered.add(Capability.CHECKPOINT_CRIU)
        if self.apptainer is not None:
            offered.add(Capability.CONTAINER_APPTAINER)
        return frozenset(offered)


def reaches_criu_wrapper(config: BatchSite, dialect: Dialect) -> bool:
    """Whether metasched can ask a running CRIU wrapper at this site for a checkpoint.

    Through a scheduler that can signal a job (a migration's USR2), or in pilot mode (its blocks ask
    through the attempt directory; ``block_scripts``).
    """
    return can_signal(dialect) or config.mode == "pilot"


def site_launchers(config: BatchSite, dialect: Dialect, pythonpath: str) -> Launchers:
    """The launchers of a site whose nodes import metasched's worker from `pythonpath`.

    CRIU needs a ``checkpoint_dir`` and a wrapper metasched can reach (``reaches_criu_wrapper``).
    """
    criu = None
    if config.checkpoint_dir and reaches_criu_wrapper(config, dialect):
        criu = CriuLauncher(python=config.python, pythonpath=pythonpath, checkpoint_dir=config.checkpoint_dir,
                            criu=config.criu, signal_lead_s=config.signal_lead_s, site=config.name)
    apptainer = None
    if config.container_runtimes:
        apptainer = ApptainerLauncher(apptainer=config.apptainer, shared_dir=config.shared_dir,
                                      pythonpath=pythonpath, site=config.name)
    return Launchers(worker=WorkerLauncher(python=config.python, pythonpath=pythonpath),
                     command=CommandLauncher(parallel_prefix=dialect.parallel_prefix),
                     apptainer=apptainer, criu=criu)
