"""Task options as users write them (cores, memory, walltime, ...) turned into typed records."""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING, Any

from metasched.data.serializers import serializer_named
from metasched.errors import ConfigurationError
from metasched.records import (
    CheckpointKind,
    CommandSpec,
    Image,
    Resources,
    SiteName,
    TaskId,
    TaskKind,
    TaskSpec,
    parse_walltime,
)

if TYPE_CHECKING:
    from metasched.data.objects import DataRef

_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)B?\s*$", re.IGNORECASE)


def parse_memory(value: int | str | None) -> int:
    """Memory in MB from an int (MB) or a string like '500M', '4G', '4GB'."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    match = _MEMORY.match(value)
    if match is None:
        raise ConfigurationError(f"memory {value!r} is not understood; use MB as a number or e.g. '4G'.")
    number, unit = float(match.group(1)), match.group(2).upper()
    factor = {"K": 1 / 1024, "": 1, "M": 1, "G": 1024, "T": 1024 * 1024}[unit]
    return int(number * factor)


def resources_from(options: dict[str, Any]) -> Resources:
    """The Resources record of a task's options (one shared record per distinct request)."""
    return shared_resources(int(options.get("cores", 1)), parse_memory(options.get("memory")),
                      int(options.get("gpus", 0)), int(options.get("nodes", 1)),
                      parse_walltime(options.get("walltime")))


@functools.lru_cache(maxsize=4096)
def shared_resources(cores: int = 1, memory_mb: int = 0, gpus: int = 0, nodes: int = 1,
                     walltime_s: float | None = None) -> Resources:
    """One record per distinct request, shared by the tasks asking the same (it is frozen).

    A batch of specs then pickles it once, and a resumed campaign's specs share them too.
    """
    return Resources(cores=cores, memory_mb=memory_mb, gpus=gpus, nodes=nodes, walltime_s=walltime_s)


TASK_OPTIONS = frozenset(
    {"cores", "memory", "gpus", "walltime", "nodes", "retries", "sites", "tags", "name", "keep", "checkpoint",
     "checkpoint_every", "container", "serializer"}
)


def check_options(options: dict[str, Any], where: str) -> None:
    """Refuse unknown option names and bad retries, naming where they were given."""
    unknown = sorted(set(options) - TASK_OPTIONS)
    if unknown:
        raise ConfigurationError(
            f"{where}: unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(TASK_OPTIONS))}."
        )
    checkpoint = checkpoint_kind(options.get("checkpoint"), where)
    if options.get("checkpoint_every") is not None and checkpoint is not CheckpointKind.CRIU:
        raise ConfigurationError(f"{where}: checkpoint_every needs checkpoint='criu' (cooperative tasks save "
                                 "when they choose).")
    container = options.get("container")
    if container is not None and not isinstance(container, Image):
        raise ConfigurationError(f"{where}: container must be an ms.Image(...), got {container!r}; e.g. "
                                 "container=ms.Image('metasched/task:bookworm').")
    if container is not None and checkpoint is CheckpointKind.CRIU:
        raise ConfigurationError(f"{where}: checkpoint='criu' cannot dump a container; use "
                                 "checkpoint='cooperative' (Python tasks) or run without a container.")
    serializer = options.get("serializer")
    if serializer is not None:
        try:
            serializer_named(str(serializer))
        except ValueError as exc:
            raise ConfigurationError(f"{where}: {exc}") from None
    retries = options.get("retries", 0)
    if not isinstance(retries, int) or retries < 0:
        raise ConfigurationError(f"{where}: retries must be a non-negative integer, got {retries!r}.")


def checkpoint_kind(value: object, where: str) -> CheckpointKind | None:
    """The task option ``checkpoint`` ("criu", "cooperative" or the enum) as a CheckpointKind."""
    if value is None or isinstance(value, CheckpointKind):
        return value
    try:
        return CheckpointKind(value)
    except ValueError:
        raise ConfigurationError(f"{where}: checkpoint must be 'criu' (transparent, command tasks) or "
                                 f"'cooperative' (Python tasks with a ckpt handle), got {value!r}.") from None


def task_spec(name: str, kind: TaskKind, options: dict[str, Any], *, task_id: TaskId, deps: list[TaskId],
              digest: str | None = None, payload: bytes = b"", command: CommandSpec | None = None,
              inputs: tuple[DataRef, ...] = ()) -> TaskSpec:
    """The TaskSpec of a task with these (already checked) options."""
    wanted = checkpoint_kind(options.get("checkpoint"), f"task {name!r}")
    if wanted is CheckpointKind.CRIU and kind is not TaskKind.COMMAND:
        raise ConfigurationError(f"task {name!r}: checkpoint='criu' is for command tasks; a Python task "
                                 "uses checkpoint='cooperative' and a ckpt handle.")
    if wanted is CheckpointKind.COOPERATIVE and kind is not TaskKind.FUNCTION:
        raise ConfigurationError(f"command {name!r}: checkpoint='cooperative' is for Python tasks (they "
                                 "get a ckpt handle); commands use checkpoint='criu'.")
    return TaskSpec(
        task_id=task_id, name=name, kind=kind, resources=resources_from(options),
        retries=int(options.get("retries", 0)),
        sites=tuple(SiteName(s) for s in options.get("sites", ()) or ()),
        tags=tuple(sorted((str(k), str(v)) for k, v in (options.get("tags") or {}).items())),
        depends_on=tuple(dict.fromkeys(deps)), function_digest=digest, payload=payload, command=command,
        inputs=inputs, keep=bool(options.get("keep", False)), checkpoint=wanted,
        checkpoint_every_s=parse_walltime(options.get("checkpoint_every")),
        container=options.get("container"))
