"""The batch-job side of CRIU checkpointing: ``python -m metasched.checkpoint.criu_job ATTEMPT_DIR``.

Runs on a compute node (the job script ``exec``s it, so Slurm's signals reach it). It reads the
attempt's CRIU task (``AttemptDir.read_criu_task``) and either starts the command as the first process
of a new PID namespace in its working directory (``metasched.checkpoint.workdir``: emptied for a start
from scratch, its output copied as it grows), or restores it from a checkpoint archive. It is the
subreaper of the task and writes the same records as a plain command job (exit status, command output,
through ``AttemptDir``), so the agent reads both kinds alike.

Signals: USR2 = checkpoint now (for a migration); USR1 = Slurm's warning before the time limit
(checkpoint if ``checkpoint_on_warning``, else recorded as a walltime warning); TERM = cancel (the
namespace's init ignores TERM, so the task gets KILL). Slurm may send USR1 up to a minute early (seen
here: 2 s into a one-minute job with a 30 s lead), so a walltime checkpoint waits until ``lead_s``
before the job's time limit, as the warning meant: an early signal must not cost an extra hop.

In a pilot block the wrapper is the child of a Ray task, not a job: no scheduler warns or signals it.
Its task then carries ``leave_by`` (the block's end, less the lead): it checkpoints then, or ``lead_s``
before its own time limit if sooner, and a migration asks through the attempt directory (a request file
that says "stop") instead of USR2. The task dies with the wrapper (parent-death signals), so a
force-cancelled Ray task leaves nothing running.

A checkpoint is ``criu dump`` of the namespace, then an archive (the images and the working directory,
taken while the task is stopped so every open file has its size at dump time) and its record (size and
xxh3-128 hash of the archive, reason). The job then ends with status 0; the agent recognises a
checkpoint by its record, never by the job state.

Standard library only (plus xxhash and metasched's attempt directory, staged with metasched): it runs on
the node's own Python.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from metasched.attempt_dir import AttemptDir
from metasched.checkpoint.workdir import WorkDir

_PR_SET_CHILD_SUBREAPER = 36
_CLONE_NEWPID = 0x20000000
_libc = ctypes.CDLL("libc.so.6", use_errno=True)

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In a child: SIGKILL when its parent dies (a killed wrapper takes its task along)."""
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _digest_file(path: Path) -> str:
    """xxh3-128 of a file, read through mmap (the archive was just written: it is in the page cache)."""
    import mmap

    import xxhash

    with open(path, "rb") as handle:
        if os.fstat(handle.fileno()).st_size == 0:
            return str(xxhash.xxh3_128_hexdigest(b""))
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as view:
            return str(xxhash.xxh3_128_hexdigest(view))


def _errors(log: Path) -> str:
    """CRIU's error lines from its log (its warnings are noise here), or the log's tail."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return f"(no log at {log})"
    errors = [line.strip() for line in text.splitlines() if "Error (" in line]
    return "; ".join(errors[:5]) if errors else text[-1500:]


def _tar(*args: str) -> None:
    """GNU tar (C, several times faster than Python's tarfile on hundreds of MB)."""
    proc = subprocess.run(["tar", *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"tar {' '.join(args[:2])} failed (exit {proc.returncode}): {proc.stderr[-2000:]}")


class Job:
    """One attempt: start or restore the task, watch it, checkpoint it on request."""

    def __init__(self, attempt: AttemptDir) -> None:
        self.attempt = attempt
        self.dir = attempt.path
        self.task: dict[str, Any] = attempt.read_criu_task()
        self.work = WorkDir(Path(self.task["workdir"]), attempt)
        self.workdir = self.work.path
        self.criu = self.task.get("criu", "criu")
        self.pid = 0  # the task (init of its PID namespace), as this process sees it
        self.intermediate = 0  # the process that created the namespace (first start only)
        self.requested: str | None = None
        self.start = time.time()
        self.checkpoint_at: float | None = None  # when a walltime warning's checkpoint is due
        self.restart_points = 0
        self.last_checkpoint = time.time()
        every = self.task.get("checkpoint_every_s")
        self.every: float | None = float(every) if every else None

    # --------------------------------------------------------------------------------- starting
    def launch(self) -> None:
        """Start the command as PID 1 of a new PID namespace, in its working directory, made empty."""
        self.work.start_empty()
        read_end, write_end = os.pipe()
        child = os.fork()
        if child == 0:  # the intermediate: create the namespace, fork its init, pass on its exit status
            os.close(read_end)
            _die_with_parent()
            if _libc.unshare(_CLONE_NEWPID) != 0:
                os.write(write_end, b"0")
                os._exit(125)
            init = os.fork()
            if init == 0:
                _die_with_parent()  # the namespace ends with its creator (and it with this wrapper)
                os.setsid()
                os.chdir(self.workdir)
                out, err = self.work.open_output()
                null = os.open(os.devnull, os.O_RDONLY)
                os.dup2(null, 0)
                os.dup2(out, 1)
                os.dup2(err, 2)
                os.closerange(3, 1024)
                env = {**os.environ, **self.task.get("env", {})}
                try:
                    os.execvpe(self.task["argv"][0], self.task["argv"], env)
                except OSError as exc:
                    os.write(2, f"metasched: cannot run {self.task['argv'][0]!r}: {exc}\n".encode())
                    os._exit(127)
            os.write(write_end, str(init).encode())
            os.close(write_end)
            _, status = os.waitpid(init, 0)
            os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status))
        os.close(write_end)
        self.intermediate = child
        self.pid = int(os.read(read_end, 32) or b"0")
        os.close(read_end)

    def restore(self) -> None:
        """Unpack the checkpoint (working directory at its original path) and restore the task."""
        archive = Path(self.task["restore"])
        images = self.attempt.images_dir
        shutil.rmtree(images, ignore_errors=True)
        shutil.rmtree(self.workdir, ignore_errors=True)
        # One pass: images/ next to this job, workdir/ at the task's absolute path (the archive holds
        # only these two trees, written by checkpoint() below).
        rename = (f"s|^workdir|{str(self.workdir).lstrip('/')}|;"
                  f"s|^images|{str(images).lstrip('/')}|")
        started = time.time()
        _tar("--extract", f"--file={archive}", "--directory=/", f"--transform={rename}", "images", "workdir")
        unpacked = time.time()
        pidfile = self.attempt.restored_pid_file
        proc = subprocess.run(
            [self.criu, "restore", "--images-dir", str(images), "--unprivileged", "--restore-detached",
             "--restore-sibling", "--pidfile", str(pidfile), "--log-file", "restore.log", "-v2"],
            capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            why = _errors(images / "restore.log")
            raise RuntimeError(f"criu restore failed (exit {proc.returncode}): {why}")
        self.pid = int(pidfile.read_text().strip())
        self.work.claim()
        timing = {"unpack_s": unpacked - started, "restore_s": time.time() - unpacked,
                  "job_start_to_running_s": time.time() - self.start}
        self.attempt.restore_timing_file.write_text(json.dumps(timing))

    # ------------------------------------------------------------------------------- checkpoint
    def checkpoint(self, reason: str, *, keep_running: bool = False) -> None:
        """Dump the namespace and archive images + working directory.

        Stopping (a migration, the time limit): the task ends with the dump; the archive is
        ``checkpoint.tar`` and ``checkpoint.json`` says so. Keep running (a restart point, on demand or
        periodic): the task is left stopped while the archive is written, so every file it holds open
        has the size CRIU recorded, then continued; the archive is ``restart-<n>.tar`` with
        ``restart-<n>.json``.
        """
        images = self.attempt.images_dir
        shutil.rmtree(images, ignore_errors=True)
        images.mkdir()
        started = time.time()
        argv = [self.criu, "dump", "--tree", str(self.pid), "--images-dir", str(images), "--unprivileged",
                "--log-file", "dump.log", "-v2"]
        proc = subprocess.run([*argv, "--leave-stopped"] if keep_running else argv,
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"criu dump failed (exit {proc.returncode}): {_errors(images / 'dump.log')}")
        dumped = time.time()
        if keep_running:
            self.restart_points += 1
            archive = self.attempt.restart_archive(self.restart_points)
            note = self.attempt.restart_record_file(self.restart_points)
        else:
            archive, note = self.attempt.checkpoint_archive, self.attempt.checkpoint_record_file
        try:
            tmp = archive.with_name(archive.name + ".tmp")
            _tar("--create", f"--file={tmp}", f"--directory={self.dir}", "images",
                 f"--directory={self.workdir.parent}", f"--transform=s|^{self.workdir.name}|workdir|",
                 self.workdir.name)
        finally:
            if keep_running:
                self._continue_tree()
        size, digest = tmp.stat().st_size, _digest_file(tmp)
        os.replace(tmp, archive)
        record = {"reason": reason, "size": size, "digest": digest, "dump_s": dumped - started,
                  "archive_s": time.time() - dumped, "at": time.time(), "archive": archive.name}
        self.attempt.write_checkpoint_record(note, record)
        self.last_checkpoint = time.time()

    def _continue_tree(self) -> None:
        """SIGCONT every process of the task's tree (left stopped by ``criu dump --leave-stopped``)."""
        pending, seen = [self.pid], set()
        while pending:
            pid = pending.pop()
            if pid in seen:
                continue
            seen.add(pid)
            for task in Path(f"/proc/{pid}/task").glob("*"):
                try:
                    pending += [int(c) for c in (task / "children").read_text().split()]
                except OSError:
                    continue
        for pid in seen:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                continue

    # ------------------------------------------------------------------------------------- main
    def run(self) -> int:
        """Start or restore the task, then wait for it, a checkpoint request or a cancel."""
        _libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        signal.signal(signal.SIGUSR2, lambda *_: self._request("requested"))
        signal.signal(signal.SIGUSR1, lambda *_: self._warned())
        signal.signal(signal.SIGTERM, lambda *_: self._request("cancel"))
        if self.task.get("restore"):
            self.restore()
        else:
            self.launch()
        leave_by = self.task.get("leave_by")
        if leave_by is not None:  # in a pilot block no scheduler warns: checkpoint before it ends
            self.checkpoint_at = min(float(leave_by), self._walltime_due() or math.inf)
        while True:
            if self.checkpoint_at is not None and time.time() >= self.checkpoint_at:
                self.checkpoint_at = None
                self._request("walltime")
            asked = self.attempt.take_restart_request()
            if asked == "stop":  # a migration where the agent cannot signal the wrapper (a pilot block)
                self._request("requested")
            # A signal may arrive at any point, also while a restart point is taken: what was asked is
            # read once, here, and a cancel is never taken for a checkpoint's reason.
            if self.requested is not None:
                reason, self.requested = self.requested, None
                if reason == "cancel":  # scancel: no exit status of the task's own; the agent
                    self._kill()        # reads the job's CANCELLED state instead
                    self.work.copy_output()
                    return 143
                try:
                    self.checkpoint(reason)
                except RuntimeError as exc:  # criu left the task running: go on, say why
                    self.attempt.note_checkpoint_failed(str(exc))
                    continue
                self._reap_all()
                self.work.copy_output()
                return 0
            now_asked = asked == "restart point"
            if now_asked or (self.every is not None and time.time() - self.last_checkpoint >= self.every):
                try:
                    self.checkpoint("on demand" if now_asked else "periodic", keep_running=True)
                except RuntimeError as exc:  # the task goes on; say why there is no restart point
                    self.attempt.note_checkpoint_failed(str(exc))
                    self.last_checkpoint = time.time()
                continue  # a signal taken meanwhile is answered before the task is polled
            status = self._poll_task()
            if status is not None:
                return self._finish(status)
            self.work.copy_output(due_only=True)
            time.sleep(0.05)

    def _request(self, what: str) -> None:
        if self.requested is None or what == "cancel":
            self.requested = what

    def _warned(self) -> None:
        self.attempt.note_walltime_warning(time.time())
        if self.task.get("checkpoint_on_warning"):
            self.checkpoint_at = max(time.time(), self._walltime_due() or time.time())

    def _walltime_due(self) -> float | None:
        """When a walltime checkpoint is due: ``lead_s`` before the time limit (None without a limit)."""
        limit, lead = self.task.get("time_limit_s"), self.task.get("lead_s")
        return self.start + float(limit) - float(lead) if limit and lead else None

    def _poll_task(self) -> int | None:
        """The task's exit status once it ended; reaps whatever else was reparented to us."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return 0
            if pid == 0:
                return None
            code = os.waitstatus_to_exitcode(status)
            code = code if code >= 0 else 128 - code
            if pid == self.pid or (pid == self.intermediate and self.pid == 0):
                return code
            if pid == self.intermediate:  # the intermediate passes on the init's status
                return code

    def _kill(self) -> None:
        for pid in (self.pid, self.intermediate):
            if pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self._reap_all()

    def _reap_all(self) -> None:
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                time.sleep(0.02)

    def _finish(self, status: int) -> int:
        self.work.copy_all_output()
        self.attempt.write_exit_status(status, self.start, time.time())
        return status


def check(directory: Path, criu: str) -> str:
    """Dump and restore a `sleep` here with this module's own code; what worked, or raise why not.

    This is the gate of the CRIU backend (``metasched sites check`` runs it in a job): a full
    ``criu check`` fails in containers (``/proc/sys`` is read-only) although the dump and restore
    metasched does work there, so the gate is that dump and restore.
    """
    version = subprocess.run([criu, "--version"], capture_output=True, text=True, check=False)
    if version.returncode != 0:
        raise RuntimeError(f"{criu} --version failed: {version.stderr.strip() or version.stdout.strip()}")
    shutil.rmtree(directory, ignore_errors=True)
    attempt = AttemptDir(directory).create()
    task = {"argv": ["sleep", "120"], "env": {}, "workdir": str(directory / "work"), "criu": criu}
    attempt.write_criu_task(task)
    job = Job(attempt)
    job.launch()
    time.sleep(0.3)
    job.checkpoint("check")
    job._reap_all()
    record = json.loads(attempt.checkpoint_record_file.read_text())
    attempt.write_criu_task({**task, "restore": str(attempt.checkpoint_archive)})
    again = Job(attempt)
    started = time.time()
    again.restore()
    restored = time.time() - started
    again._kill()
    shutil.rmtree(directory, ignore_errors=True)
    full = subprocess.run([criu, "check", "--unprivileged"], capture_output=True, text=True, check=False)
    said = [line for line in (full.stdout + full.stderr).splitlines() if "Error" in line or "good" in line]
    verdict = "passes" if full.returncode == 0 else f"fails ({'; '.join(said[-2:])}), not needed for this"
    return (f"{version.stdout.strip().splitlines()[0]}: dump {record['dump_s']:.2f} s, restore "
            f"{restored:.2f} s in a PID namespace; criu check {verdict}")


def main(argv: list[str]) -> int:
    """Run the attempt in ARGV[0]; the exit status is the task's (0 after a checkpoint).

    ``--check DIR CRIU``: the backend's gate (see check()); prints what worked or why not.
    """
    if len(argv) == 3 and argv[0] == "--check":
        try:
            print("criu works: " + check(Path(argv[1]), argv[2]))
            return 0
        except Exception as exc:  # the message is the preflight's detail
            print(f"criu does not work here: {type(exc).__name__}: {exc}")
            return 1
    if len(argv) != 1:
        print("usage: python -m metasched.checkpoint.criu_job ATTEMPT_DIR | --check DIR CRIU",
              file=sys.stderr)
        return 2
    attempt = AttemptDir(argv[0])
    try:
        return Job(attempt).run()
    except Exception as exc:  # reported through the job's stderr and a failed exit status
        print(f"metasched checkpoint job failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        attempt.write_criu_error(f"{type(exc).__name__}: {exc}")
        return 70


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
