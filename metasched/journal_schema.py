"""The journal's SQLite schema and the records it reads and writes (see ``metasched.journal``)."""

from __future__ import annotations

import enum
import pickle
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from metasched.errors import TaskError
from metasched.records import AttemptId, SiteName, TaskId, TaskSpec, Usage
from metasched.scheduler.states import TERMINAL, TaskState

if TYPE_CHECKING:
    from metasched.data.objects import DataRef

SCHEMA_VERSION = "2"  # 2: typed task outcomes, checkpoint kinds and requests with a target
TERMINAL_VALUES = tuple(s.value for s in TERMINAL)
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB);
CREATE TABLE IF NOT EXISTS functions (digest TEXT PRIMARY KEY, blob BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS tasks (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id TEXT UNIQUE NOT NULL,
    name TEXT NOT NULL,
    spec BLOB NOT NULL,
    state TEXT NOT NULL,
    tries INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    site TEXT,
    result BLOB,
    error BLOB,
    finished_at REAL,
    superseded_by TEXT,
    checkpoint TEXT,
    migrate_to TEXT
);
CREATE TABLE IF NOT EXISTS attempts (
    attempt_id TEXT PRIMARY KEY,
    task_id TEXT NOT NULL,
    site TEXT NOT NULL,
    number INTEGER NOT NULL,
    state TEXT NOT NULL,
    native_id TEXT,
    submitted_at REAL NOT NULL,
    ended_at REAL
);
CREATE TABLE IF NOT EXISTS transitions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id TEXT NOT NULL,
    attempt_id TEXT,
    site TEXT,
    old TEXT,
    new TEXT NOT NULL,
    at REAL NOT NULL,
    detail TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    task_name TEXT,
    target TEXT,
    created REAL NOT NULL,
    handled REAL,
    outcome TEXT
);
CREATE TABLE IF NOT EXISTS notes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id TEXT NOT NULL,
    attempt_id TEXT NOT NULL,
    site TEXT NOT NULL,
    at REAL NOT NULL,
    note TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS objects (
    object_id TEXT NOT NULL,
    store_id TEXT NOT NULL,
    ref BLOB NOT NULL,
    size INTEGER NOT NULL,
    origin INTEGER NOT NULL,
    created REAL NOT NULL,
    transfer_s REAL,
    evicted REAL,
    PRIMARY KEY (object_id, store_id)
);
CREATE TABLE IF NOT EXISTS usage (
    attempt_id TEXT PRIMARY KEY,
    site TEXT NOT NULL,
    wall_s REAL NOT NULL,
    cpu_s REAL NOT NULL,
    max_rss_mb REAL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS printed (
    attempt_id TEXT PRIMARY KEY,
    stdout TEXT NOT NULL,
    stderr TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS transitions_task ON transitions (task_id);
CREATE INDEX IF NOT EXISTS attempts_task ON attempts (task_id);
CREATE INDEX IF NOT EXISTS notes_task ON notes (task_id);
-- `metasched status` counts tasks from this index alone (0.15 s for a million tasks, not a table scan)
CREATE INDEX IF NOT EXISTS tasks_site_state ON tasks (site, state) WHERE superseded_by IS NULL;
"""


class RequestKind(enum.Enum):
    """What another process (the CLI) asks the running scheduler through the journal."""

    CANCEL = "cancel"  # the named task (every task when none)
    DRAIN = "drain"  # the target site: no new work, move checkpointable tasks away
    UNDRAIN = "undrain"  # the target site takes work again
    CHECKPOINT = "checkpoint"  # a restart point of the named task
    MIGRATE = "migrate"  # the named task, to the target site


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    """One request left in the journal."""

    request_id: int
    kind: RequestKind
    task_name: str | None
    target: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Note:
    """Something recorded about an attempt that changed nothing (e.g. a second run of its job refused)."""

    task_id: TaskId
    attempt_id: AttemptId
    site: SiteName
    at: float
    note: str


@dataclass(frozen=True, slots=True, kw_only=True)
class JournalEvent:
    """One state change of a task as journaled, with its attempt's job id where the site gave one."""

    seq: int  # the transition's row id: events after it are the newer ones
    at: float
    task_id: TaskId
    task_name: str
    old: str | None
    new: str
    attempt_id: AttemptId | None = None
    site: SiteName | None = None
    native_id: str | None = None
    detail: str = ""

    def line(self) -> str:
        """One line for a terminal: time, task, change, where, why."""
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.at)) + f".{int(self.at % 1 * 1000):03d}"
        where = f" at {self.site}" if self.site else ""
        attempt = f" attempt {self.attempt_id}" if self.attempt_id else ""
        job = f" (job {self.native_id})" if self.native_id else ""
        why = f": {self.detail}" if self.detail else ""
        return f"{when}  {self.task_name}  {self.old or '-'} -> {self.new}{where}{attempt}{job}{why}"


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredTask:
    """One task as the journal has it."""

    spec: TaskSpec
    state: TaskState
    tries: int
    attempts: int
    result: bytes | None
    error: TaskError | None
    site: SiteName | None = None
    superseded_by: TaskId | None = None
    checkpoint: str | None = None
    migrate_to: SiteName | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class LiveAttempt:
    """An attempt the journal last saw submitted or running."""

    attempt_id: AttemptId
    task_id: TaskId
    site: SiteName
    number: int
    native_id: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class FinalRecord:
    """A task's terminal state and what it produced, to be written once."""

    task_id: TaskId
    state: TaskState
    result: bytes | None = None
    error: TaskError | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class NewReplica:
    """A replica to record: a task's stored result (origin) or a transfer's copy."""

    ref: DataRef
    origin: bool
    transfer_s: float | None = None


def stored_task(row: tuple[Any, ...]) -> StoredTask:
    """A task from a row (spec, state, tries, attempts, result, error, site, superseded_by, ...)."""
    spec, state, tries, attempts, result, error, site, superseded, checkpoint, migrate_to = row
    return StoredTask(
        spec=pickle.loads(spec), state=TaskState(state), tries=tries, attempts=attempts,
        result=result, error=pickle.loads(error) if error is not None else None,
        site=SiteName(site) if site else None, superseded_by=TaskId(superseded) if superseded else None,
        checkpoint=checkpoint, migrate_to=SiteName(migrate_to) if migrate_to else None)


@dataclass(frozen=True, slots=True, kw_only=True)
class SiteUsage:
    """What the measured attempts at one site used, summed (peak memory: the largest)."""

    site: SiteName
    attempts: int
    wall_s: float
    cpu_s: float
    max_rss_mb: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class AttemptUsage:
    """What one attempt used, with its task's request (cores, memory MB; 0: none asked)."""

    attempt_id: AttemptId
    task_name: str
    site: SiteName
    state: str
    wall_s: float
    cpu_s: float
    max_rss_mb: float | None
    cores: int
    memory_mb: int

    @property
    def cpu_efficiency(self) -> float | None:
        """CPU time over the cores asked for the whole wall time (1.0: every core busy throughout)."""
        return self.cpu_s / (self.wall_s * self.cores) if self.wall_s > 0 and self.cores else None


@dataclass(frozen=True, slots=True, kw_only=True)
class AttemptRecord:
    """One attempt of a task as `metasched logs --attempt` shows it."""

    attempt_id: AttemptId
    number: int
    site: SiteName
    state: str
    native_id: str | None
    stdout: str  # the ends of what it printed (Python tasks; failed commands), "" if nothing or unknown
    stderr: str
    usage: Usage | None
