"""How the journal stores its records compactly (schema 3): small-integer states, positional task specs.

At a million tasks every byte of a row counts a megabyte, so the stored tables keep states as small
integers, attempts and transitions keyed by the task's integer ``seq``, and a task's spec as a short
positional tuple with the fields already stored as columns (id, name) and trailing defaults left out.
The codes and the field order are part of the file format: add at the ends, never renumber or reorder.
"""

from __future__ import annotations

import dataclasses
import pickle
import re
from typing import Any

from metasched.options import shared_resources
from metasched.records import Resources, TaskId, TaskKind, TaskSpec, Usage
from metasched.scheduler.states import TERMINAL, AttemptState, TaskState

# task and attempt states share one numbering: a name both have ("submitted", "failed"...) has one code
STATE_CODES: dict[str, int] = {
    "pending": 1, "ready": 2, "staging": 3, "submitted": 4, "running": 5, "done": 6, "failed": 7,
    "cancelled": 8, "succeeded": 9, "lost": 10, "checkpointed": 11,
}
STATE_NAMES: dict[int, str] = {code: name for name, code in STATE_CODES.items()}
TERMINAL_CODES = tuple(sorted(STATE_CODES[s.value] for s in TERMINAL))

# TaskSpec's fields after task_id and name, in stored order
SPEC_FIELDS = ("kind", "resources", "retries", "sites", "tags", "depends_on", "function_digest", "payload",
               "command", "inputs", "keep", "checkpoint", "checkpoint_every_s", "container")
KINDS = (TaskKind.FUNCTION, TaskKind.COMMAND)
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TaskSpec)}
_HEX = re.compile(r"(?:[0-9a-f]{2})+")


def code(state: TaskState | AttemptState) -> int:
    """The stored code of a task's or an attempt's state."""
    return STATE_CODES[state.value]


def task_state(stored: int) -> TaskState:
    """The task state a stored code names."""
    return TaskState(STATE_NAMES[stored])


def encode_spec(spec: TaskSpec) -> bytes:
    """The spec's fields but id and name, positionally, without trailing defaults (pickled)."""
    values: list[Any] = []
    for name in SPEC_FIELDS:
        value = getattr(spec, name)
        if name == "kind":
            value = KINDS.index(value)
        elif name == "resources":
            value = None if value == Resources() else (value.cores, value.memory_mb, value.gpus, value.nodes,
                                                        value.walltime_s)
        elif name == "function_digest" and value is not None and _HEX.fullmatch(value):
            value = bytes.fromhex(value)  # half the size of its hex text
        values.append(value)
    while values and _is_default(SPEC_FIELDS[len(values) - 1], values[-1]):
        values.pop()
    return pickle.dumps(tuple(values), protocol=pickle.HIGHEST_PROTOCOL)


def decode_spec(task_id: str, name: str, blob: bytes) -> TaskSpec:
    """The spec `encode_spec` stored for this task (tasks asking the same resources share one record)."""
    values = dict(zip(SPEC_FIELDS, pickle.loads(blob), strict=False))  # noqa: S301  (our own journal)
    resources = values.get("resources")
    digest = values.get("function_digest")
    values.update(kind=KINDS[values["kind"]],
                  resources=shared_resources(*resources) if resources is not None else shared_resources(),
                  function_digest=digest.hex() if isinstance(digest, bytes) else digest)
    return TaskSpec(task_id=TaskId(task_id), name=name, **values)


def _is_default(name: str, value: Any) -> bool:
    if name == "resources":
        return value is None
    return name != "kind" and value == _DEFAULTS[name]


def usage_columns(usage: Usage | None) -> tuple[int | None, int | None, int | None]:
    """(wall µs, CPU µs, peak memory KiB) as stored: integers take a few bytes where a REAL takes eight."""
    if usage is None:
        return None, None, None
    rss = None if usage.max_rss_mb is None else round(usage.max_rss_mb * 1024)
    return round(usage.wall_s * 1e6), round(usage.cpu_s * 1e6), rss


def usage_of(wall_us: int | None, cpu_us: int | None, rss_kib: int | None) -> Usage | None:
    """The Usage stored columns hold (None: not measured)."""
    if wall_us is None or cpu_us is None:
        return None
    rss = None if rss_kib is None else rss_kib / 1024
    return Usage(wall_s=wall_us / 1e6, cpu_s=cpu_us / 1e6, max_rss_mb=rss)
