"""The campaign journal: SQLite in WAL mode, one transaction per scheduler step.

It holds every task (its spec, pickled), every function (cloudpickled by value, once), every attempt and
every state transition, and each task's final result or error. A resumed scheduler rebuilds its state
from it. A terminal state is written with a guarded UPDATE (only from a non-terminal state), so a result
is recorded exactly once even if a step is replayed.
"""

from __future__ import annotations

import pickle
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from metasched.data.objects import DataRef
from metasched.errors import ConfigurationError, JournalError
from metasched.journal_codec import (
    STATE_NAMES,
    TERMINAL_CODES,
    code,
    decode_spec,
    encode_spec,
    usage_columns,
    usage_of,
)
from metasched.journal_schema import (
    SCHEMA,
    SCHEMA_VERSION,
    STORED_TASK_COLUMNS,
    TASK_SEQ,
    UPSERT_ATTEMPT,
    AttemptRecord,
    AttemptUsage,
    FinalRecord,
    JournalEvent,
    LiveAttempt,
    NewReplica,
    Note,
    Request,
    RequestKind,
    SiteUsage,
    StoredTask,
    stored_task,
)
from metasched.journal_upgrade import check_version, upgrade_from_2
from metasched.records import AttemptId, SiteName, TaskId, TaskSpec, attempt_id_of, split_attempt_id
from metasched.scheduler.states import TERMINAL, AttemptState, TaskState
from metasched.scheduler.task_records import Attempt, Transition


class Journal:
    """One campaign's journal file. Not thread-safe: the scheduler owns it."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db: sqlite3.Connection | None = None

    def open(self, *, read_only: bool = False) -> Journal:
        """Open (creating if needed) the journal file; read_only: an existing one, for queries alone.

        A journal an earlier metasched wrote (schema 2) is upgraded in place when opened for writing;
        read-only, it is refused with the command that upgrades it.
        """
        try:
            if read_only:
                self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=10,
                                           check_same_thread=False)
                check_version(self.path, self._stored_version(), writing=False)
                return self
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                            timeout=30)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            version = self._stored_version()
            check_version(self.path, version, writing=True)
            if version == "2":
                upgrade_from_2(db, self.path)
            db.executescript(SCHEMA)
        except sqlite3.Error as exc:
            self.close()
            verb = "read" if read_only else "open"
            raise JournalError(f"cannot {verb} the journal {self.path}: {exc}.") from exc
        except JournalError:
            self.close()
            raise
        self.set_meta("schema_version", SCHEMA_VERSION)
        return self

    def _stored_version(self) -> str | None:
        """The schema version the file says it has (None: a new, empty file)."""
        if self.db.execute("SELECT 1 FROM sqlite_master WHERE name = 'meta'").fetchone() is None:
            return None
        version: str | None = self.get_meta("schema_version")
        return version

    @property
    def db(self) -> sqlite3.Connection:
        """The open connection."""
        if self._db is None:
            raise JournalError(f"journal {self.path} is not open.")
        return self._db

    def close(self) -> None:
        """Close the file (a no-op if already closed)."""
        if self._db is not None:
            self._db.close()
            self._db = None

    def __enter__(self) -> Journal:
        """``with Journal(path).open(read_only=True) as stored:`` closes it however the block ends."""
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------- meta
    def set_meta(self, key: str, value: Any) -> None:
        """Store a picklable value under `key`."""
        self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, pickle.dumps(value)))

    def get_meta(self, key: str) -> Any:
        """The value stored under `key`, or None."""
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return pickle.loads(row[0]) if row else None

    # ---------------------------------------------------------------------------------------- writing
    def write_step(
        self,
        *,
        functions: dict[str, bytes] | None = None,
        new_tasks: Sequence[TaskSpec] = (),
        attempts: Sequence[Attempt] = (),
        transitions: Sequence[Transition] = (),
        finals: Sequence[FinalRecord] = (),
        counters: Iterable[tuple[TaskId, int, int, SiteName | None]] = (),
        native_ids: dict[AttemptId, str] | None = None,
        replicas: Sequence[NewReplica] = (),
        evicted: Sequence[tuple[str, str]] = (),
        moves: Iterable[tuple[TaskId, str | None, str | None]] = (),
        notes: Sequence[Note] = (),
    ) -> list[TaskId]:
        """Record one scheduler step atomically; returns the tasks whose final state was newly written."""
        db = self.db
        written: list[TaskId] = []
        try:
            db.execute("BEGIN")
            if functions:
                db.executemany("INSERT OR IGNORE INTO functions (digest, blob) VALUES (?, ?)",
                               functions.items())
            if new_tasks:
                pending = code(TaskState.PENDING)
                db.executemany("INSERT INTO task (task_id, name, spec, state) VALUES (?, ?, ?, ?)",
                               [(s.task_id, s.name, encode_spec(s), pending) for s in new_tasks])
            if attempts:
                db.executemany(UPSERT_ATTEMPT, [(a.task_id, a.number, a.site, code(a.state), a.submitted_at,
                                                 a.ended_at, *usage_columns(a.usage)) for a in attempts])
                db.executemany(f"INSERT OR REPLACE INTO output (task, number, stdout, stderr) VALUES "
                               f"({TASK_SEQ}, ?, ?, ?)",
                               [(a.task_id, a.number, *a.printed) for a in attempts if any(a.printed)])
            if native_ids:
                self.set_native_ids(native_ids)
            if replicas:
                db.executemany(
                    "INSERT OR REPLACE INTO objects (object_id, store_id, ref, size, origin, created, "
                    "transfer_s) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [(r.ref.object_id, r.ref.store.store_id, pickle.dumps(r.ref), r.ref.size, int(r.origin),
                      time.time(), r.transfer_s) for r in replicas])
            if moves:  # (task, checkpoint object, migration target)
                db.executemany("UPDATE task SET checkpoint = ?, migrate_to = ? WHERE task_id = ?",
                               [(ckpt, target, tid) for tid, ckpt, target in moves])
            if notes:
                db.executemany("INSERT INTO notes (task_id, attempt_id, site, at, note) "
                               "VALUES (?, ?, ?, ?, ?)",
                               [(n.task_id, n.attempt_id, n.site, n.at, n.note) for n in notes])
            if evicted:
                db.executemany("UPDATE objects SET evicted = ? WHERE object_id = ? AND store_id = ?",
                               [(time.time(), oid, sid) for oid, sid in evicted])
            if transitions:
                db.executemany(
                    f"INSERT INTO transition (task, attempt, site, old, new, at, detail) VALUES ({TASK_SEQ}, "
                    "?, ?, ?, ?, ?, ?)",
                    [(t.task_id, split_attempt_id(t.attempt_id)[1] if t.attempt_id else None, t.site,
                      code(t.old) if t.old else None, code(t.new), t.at, t.detail) for t in transitions])
                live = [(code(t.new), t.task_id) for t in transitions if t.new not in TERMINAL]
                db.executemany(
                    f"UPDATE task SET state = ? WHERE task_id = ? AND state NOT IN {TERMINAL_CODES}", live)
            if counters:
                db.executemany("UPDATE task SET tries = ?, attempts = ?, site = ? WHERE task_id = ?",
                               [(tries, n, site, tid) for tid, tries, n, site in counters])
            now = time.time()
            for final in finals:
                cur = db.execute(
                    "UPDATE task SET state = ?, result = ?, error = ?, finished_at = ? "
                    f"WHERE task_id = ? AND state NOT IN {TERMINAL_CODES}",
                    (code(final.state), final.result,
                     pickle.dumps(final.error) if final.error is not None else None, now, final.task_id),
                )
                if cur.rowcount == 1:
                    written.append(final.task_id)
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            db.execute("ROLLBACK")
            raise JournalError(f"cannot write to the journal {self.path}: {exc}.") from exc
        return written

    def replicas(self, *, evicted: bool = False) -> list[tuple[DataRef, bool]]:
        """Stored replicas (still present, or with `evicted` also the evicted ones) and their origin flag."""
        query = "SELECT ref, origin FROM objects" + ("" if evicted else " WHERE evicted IS NULL")
        rows = self.db.execute(query + " ORDER BY created")
        return [(pickle.loads(ref), bool(origin)) for ref, origin in rows]

    def request(self, kind: RequestKind, task_names: Sequence[str] | None, *,
                target: str | None = None) -> int:
        """Ask the running scheduler for something for named tasks (None names every task).

        Returns the id of the last request made. Another process (the CLI) may call this while the
        scheduler runs; the scheduler picks requests up within a second.
        """
        names: Sequence[str | None] = list(task_names) if task_names else [None]
        ids = [self.db.execute("INSERT INTO requests (kind, task_name, target, created) VALUES (?, ?, ?, ?)",
                               (kind.value, name, target, time.time())).lastrowid for name in names]
        return int(ids[-1] or 0)

    def take_requests(self) -> list[Request]:
        """Requests not handled yet, marked handled."""
        db = self.db
        rows = db.execute(
            "SELECT id, kind, task_name, target FROM requests WHERE handled IS NULL ORDER BY id").fetchall()
        if rows:
            now = time.time()
            db.executemany("UPDATE requests SET handled = ? WHERE id = ?", [(now, r[0]) for r in rows])
        return [Request(request_id=int(rid), kind=RequestKind(kind), task_name=name, target=target)
                for rid, kind, name, target in rows]

    def answer(self, request_id: int, outcome: str) -> None:
        """Record what the scheduler made of a request (read by the CLI that made it)."""
        self.db.execute("UPDATE requests SET outcome = ? WHERE id = ?", (outcome, request_id))

    def outcome_of(self, request_id: int) -> tuple[bool, str | None]:
        """(handled yet, the scheduler's answer) for one request."""
        row = self.db.execute("SELECT handled, outcome FROM requests WHERE id = ?", (request_id,)).fetchone()
        return (row is not None and row[0] is not None, row[1] if row else None)

    def mark_attempts_lost(self, attempt_ids: Sequence[AttemptId]) -> None:
        """Record attempts the previous scheduler left behind as LOST."""
        now = time.time()
        self.db.executemany(f"UPDATE attempt SET state = ?, ended_at = ? WHERE task = {TASK_SEQ} AND "
                            "number = ?",
                            [(code(AttemptState.LOST), now, *split_attempt_id(a)) for a in attempt_ids])

    # ---------------------------------------------------------------------------------------- reading
    def task_index(self) -> list[tuple[TaskId, str, bool]]:
        """(task id, name, superseded by a retry) of every task in submission order; no spec decoded."""
        rows = self.db.execute("SELECT task_id, name, superseded_by IS NOT NULL FROM task ORDER BY seq")
        return [(TaskId(t), n, bool(s)) for t, n, s in rows]

    def functions(self) -> dict[str, bytes]:
        """Every stored function by digest."""
        return dict(self.db.execute("SELECT digest, blob FROM functions"))

    def tasks(self) -> Iterator[StoredTask]:
        """Every task in submission order."""
        for row in self.db.execute(f"SELECT {STORED_TASK_COLUMNS} FROM task ORDER BY seq"):  # noqa: S608
            yield stored_task(row)

    def supersede(self, replacements: dict[TaskId, TaskId]) -> None:
        """Record that failed tasks were retried as new tasks (they stay in the journal as history)."""
        self.db.executemany("UPDATE task SET superseded_by = ? WHERE task_id = ?",
                            [(new, old) for old, new in replacements.items()])

    def live_attempts(self) -> list[LiveAttempt]:
        """Attempts recorded as submitted or running (what a restarted scheduler must reconcile)."""
        rows = self.db.execute(  # the partial index attempt_live holds exactly these
            "SELECT k.task_id, a.number, a.site, a.native_id FROM attempt a JOIN task k ON k.seq = a.task "
            "WHERE a.state IN (?, ?)", (code(AttemptState.SUBMITTED), code(AttemptState.RUNNING)))
        return [LiveAttempt(attempt_id=attempt_id_of(t, n), task_id=TaskId(t), site=SiteName(s), number=n,
                            native_id=native) for t, n, s, native in rows]

    def set_native_ids(self, native_ids: dict[AttemptId, str]) -> None:
        """Record the site's own id (e.g. a Slurm job id) of attempts, for re-attaching after a restart."""
        self.db.executemany(f"UPDATE attempt SET native_id = ? WHERE task = {TASK_SEQ} AND number = ?",
                            [(native, *split_attempt_id(a)) for a, native in native_ids.items()])

    def terminal_transition_counts(self) -> dict[TaskId, int]:
        """How many terminal transitions each task has (exactly one for a finished task)."""
        rows = self.db.execute("SELECT k.task_id, COUNT(*) FROM transition x JOIN task k ON k.seq = x.task "
                               f"WHERE x.new IN {TERMINAL_CODES} GROUP BY x.task")
        return {TaskId(t): n for t, n in rows}

    def claim(self, campaign: str) -> None:
        """Record that this journal belongs to `campaign`; refuse one that holds another campaign's tasks."""
        owner = self.campaign()
        (count,) = self.db.execute("SELECT COUNT(*) FROM task").fetchone()
        if owner is not None and count:
            raise ConfigurationError(f"journal {self.path} already holds campaign {owner!r} with "
                                     f"{count} task(s); use Campaign.resume({str(self.path)!r}) or another "
                                     "journal path.")
        self.set_meta("campaign", campaign)

    # ---------------------------------------------------------------------------------------- queries
    def campaign(self) -> str | None:
        """The campaign this journal belongs to."""
        name: str | None = self.get_meta("campaign")
        return name

    def counts(self) -> dict[str, dict[str, int]]:
        """Tasks (not superseded by a retry) by site ("-" before placement) and state."""
        counts: dict[str, dict[str, int]] = {}
        rows = self.db.execute("SELECT site, state, COUNT(*) FROM task WHERE superseded_by IS NULL "
                               "GROUP BY site, state")  # covered by the index task_site_state
        for site, state, count in rows:
            counts.setdefault(site or "-", {})[STATE_NAMES[state]] = count
        return counts

    def task_named(self, name: str) -> StoredTask | None:
        """The first task with this name (or id)."""
        row = self.db.execute(f"SELECT {STORED_TASK_COLUMNS} FROM task WHERE name = ? OR task_id = ? "  # noqa: S608
                              "ORDER BY seq LIMIT 1", (name, name)).fetchone()
        return None if row is None else stored_task(row)

    def notes_of(self, task_id: TaskId) -> list[Note]:
        """What was noted about the task's attempts, in order."""
        rows = self.db.execute("SELECT attempt_id, site, at, note FROM notes WHERE task_id = ? ORDER BY id",
                               (task_id,))
        return [Note(task_id=task_id, attempt_id=AttemptId(a), site=SiteName(s), at=at, note=n)
                for a, s, at, n in rows]

    def events(self, *, after: int = 0, task_id: TaskId | None = None,
               limit: int = 10_000) -> list[JournalEvent]:
        """State changes after the `after`-th (every task's, or one's), oldest first, at most `limit`."""
        where = "x.id > ?" + (f" AND x.task = {TASK_SEQ}" if task_id is not None else "")
        rows = self.db.execute(
            "SELECT x.id, x.at, k.task_id, k.name, x.old, x.new, x.attempt, x.site, a.native_id, x.detail "
            "FROM transition x JOIN task k ON k.seq = x.task LEFT JOIN attempt a ON a.task = x.task AND "
            f"a.number = x.attempt WHERE {where} ORDER BY x.id LIMIT ?",  # noqa: S608  (no user text in `where`)
            (after, *([task_id] if task_id is not None else []), limit))
        return [JournalEvent(seq=seq, at=at, task_id=TaskId(tid), task_name=name,
                             old=STATE_NAMES[old] if old else None, new=STATE_NAMES[new],
                             attempt_id=attempt_id_of(tid, n) if n else None, site=SiteName(s) if s else None,
                             native_id=native, detail=detail)
                for seq, at, tid, name, old, new, n, s, native, detail in rows]

    def attempts_of(self, task_id: TaskId) -> list[AttemptRecord]:
        """Every attempt of the task, in order, with what it printed and used where that was recorded."""
        rows = self.db.execute(
            "SELECT a.number, a.site, a.state, a.native_id, p.stdout, p.stderr, a.wall_us, a.cpu_us, "
            "a.max_rss_kib FROM attempt a LEFT JOIN output p ON p.task = a.task AND p.number = a.number "
            f"WHERE a.task = {TASK_SEQ} ORDER BY a.number", (task_id,))
        return [AttemptRecord(attempt_id=attempt_id_of(task_id, n), number=n, site=SiteName(s),
                              state=STATE_NAMES[state], native_id=native, stdout=out or "", stderr=err or "",
                              usage=usage_of(*used))
                for n, s, state, native, out, err, *used in rows]

    def placements_of(self, task_id: TaskId) -> list[tuple[AttemptId, SiteName, str]]:
        """Each attempt of the task with where it went and why (its submission's detail), in order."""
        rows = self.db.execute(f"SELECT attempt, site, detail FROM transition WHERE task = {TASK_SEQ} AND "
                               "new = ? ORDER BY id", (task_id, code(TaskState.SUBMITTED)))
        return [(attempt_id_of(task_id, n), SiteName(s), detail) for n, s, detail in rows]

    def attempt_times(self) -> list[tuple[str, str, str, str, str, float, float | None, float | None, str,
                                          str | None]]:
        """Every attempt, oldest first, with its times and why it was placed where it was.

        (attempt id, task id, task name, site, state, submitted at, ended at, first seen running at,
        placement: the detail of its submission, ``metasched.placement.explain``'s text, its job id at the
        site: a pilot block's for an attempt run in one).
        """
        this = "x.task = a.task AND x.attempt = a.number AND x.new"
        rows = self.db.execute(
            "SELECT k.task_id, a.number, k.name, a.site, a.state, a.submitted_at, a.ended_at, "
            f"(SELECT MIN(x.at) FROM transition x WHERE {this} = ?), "
            f"(SELECT x.detail FROM transition x WHERE {this} = ? LIMIT 1), a.native_id "
            "FROM attempt a JOIN task k ON k.seq = a.task ORDER BY a.submitted_at",
            (code(TaskState.RUNNING), code(TaskState.SUBMITTED)))
        return [(attempt_id_of(tid, n), tid, name, site, STATE_NAMES[state], *times)
                for tid, n, name, site, state, *times in rows]

    def usage_by_site(self) -> list[SiteUsage]:
        """What each site's measured attempts used (sites with none measured are left out)."""
        rows = self.db.execute("SELECT site, count(*), sum(wall_us), sum(cpu_us), max(max_rss_kib) "
                               "FROM attempt WHERE wall_us IS NOT NULL GROUP BY site ORDER BY site")
        return [SiteUsage(site=SiteName(site), attempts=n, wall_s=wall / 1e6, cpu_s=cpu / 1e6,
                          max_rss_mb=None if rss is None else rss / 1024)
                for site, n, wall, cpu, rss in rows]

    def heaviest_attempts(self, limit: int = 10, *, by: str = "wall_s") -> list[AttemptUsage]:
        """The `limit` attempts that ran longest (`by` = "wall_s"), used most CPU or most memory."""
        column = {"wall_s": "wall_us", "cpu_s": "cpu_us", "max_rss_mb": "max_rss_kib"}.get(by)
        if column is None:
            raise ValueError(f"cannot rank attempts by {by!r}")
        rows = self.db.execute(
            "SELECT k.task_id, a.number, k.name, k.spec, a.site, a.state, a.wall_us, a.cpu_us, a.max_rss_kib "
            "FROM "
            f"(SELECT * FROM attempt WHERE wall_us IS NOT NULL ORDER BY {column} IS NULL, {column} DESC "  # noqa: S608
            f"LIMIT ?) a JOIN task k ON k.seq = a.task ORDER BY a.{column} IS NULL, a.{column} DESC",
            (limit,))
        out = []
        for tid, n, name, spec, site, state, *used in rows:
            usage = usage_of(*used)
            assert usage is not None  # noqa: S101  (measured attempts alone were chosen)
            resources = decode_spec(tid, name, spec).resources
            out.append(AttemptUsage(attempt_id=attempt_id_of(tid, n), task_name=name, site=SiteName(site),
                                    state=STATE_NAMES[state], wall_s=usage.wall_s, cpu_s=usage.cpu_s,
                                    max_rss_mb=usage.max_rss_mb, cores=resources.cores,
                                    memory_mb=resources.memory_mb))
        return out

    def objects(self) -> list[tuple[str, str, int, bool, float | None, bool]]:
        """Every replica recorded: (object id, store id, size, origin, transfer seconds, evicted)."""
        rows = self.db.execute(
            "SELECT object_id, store_id, size, origin, transfer_s, evicted FROM objects ORDER BY created")
        return [(oid, sid, size, bool(origin), transfer_s, evicted is not None)
                for oid, sid, size, origin, transfer_s, evicted in rows]

