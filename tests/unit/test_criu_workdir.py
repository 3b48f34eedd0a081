"""A CRIU task's working directory: its output copied to the attempt directory as it grows, and emptied for
a start from scratch with the earlier run's output kept in that run's own attempt directory. Real files; the
wrapper that uses it is tested on real CRIU in tests/integration/test_migration.py."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from metasched.attempt_dir import AttemptDir
from metasched.checkpoint.workdir import WorkDir


def _attempt(tmp_path: Path, attempt_id: str) -> AttemptDir:
    attempt = AttemptDir(tmp_path / "attempts" / attempt_id)
    attempt.path.mkdir(parents=True)
    return attempt


def _started(tmp_path: Path) -> tuple[AttemptDir, WorkDir]:
    """A first attempt's working directory, started, with "one" written and copied."""
    attempt = _attempt(tmp_path, "t.1")
    work = WorkDir(tmp_path / "work" / "t", attempt)
    work.start_empty()
    _write(work, "one\n")
    work.copy_output()
    return attempt, work


def _write(work: WorkDir, text: str) -> None:
    out, err = work.open_output()
    os.write(out, text.encode())
    os.write(err, b"e")
    os.close(out)
    os.close(err)


def test_output_is_copied_as_it_grows_and_whole_at_the_end(tmp_path: Path) -> None:
    attempt, work = _started(tmp_path)
    assert attempt.command_stdout.read_text() == "one\n"
    _write(work, "two\n")
    work.copy_output(due_only=True)  # copied a moment ago: not yet
    assert attempt.command_stdout.read_text() == "one\n"
    work.copy_output()
    assert attempt.command_stdout.read_text() == "one\ntwo\n"
    assert attempt.command_stderr.read_text() == "ee"
    os.truncate(work.path / "stdout", 0)  # the task cut its own file short: the copy starts again
    _write(work, "three\n")
    work.copy_output()
    assert attempt.command_stdout.read_text() == "three\n"
    _write(work, "four\n")
    work.copy_all_output()
    assert attempt.command_stdout.read_text() == "three\nfour\n"


def test_a_copy_cut_short_or_left_long_by_a_failed_write_is_mended_at_the_next_copy(tmp_path: Path) -> None:
    attempt, work = _started(tmp_path)
    with open(attempt.command_stdout, "a") as copy:  # half of a write that then failed (a full disk)
        copy.write("tw")
    _write(work, "two\n")
    work.copy_output()
    assert attempt.command_stdout.read_text() == "one\ntwo\n"
    attempt.command_stdout.unlink()  # removed meanwhile: copied whole again
    _write(work, "three\n")
    work.copy_output()
    assert attempt.command_stdout.read_text() == "one\ntwo\nthree\n"
    shutil.rmtree(attempt.path)  # the attempt directory gone: the copy fails, the task runs on
    work.copy_output()


def test_a_start_from_scratch_empties_the_directory_and_keeps_the_earlier_runs_output_with_it(
        tmp_path: Path) -> None:
    first, earlier = _started(tmp_path)
    _write(earlier, "its last line\n")  # written after the last copy (the job was lost)
    (earlier.path / "partial.dat").write_text("half")
    second = _attempt(tmp_path, "t.2")
    work = WorkDir(earlier.path, second)
    work.start_empty()
    assert list(work.path.iterdir()) == []
    assert first.command_stdout.read_text() == "one\nits last line\n"
    assert work.owner.read_text() == str(second.path)
    _write(work, "second run\n")
    work.copy_all_output()
    assert second.command_stdout.read_text() == "second run\n"


def test_a_start_whose_earlier_attempt_directory_is_gone_still_starts_empty(tmp_path: Path) -> None:
    work_path = tmp_path / "work" / "t"
    work_path.mkdir(parents=True)
    (work_path / "stdout").write_text("left by a run metasched no longer knows\n")
    work_path.with_name("t.attempt").write_text(str(tmp_path / "attempts" / "gone.1"))
    work = WorkDir(work_path, _attempt(tmp_path, "t.2"))
    work.start_empty()
    assert list(work.path.iterdir()) == []
    assert not (tmp_path / "attempts" / "gone.1").exists()
