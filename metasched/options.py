"""Task options as users write them (cores, memory, walltime, ...) turned into typed records."""

from __future__ import annotations

import re
from typing import Any

from metasched.errors import ConfigurationError
from metasched.records import Image, Resources, parse_walltime

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
    """The Resources record of a task's options."""
    return Resources(
        cores=int(options.get("cores", 1)),
        memory_mb=parse_memory(options.get("memory")),
        gpus=int(options.get("gpus", 0)),
        nodes=int(options.get("nodes", 1)),
        walltime_s=parse_walltime(options.get("walltime")),
    )


TASK_OPTIONS = frozenset(
    {"cores", "memory", "gpus", "walltime", "nodes", "retries", "sites", "tags", "name", "keep", "checkpoint",
     "checkpoint_every", "container"}
)


def check_options(options: dict[str, Any], where: str) -> None:
    """Refuse unknown option names and bad retries, naming where they were given."""
    unknown = sorted(set(options) - TASK_OPTIONS)
    if unknown:
        raise ConfigurationError(
            f"{where}: unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(TASK_OPTIONS))}."
        )
    checkpoint = options.get("checkpoint")
    if checkpoint not in (None, "criu", "cooperative"):
        raise ConfigurationError(f"{where}: checkpoint must be 'criu' (transparent, command tasks) or "
                                 f"'cooperative' (Python tasks with a ckpt handle), got {checkpoint!r}.")
    if options.get("checkpoint_every") is not None and checkpoint != "criu":
        raise ConfigurationError(f"{where}: checkpoint_every needs checkpoint='criu' (cooperative tasks save "
                                 "when they choose).")
    container = options.get("container")
    if container is not None and not isinstance(container, Image):
        raise ConfigurationError(f"{where}: container must be an ms.Image(...), got {container!r}; e.g. "
                                 "container=ms.Image('metasched/task:bookworm').")
    if container is not None and options.get("checkpoint") == "criu":
        raise ConfigurationError(f"{where}: checkpoint='criu' cannot dump a container; use "
                                 "checkpoint='cooperative' (Python tasks) or run without a container.")
    retries = options.get("retries", 0)
    if not isinstance(retries, int) or retries < 0:
        raise ConfigurationError(f"{where}: retries must be a non-negative integer, got {retries!r}.")
