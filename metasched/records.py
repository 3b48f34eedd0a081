"""Typed records shared by the API, the scheduler, the journal and the site agents."""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Mapping
from dataclasses import KW_ONLY, dataclass, field
from typing import TYPE_CHECKING, Any, NewType, TypeVar

from metasched.errors import ConfigurationError

if TYPE_CHECKING:
    from metasched.data.objects import DataRef

TaskId = NewType("TaskId", str)
AttemptId = NewType("AttemptId", str)
SiteName = NewType("SiteName", str)


def attempt_id_of(task_id: str, number: int) -> AttemptId:
    """The id of a task's `number`-th attempt: ``<task id>.<number>`` (also its batch jobs' name)."""
    return AttemptId(f"{task_id}.{number}")


def split_attempt_id(attempt_id: str) -> tuple[TaskId, int]:
    """(task id, number) of an attempt id `attempt_id_of` made; ValueError for any other text."""
    task_id, _, number = attempt_id.rpartition(".")
    if not task_id or not number.isdigit():
        raise ValueError(f"attempt id {attempt_id!r} is not <task id>.<number>")
    return TaskId(task_id), int(number)
T = TypeVar("T")


class TaskKind(enum.Enum):
    """What a task runs."""

    FUNCTION = "function"
    COMMAND = "command"


class CheckpointKind(enum.Enum):
    """How a task can be stopped and continued.

    CRIU dumps a command task's processes (transparent); a cooperative Python task saves and loads its own
    state through a ``ckpt`` handle.
    """

    CRIU = "criu"
    COOPERATIVE = "cooperative"


class ContainerRuntime(enum.Enum):
    """What runs a task's container image at a site."""

    DOCKER = "docker"
    APPTAINER = "apptainer"


class Capability(enum.Enum):
    """Something a site offers beyond cores, memory and GPUs.

    Placement sends a task only where what it needs is offered.
    """

    CHECKPOINT_CRIU = "checkpoint:criu"
    CHECKPOINT_COOPERATIVE = "checkpoint:cooperative"
    CONTAINER_DOCKER = "container:docker"
    CONTAINER_APPTAINER = "container:apptainer"

    @classmethod
    def checkpoint(cls, kind: CheckpointKind) -> Capability:
        """The capability of running tasks with this kind of checkpoint."""
        return cls(f"checkpoint:{kind.value}")

    @classmethod
    def container(cls, runtime: ContainerRuntime) -> Capability:
        """The capability of running container images with this runtime."""
        return cls(f"container:{runtime.value}")

    @property
    def runtime(self) -> ContainerRuntime | None:
        """The container runtime this capability stands for, if it is one."""
        kind, _, value = self.value.partition(":")
        return ContainerRuntime(value) if kind == "container" else None


@dataclass(frozen=True, slots=True, kw_only=True)
class Resources:
    """What one attempt of a task needs from a site."""

    cores: int = 1
    memory_mb: int = 0
    gpus: int = 0
    nodes: int = 1
    walltime_s: float | None = None

    def __post_init__(self) -> None:
        for name in ("cores", "nodes"):
            if getattr(self, name) < 1:
                raise ConfigurationError(f"{name} must be at least 1, got {getattr(self, name)}.")
        for name in ("memory_mb", "gpus"):
            if getattr(self, name) < 0:
                raise ConfigurationError(f"{name} must not be negative, got {getattr(self, name)}.")
        if self.walltime_s is not None and self.walltime_s <= 0:
            raise ConfigurationError(f"walltime must be positive, got {self.walltime_s} s.")


@dataclass(frozen=True, slots=True)
class Image:
    """A container image a task runs in, named once for every runtime a site may offer.

    Args:
        name: what people call the image (e.g. ``"metasched/task:bookworm"``); also its Docker
            reference when neither ``docker`` nor ``sif`` is given.
        docker: the image's reference on a Docker engine (tag or ``sha256:`` id); sites with runtime
            "docker" run it (never pulled: images must be on the engine, no registry is assumed).
        sif: an Apptainer image, a ``.sif`` file or a sandbox directory, at a path the compute nodes of
            sites with runtime "apptainer" can read.
        digest: when given, the Docker image's id (``sha256:...``) must be this one, else the task
            fails before it runs.
        python: the Python inside the image that runs Python function tasks (it must have the
            driver's major.minor version; that is checked before the task runs).
    """

    name: str
    _: KW_ONLY
    docker: str | None = None
    sif: str | None = None
    digest: str | None = None
    python: str = "python3"

    def __post_init__(self) -> None:
        if not self.name:
            raise ConfigurationError("Image needs a name.")
        if self.digest is not None and not re.fullmatch(r"sha256:[0-9a-f]{64}", self.digest):
            raise ConfigurationError(f"Image {self.name!r}: digest must be 'sha256:' and 64 hex digits, "
                                     f"got {self.digest!r}.")
        if self.sif is not None and not self.sif.startswith("/"):
            raise ConfigurationError(f"Image {self.name!r}: sif must be an absolute path on the compute "
                                     f"nodes, got {self.sif!r}.")

    def source(self, runtime: ContainerRuntime) -> str | None:
        """What `runtime` runs for this image, or None if the image has nothing for it."""
        if runtime is ContainerRuntime.DOCKER:
            return self.docker or (self.name if self.sif is None else None)
        return self.sif

    def runtimes(self) -> tuple[ContainerRuntime, ...]:
        """The runtimes this image can be run by."""
        return tuple(r for r in ContainerRuntime if self.source(r) is not None)


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandSpec:
    """A command task: an argv list (never a shell string), its environment and working directory."""

    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()
    cwd: str | None = None
    check: bool = True  # a non-zero exit status fails the attempt


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandResult:
    """What a command task produced."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskSpec:
    """Everything needed to run a task, on any site, in any process: the journal stores it as is.

    ``payload`` is the cloudpickled ``(args, kwargs)`` for function tasks, with every dependency replaced
    by a ``TaskRef`` and every big argument by a ``DataRef`` (also listed in ``inputs``);
    ``function_digest`` names the cloudpickled function, stored once per campaign. ``keep`` marks the
    result as a campaign output even if other tasks consume it (stored results of consumed tasks are
    otherwise evicted once every consumer is done).
    """

    task_id: TaskId
    name: str
    kind: TaskKind
    resources: Resources
    retries: int = 0
    sites: tuple[SiteName, ...] = ()
    tags: tuple[tuple[str, str], ...] = ()
    depends_on: tuple[TaskId, ...] = ()
    function_digest: str | None = None
    payload: bytes = b""
    command: CommandSpec | None = None
    inputs: tuple[DataRef, ...] = ()
    keep: bool = False
    checkpoint: CheckpointKind | None = None  # CRIU (command tasks) or cooperative (Python tasks, ckpt)
    checkpoint_every_s: float | None = None  # CRIU restart points taken this often while the task runs
    container: Image | None = None  # run inside this image (the site must offer a runtime it has)


@dataclass(frozen=True, slots=True)
class TaskRef:
    """Stands in a task's arguments for the result of another task (a DAG edge)."""

    task_id: TaskId


def is_proxy(value: Any) -> bool:
    """Whether `value` is a ProxyStore proxy, asked without resolving it (``type()`` never does)."""
    cls = type(value)
    return cls.__name__ == "Proxy" and cls.__module__.startswith("proxystore.proxy")


def replace_nested(value: Any, kind: type[T], replace: Callable[[T], Any]) -> Any:
    """Replace every instance of `kind` in value, also inside (plain) lists, tuples and dicts.

    This is where a DAG edge may hide in a task's arguments: the API turns futures into TaskRefs with
    it, the worker turns TaskRefs into results. A ProxyStore proxy is passed on untouched (an
    ``isinstance`` check would resolve it, fetching its data into this process).
    """
    if is_proxy(value):
        return value
    if isinstance(value, kind):
        return replace(value)
    if type(value) is list:
        return [replace_nested(v, kind, replace) for v in value]
    if type(value) is tuple:
        return tuple(replace_nested(v, kind, replace) for v in value)
    if type(value) is dict:
        return {k: replace_nested(v, kind, replace) for k, v in value.items()}
    return value


#: How much of a job's or command's stderr a failure carries (the end of it).
STDERR_TAIL = 4000


@dataclass(frozen=True, slots=True, kw_only=True)
class Usage:
    """What one attempt used, as its worker measured it (metasched.worker.usage says how)."""

    wall_s: float
    cpu_s: float  # user + system
    max_rss_mb: float | None  # peak resident set; None where it is not measured (batch command tasks)


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoteFailure:
    """How a task's own code failed, in a form any process can read without the task's libraries."""

    error_type: str
    message: str
    traceback: str
    walltime_exceeded: bool = False
    stdout: str = ""  # the ends (STDERR_TAIL characters) of what the attempt printed
    stderr: str = ""
    files: tuple[str, ...] = ()  # where the attempt's whole output is (batch sites: its directory's files)


@dataclass(slots=True, kw_only=True)
class SiteLoad:
    """A site's current capacity as its agent reports it; the input of placement."""

    site: SiteName
    total_cores: int
    max_cores_per_task: int
    max_memory_mb: int | None  # None: the site does not track memory (requests are not enforced)
    gpus: int
    nodes: int
    inflight: int
    max_inflight: int
    est_wait_s: float = 0.0  # before the site starts any attempt of ours (other users' jobs, a block's start)
    open_cores: int | None = None  # cores free to our attempts once est_wait_s has passed (None: total_cores)
    cycle_s: float = 0.0  # how long an attempt of ours holds a core here, recently (0: not known yet)
    learns: bool = False  # est_wait_s is corrected by the waits our attempts had here (batch sites)
    learned_s: float | None = None  # ... by this much (included in it); None: none of ours has started yet
    accepting: bool = True  # False: the site takes no new work for now (unreachable, drained)
    problem: str = ""  # ... why, in a few words that stay the same while the reason does (for status)
    capabilities: frozenset[Capability] = field(default_factory=frozenset)
    max_walltime_s: float | None = None  # the longest walltime a task may ask for here (pilot blocks)
    reports_start: bool = False  # the agent says when an attempt starts (until then it may be hedged)
    status_current: bool = True  # ... and its word is fresh (False: its server does not answer, or slowly)
    submit_s: float = 0.0  # how long queueing an attempt's job here has taken recently (batch sites)
    # the most attempts in flight it takes now, below max_inflight (None: max_inflight); placement keeps
    # the rest meanwhile (a batch site's submissions on their way: it takes more as they are answered)
    intake: int | None = None
    # per resource shape, where the site knows better than for one core: est_wait_s from what jobs of
    # that shape waited; the controller's expected start of a new job (Slurm's sbatch --test-only), which
    # no prediction for the shape goes below
    shape_waits: Mapping[Resources, float] = field(default_factory=dict)
    shape_starts: Mapping[Resources, float] = field(default_factory=dict)

    @property
    def starts_when_accepted(self) -> bool:
        """The site starts an attempt as it accepts it (it never reports starts: the local site)."""
        return not self.reports_start

    @property
    def free_slots(self) -> int:
        """How many more attempts the agent accepts now."""
        if self.intake is None:
            return self.slots_left
        return min(self.slots_left, max(0, self.intake - self.inflight))  # its slots, as many as it takes now

    @property
    def slots_left(self) -> int:
        """How many more attempts it has slots for (``max_inflight``), whether or not it takes them now."""
        return max(0, self.max_inflight - self.inflight) if self.accepting else 0

    @property
    def starts_one_now(self) -> bool:
        """An attempt sent here now starts now: a slot is free and the site starts what it accepts."""
        return self.starts_when_accepted and self.free_slots > 0

    @property
    def cores_for_us(self) -> int:
        """Cores free to our attempts once ``est_wait_s`` has passed (all of them where no forecast says)."""
        return self.total_cores if self.open_cores is None else self.open_cores

    def turn_unknown(self, cores: int = 1) -> bool:
        """Whether one more attempt would queue behind ours here while their run time is not known yet.

        Its wait is then mostly our own backlog, which ``wait_s`` cannot tell yet: it says nothing of the
        site's own wait (learners must not take it for that).
        """
        return self.cycle_s <= 0 and self.inflight + cores > self.cores_for_us

    def wait_s(self, cores: int = 1, shape: Resources | None = None) -> float:
        """Predicted wait of one more attempt asking for `cores` (of `shape`): the site's wait, then ours.

        Our attempts already there (``inflight``, which the scheduler raises as it places more in one
        step) hold the open cores and the agent's slots; each frees again after ``cycle_s``. Before any
        of it, the attempt's job is to be queued (``submit_s``).
        """
        # placement asks this of every candidate of every task (100,000s a step): plain arithmetic, no calls
        own = self.est_wait_s  # the site's own wait before ours, or what it learned of this shape
        if shape is not None and self.shape_waits:
            own = self.shape_waits.get(shape, own)
        own += self.submit_s
        open_cores = self.total_cores if self.open_cores is None else self.open_cores  # (cores_for_us)
        over_cores = self.inflight + cores - open_cores
        over_slots = self.inflight + 1 - self.max_inflight
        wait = 0.0
        if over_cores > 0:
            wait = over_cores * self.cycle_s / (open_cores if open_cores > 1 else 1)
        if over_slots > 0:
            slots = self.max_inflight if 0 < self.max_inflight < open_cores else open_cores
            for_slot = over_slots * self.cycle_s / (slots if slots > 1 else 1)
            wait = for_slot if for_slot > wait else wait
        if shape is not None and self.shape_starts:  # the controller's answer for the shape is a floor
            floor = self.shape_starts.get(shape, 0.0)
            return floor if floor > own + wait else own + wait
        return own + wait


_WALLTIME = re.compile(r"^(?:(?P<d>\d+)-)?(?:(?P<h>\d+):)?(?P<m>\d+):(?P<s>\d+)$")


def parse_walltime(value: str | float | int | None) -> float | None:
    """Parse a walltime: seconds, or Slurm-style ``[D-]HH:MM:SS`` / ``MM:SS``.

    >>> parse_walltime("01:30:00")
    5400.0
    >>> parse_walltime("1-00:00:00")
    86400.0
    """
    if value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    seconds = clock_seconds(value)
    if seconds is None:
        raise ConfigurationError(
            f"walltime {value!r} is not understood; use seconds or [D-]HH:MM:SS, e.g. '00:10:00'."
        )
    return seconds


def clock_seconds(text: str) -> float | None:
    """``[D-][HH:]MM:SS`` (hours may exceed 24) in seconds; None if `text` is not written so."""
    match = _WALLTIME.match(text.strip())
    if match is None:
        return None
    days, hours, minutes, seconds = (int(match.group(k) or 0) for k in ("d", "h", "m", "s"))
    return float(((days * 24 + hours) * 60 + minutes) * 60 + seconds)
