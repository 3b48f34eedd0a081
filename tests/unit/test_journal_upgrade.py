"""A journal metasched wrote in schema 2 (tests/data/journal-v2) upgraded in place to schema 3.

The schema-3 views carry the schema-2 table names and columns, so each view must read back exactly what
the schema-2 table held (resource use to the microsecond and the KiB it is now stored in).
"""

from __future__ import annotations

import contextlib
import pickle
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from metasched.errors import JournalError
from metasched.journal import Journal

FIXTURE = Path(__file__).parents[1] / "data" / "journal-v2" / "campaign.db"
QUERIES = {
    "tasks": "SELECT seq, task_id, name, state, tries, attempts, site, result, error, finished_at, "
             "superseded_by, checkpoint, migrate_to FROM tasks ORDER BY seq",
    "attempts": "SELECT attempt_id, task_id, site, number, state, native_id, submitted_at, ended_at "
                "FROM attempts ORDER BY attempt_id",
    "transitions": "SELECT id, task_id, attempt_id, site, old, new, at, detail FROM transitions ORDER BY id",
    "printed": "SELECT attempt_id, stdout, stderr FROM printed ORDER BY attempt_id",
    "usage": "SELECT attempt_id, site, wall_s, cpu_s, max_rss_mb FROM usage ORDER BY attempt_id",
    "specs": "SELECT spec FROM tasks ORDER BY seq",
}


def _read(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return {name: db.execute(query).fetchall() for name, query in QUERIES.items()}


@pytest.fixture
def old_journal(tmp_path: Path) -> Path:
    copy = tmp_path / "campaign.db"
    shutil.copy(FIXTURE, copy)
    return copy


def test_upgrade_keeps_every_row_readable_under_its_old_name(old_journal: Path) -> None:
    before = _read(old_journal)
    assert len(before["tasks"]) == 8
    assert len(before["transitions"]) > 30
    assert before["printed"]
    journal = Journal(old_journal).open()
    assert journal.get_meta("schema_version") == "3"
    specs = [stored.spec for stored in journal.tasks()]
    journal.close()
    after = _read(old_journal)
    for name in ("tasks", "attempts", "transitions", "printed"):
        assert after[name] == before[name], name
    assert [pickle.loads(blob) for (blob,) in before["specs"]] == specs
    assert len(after["usage"]) == len(before["usage"])
    for new, old in zip(after["usage"], before["usage"], strict=True):
        assert new[:2] == old[:2]
        assert new[2:4] == pytest.approx(old[2:4], abs=1e-6)
        assert new[4] == pytest.approx(old[4], abs=1 / 1024)


def test_upgraded_journal_answers_the_cli_queries(old_journal: Path) -> None:
    with Journal(old_journal).open() as journal:
        assert journal.counts() == {"local": {"done": 5, "failed": 2}}  # the superseded exit-3 not counted
        broken = journal.task_named("broken")
        assert broken is not None
        assert broken.tries == 2
        events = journal.events(task_id=broken.spec.task_id)
        assert [(e.old, e.new) for e in events] == [
            (None, "pending"), ("pending", "ready"), ("ready", "submitted"), ("submitted", "ready"),
            ("ready", "submitted"), ("submitted", "failed")]
        attempts = journal.attempts_of(broken.spec.task_id)
        assert [(a.number, a.state, a.stdout) for a in attempts] == [(1, "failed", "about to fail\n"),
                                                                     (2, "failed", "about to fail\n")]
        assert all(a.usage is not None for a in attempts)
        assert journal.usage_by_site()[0].attempts == 9


def test_reading_an_old_journal_names_the_upgrade_command(old_journal: Path) -> None:
    with pytest.raises(JournalError, match="metasched upgrade"):
        Journal(old_journal).open(read_only=True)
    status = subprocess.run([sys.executable, "-m", "metasched", "status", str(old_journal)],
                            capture_output=True, text=True, timeout=120, check=False)
    assert status.returncode == 2
    assert "metasched upgrade" in status.stderr
    assert "Traceback" not in status.stderr
    with contextlib.closing(sqlite3.connect(old_journal)) as db:  # as if its campaign were still running
        db.execute("UPDATE transitions SET at = strftime('%s', 'now') "
                   "WHERE id = (SELECT max(id) FROM transitions)")
        db.commit()
    refused = subprocess.run([sys.executable, "-m", "metasched", "upgrade", str(old_journal)],
                             capture_output=True, text=True, timeout=120, check=False)
    assert refused.returncode == 2
    assert "still running" in refused.stderr
    upgrade = subprocess.run([sys.executable, "-m", "metasched", "upgrade", "--force", str(old_journal)],
                             capture_output=True, text=True, timeout=120, check=False)
    assert upgrade.returncode == 0, upgrade.stderr
    assert "upgraded from schema 2 to 3 (8 tasks" in upgrade.stdout
    with Journal(old_journal).open(read_only=True) as journal:
        assert journal.counts()["local"]["done"] == 5


def test_a_failed_upgrade_leaves_the_old_journal_as_it_was(old_journal: Path) -> None:
    with contextlib.closing(sqlite3.connect(old_journal)) as db:
        db.execute("UPDATE tasks SET spec = x'00' WHERE name = 'shout'")
        db.commit()
    before = _read(old_journal)
    with pytest.raises(JournalError, match=r"spec cannot be read.*left as it was \(schema 2\)"):
        Journal(old_journal).open()
    assert _read(old_journal) == before
    with pytest.raises(JournalError, match="metasched upgrade"):  # still schema 2, still refused read-only
        Journal(old_journal).open(read_only=True)
