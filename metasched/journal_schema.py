"""The journal's SQLite schema and the records it reads and writes (see ``metasched.journal``)."""

from __future__ import annotations

import enum
import pickle
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from metasched.errors import TaskError
from metasched.journal_codec import STATE_CODES, decode_spec, task_state
from metasched.records import AttemptId, SiteName, TaskId, TaskSpec, Usage
from metasched.scheduler.states import TaskState

if TYPE_CHECKING:
    from metasched.data.objects import DataRef

SCHEMA_VERSION = "3"  # 3: compact rows (integer task keys and states, positional specs) behind views
# 2: typed task outcomes, checkpoint kinds and requests with a target
_STATES = ", ".join(f"({code}, '{name}')" for name, code in STATE_CODES.items())
_ATTEMPT_ID = "k.task_id || '.' || a.number"
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB);
CREATE TABLE IF NOT EXISTS functions (digest TEXT PRIMARY KEY, blob BLOB NOT NULL);
-- The stored tables (singular names) keep rows small: a task's `seq` keys its attempts and transitions,
-- states are codes (state_names), the spec is metasched.journal_codec's. Read them through the views
-- (plural names: tasks, attempts, transitions, usage, printed), which show ids and states as text.
CREATE TABLE IF NOT EXISTS state_names (code INTEGER PRIMARY KEY, name TEXT NOT NULL);
INSERT OR IGNORE INTO state_names (code, name) VALUES {_STATES};
CREATE TABLE IF NOT EXISTS task (
    seq INTEGER PRIMARY KEY,
    task_id TEXT UNIQUE NOT NULL,
    name TEXT NOT NULL,
    spec BLOB NOT NULL,
    state INTEGER NOT NULL,
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
CREATE TABLE IF NOT EXISTS attempt (
    task INTEGER NOT NULL,
    number INTEGER NOT NULL,
    site TEXT NOT NULL,
    state INTEGER NOT NULL,
    native_id TEXT,
    submitted_at REAL NOT NULL,
    ended_at REAL,
    wall_us INTEGER,
    cpu_us INTEGER,
    max_rss_kib INTEGER,
    PRIMARY KEY (task, number)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS transition (
    id INTEGER PRIMARY KEY,
    task INTEGER NOT NULL,
    attempt INTEGER,
    site TEXT,
    old INTEGER,
    new INTEGER NOT NULL,
    at REAL NOT NULL,
    detail TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS output (
    task INTEGER NOT NULL,
    number INTEGER NOT NULL,
    stdout TEXT NOT NULL,
    stderr TEXT NOT NULL,
    PRIMARY KEY (task, number)
) WITHOUT ROWID;
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
CREATE INDEX IF NOT EXISTS transition_task ON transition (task);
CREATE INDEX IF NOT EXISTS notes_task ON notes (task_id);
-- what a resumed scheduler reconciles, without reading every attempt
CREATE INDEX IF NOT EXISTS attempt_live ON attempt (state) WHERE state IN ({STATE_CODES["submitted"]},
    {STATE_CODES["running"]});
-- `metasched status` counts tasks from this index alone (0.15 s for a million tasks, not a table scan)
CREATE INDEX IF NOT EXISTS task_site_state ON task (site, state) WHERE superseded_by IS NULL;
CREATE VIEW IF NOT EXISTS tasks AS SELECT k.seq, k.task_id, k.name, k.spec, s.name AS state, k.tries,
    k.attempts, k.site, k.result, k.error, k.finished_at, k.superseded_by, k.checkpoint, k.migrate_to
    FROM task k JOIN state_names s ON s.code = k.state;
CREATE VIEW IF NOT EXISTS attempts AS SELECT {_ATTEMPT_ID} AS attempt_id, k.task_id, a.site, a.number,
    s.name AS state, a.native_id, a.submitted_at, a.ended_at
    FROM attempt a JOIN task k ON k.seq = a.task JOIN state_names s ON s.code = a.state;
CREATE VIEW IF NOT EXISTS transitions AS SELECT x.id, k.task_id,
    CASE WHEN x.attempt IS NULL THEN NULL ELSE k.task_id || '.' || x.attempt END AS attempt_id, x.site,
    o.name AS old, n.name AS new, x.at, x.detail
    FROM transition x JOIN task k ON k.seq = x.task LEFT JOIN state_names o ON o.code = x.old
    JOIN state_names n ON n.code = x.new;
CREATE VIEW IF NOT EXISTS usage AS SELECT {_ATTEMPT_ID} AS attempt_id, a.site, a.wall_us / 1e6 AS wall_s,
    a.cpu_us / 1e6 AS cpu_s, a.max_rss_kib / 1024.0 AS max_rss_mb
    FROM attempt a JOIN task k ON k.seq = a.task WHERE a.wall_us IS NOT NULL;
CREATE VIEW IF NOT EXISTS printed AS SELECT {_ATTEMPT_ID} AS attempt_id, a.stdout, a.stderr
    FROM output a JOIN task k ON k.seq = a.task;
"""
TASK_SEQ = "(SELECT seq FROM task WHERE task_id = ?)"  # a task's integer key, from its id (an index lookup)
# an attempt's row as the scheduler last saw it: (task id, number, site, state, submitted at, ended at, usage)
UPSERT_ATTEMPT = (
    "INSERT INTO attempt (task, number, site, state, submitted_at, ended_at, wall_us, cpu_us, max_rss_kib) "
    f"VALUES ({TASK_SEQ}, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (task, number) DO UPDATE SET "
    "state = excluded.state, ended_at = excluded.ended_at, wall_us = coalesce(excluded.wall_us, wall_us), "
    "cpu_us = coalesce(excluded.cpu_us, cpu_us), "
    "max_rss_kib = iif(excluded.wall_us IS NULL, max_rss_kib, excluded.max_rss_kib)")


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


STORED_TASK_COLUMNS = ("task_id, name, spec, state, tries, attempts, result, error, site, superseded_by, "
                       "checkpoint, migrate_to")


def stored_task(row: tuple[Any, ...]) -> StoredTask:
    """A task from a row of the `task` table's STORED_TASK_COLUMNS."""
    task_id, name, spec, state, tries, attempts, result, error, site, superseded, checkpoint, migrate_to = row
    return StoredTask(
        spec=decode_spec(task_id, name, spec), state=task_state(state), tries=tries, attempts=attempts,
        result=result, error=pickle.loads(error) if error is not None else None,  # noqa: S301  (our own)
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
