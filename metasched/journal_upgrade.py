"""Upgrading a journal an earlier metasched wrote (schema 2) to this one's (schema 3), in place, once.

Schema 2 stored ids and states as text in every row (about 1 KB per task); schema 3 stores the same facts
compactly (``metasched.journal_codec``) and shows them under the old table names as views, so queries
written against schema 2 still read. The upgrade runs in one transaction (a failure leaves the journal as
it was) and then compacts the file.
"""

from __future__ import annotations

import contextlib
import logging
import pickle
import sqlite3
from pathlib import Path

from metasched.errors import JournalError
from metasched.journal_codec import encode_spec
from metasched.journal_schema import SCHEMA, SCHEMA_VERSION

log = logging.getLogger(__name__)

OLD_TABLES = ("tasks", "attempts", "transitions", "usage", "printed")
_CODE = "(SELECT code FROM state_names WHERE name = {})"
# tables schema 2 had only from its later releases: made empty where missing, so one copy reads them all
_LATE_TABLES = """
CREATE TABLE IF NOT EXISTS usage (attempt_id TEXT PRIMARY KEY, site TEXT NOT NULL, wall_s REAL NOT NULL,
    cpu_s REAL NOT NULL, max_rss_mb REAL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS printed (attempt_id TEXT PRIMARY KEY, stdout TEXT NOT NULL, stderr TEXT NOT NULL)
    WITHOUT ROWID;
"""
_COPY = f"""
INSERT INTO task (seq, task_id, name, spec, state, tries, attempts, site, result, error, finished_at,
                  superseded_by, checkpoint, migrate_to)
    SELECT seq, task_id, name, v3_spec(task_id, spec), {_CODE.format("t.state")}, tries, attempts, site,
           result, error, finished_at, superseded_by, checkpoint, migrate_to FROM v2_tasks t;
INSERT INTO attempt (task, number, site, state, native_id, submitted_at, ended_at, wall_us, cpu_us,
                     max_rss_kib)
    SELECT k.seq, a.number, a.site, {_CODE.format("a.state")}, a.native_id, a.submitted_at, a.ended_at,
           CAST(round(u.wall_s * 1e6) AS INTEGER), CAST(round(u.cpu_s * 1e6) AS INTEGER),
           CAST(round(u.max_rss_mb * 1024) AS INTEGER)
    FROM v2_attempts a JOIN task k ON k.task_id = a.task_id
    LEFT JOIN v2_usage u ON u.attempt_id = a.attempt_id;
INSERT INTO transition (id, task, attempt, site, old, new, at, detail)
    SELECT x.id, k.seq, CAST(substr(x.attempt_id, length(x.task_id) + 2) AS INTEGER), x.site,
           {_CODE.format("x.old")}, {_CODE.format("x.new")}, x.at, x.detail
    FROM v2_transitions x JOIN task k ON k.task_id = x.task_id;
INSERT INTO output (task, number, stdout, stderr)
    SELECT k.seq, a.number, p.stdout, p.stderr
    FROM v2_printed p JOIN v2_attempts a ON a.attempt_id = p.attempt_id JOIN task k ON k.task_id = a.task_id;
"""


def check_version(path: Path, version: str | None, *, writing: bool) -> None:
    """Refuse a journal this metasched cannot read (or, read-only, one it would first have to upgrade)."""
    if version in (SCHEMA_VERSION, None) or (writing and version == "2"):
        return
    if version == "2":
        raise JournalError(f"journal {path} was written by an earlier metasched (schema 2); upgrade it "
                           f"once with `metasched upgrade {path}` (resuming its campaign also does), then "
                           "read it.")
    raise JournalError(f"journal {path} has schema version {version!r}; this metasched reads "
                       f"{SCHEMA_VERSION!r}. Use the metasched version that wrote it.")


def last_state(path: Path) -> tuple[str | None, float | None, int]:
    """(schema version, time of the last state change, tasks) of a journal, read without changing it."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)) as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            (last,) = db.execute("SELECT max(at) FROM transitions").fetchone()  # a table in 2, a view in 3
            (tasks,) = db.execute("SELECT COUNT(*) FROM tasks").fetchone()
    except sqlite3.Error as exc:
        raise JournalError(f"cannot read the journal {path}: {exc}.") from exc
    return (pickle.loads(row[0]) if row else None), last, int(tasks)  # noqa: S301  (our own meta)


def upgrade_from_2(db: sqlite3.Connection, path: Path) -> int:
    """Rewrite a schema-2 journal's task, attempt and transition tables as schema 3's; returns the tasks.

    `db` is in autocommit mode (the journal's own connection); the schema version is the caller's to set.
    """
    (tasks,) = db.execute("SELECT COUNT(*) FROM tasks").fetchone()
    log.warning("upgrading journal %s (%d tasks) from schema 2 to 3; this happens once and takes about a "
                "minute per million tasks", path, tasks)
    unreadable: list[str] = []

    def respec(task_id: str, blob: bytes) -> bytes:
        try:
            return encode_spec(pickle.loads(blob))  # noqa: S301  (the journal's own pickled TaskSpec)
        except Exception as exc:
            unreadable.append(f"task {task_id}'s spec cannot be read ({type(exc).__name__}: {exc})")
            raise

    db.create_function("v3_spec", 2, respec, deterministic=True)
    renames = "".join(f"ALTER TABLE {t} RENAME TO v2_{t};\n" for t in OLD_TABLES)
    drops = "".join(f"DROP TABLE v2_{t};\n" for t in OLD_TABLES)
    try:
        db.executescript(f"BEGIN;\n{_LATE_TABLES}{renames}DROP INDEX IF EXISTS tasks_site_state;\n"
                         f"{SCHEMA}{_COPY}{drops}COMMIT;")
    except sqlite3.Error as exc:
        if db.in_transaction:
            db.execute("ROLLBACK")
        why = unreadable[0] if unreadable else str(exc)
        raise JournalError(f"cannot upgrade the journal {path} to schema 3: {why}; it was left as it was "
                           "(schema 2), readable by the metasched that wrote it.") from exc
    db.execute("VACUUM")  # the old tables' pages back to the file system (once the WAL is checkpointed)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return int(tasks)

