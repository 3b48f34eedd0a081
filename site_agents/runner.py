"""The one place site agents run external commands: argv lists only, always with a timeout.

Scheduler-specific modules build argv lists and parse output (pure functions); this runner does the I/O
and turns "could not run it at all" (missing binary, timeout) into a transient ``SiteAgentError``.
Every call is counted per program name, so tests can check how many scheduler commands a poll costs.

A client that retries on its own (a Slurm command without its configuration, or refused by munge,
retries for up to a minute) is stopped at the first line of stderr holding one of `give_up_on`: the
caller gets the client's own words at once instead of a timeout that hides them.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import shlex
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import IO

from metasched.errors import SiteAgentError


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandOutput:
    """What a finished command printed and returned."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    data: bytes = b""  # stdout as bytes, instead of `stdout`, when asked for (``run(..., binary=True)``)

    @property
    def ok(self) -> bool:
        """True if the command exited 0."""
        return self.returncode == 0

    @property
    def killed(self) -> bool:
        """True if it ended by a signal without a word: here (a negative code) or through a login prefix.

        ``docker exec`` into a container being stopped exits 137 (128 + SIGKILL); ssh that lost its
        connection 255. Silence tells these from a program's own refusal with a high code (PBS's qsub
        exits with its error number's low byte, and says why).
        """
        high = self.returncode < 0 or self.returncode > 128
        return high and not self.stdout.strip() and not self.stderr.strip()

    def describe(self) -> str:
        """One line for error messages: the program, its exit status and its stderr."""
        err = self.stderr.strip().replace("\n", " | ")[:500]
        return f"{self.argv[0]} exited {self.returncode}: {err or self.stdout.strip()[:200]}"


# What a scheduler command inherits from this process when the runner does not pass everything on: enough
# to run, nothing that could carry a secret (batch jobs may copy the submitting environment).
BASE_ENV_KEYS = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ", "TMPDIR")


class CommandRunner:
    """Runs argv lists with a small base environment plus `env`, a timeout, and counts per program.

    With a `login` prefix (an argv that runs the rest of its argv as given, e.g. ``docker exec -i
    CONTAINER``: the site's login node), each command runs as ``[*login, "env", *env, *argv]``, so the
    site's own client programs and `env` are used there. A prefix that hands its remote side one shell
    string (``ssh HOST --``: `joins`) gets ``env ... argv`` quoted into one string, once, here.
    """

    def __init__(self, *, site: str, env: Mapping[str, str] | None = None, timeout_s: float = 60.0,
                 login: Sequence[str] = (), give_up_on: Sequence[str] = (), joins: bool = False) -> None:
        self.site = site
        self.joins = joins
        self.give_up_on = tuple(give_up_on)
        base = {key: os.environ[key] for key in BASE_ENV_KEYS if key in os.environ}
        self.env = {**base, **(env or {})}
        self.timeout_s = timeout_s
        self.login = tuple(login)
        self._forwarded = [f"{key}={value}" for key, value in (env or {}).items()]
        self.calls: Counter[str] = Counter()

    def run(self, argv: Sequence[str], *, timeout_s: float | None = None, stdin: IO[bytes] | None = None,
            binary: bool = False) -> CommandOutput:
        """Run `argv` (never through a shell) and return its output; raise only if it could not run.

        A command stopped at a line of `give_up_on` returns exit status -1 with what it printed so far.
        `stdin`: a file the command reads (default none); `binary`: its stdout comes back in ``data``.
        """
        program = os.path.basename(argv[0])
        self.calls[program] += 1
        full, remote = list(argv), ["env", *self._forwarded, *argv]
        if self.login:
            full = [*self.login, shlex.join(remote)] if self.joins else [*self.login, *remote]
        limit = timeout_s or self.timeout_s
        deadline = time.monotonic() + limit  # from the call, not from when this thread next runs
        try:
            proc = subprocess.Popen(full, stdin=stdin or subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, env=self.env, start_new_session=True)
        except OSError as exc:
            raise SiteAgentError(
                f"site {self.site}: cannot run {program}: {exc.strerror}. Is the scheduler's client "
                "installed on this machine?", site=self.site, transient=False,
            ) from exc
        stdout, stderr, ended = self._collect(proc, deadline)
        said = stderr.decode(errors="replace")
        if ended == "timed out":
            raise SiteAgentError(f"site {self.site}: {program} did not answer within {limit:.0f} s"
                                 + (f"; it said: {said.strip()[-500:]}" if said.strip() else "."),
                                 site=self.site, transient=True)
        return CommandOutput(argv=tuple(argv), returncode=-1 if ended == "gave up" else int(proc.returncode),
                             stdout="" if binary else stdout.decode(errors="replace"), stderr=said,
                             data=stdout if binary else b"")

    def whoami(self) -> str:
        """The user the commands run as at the site (through the login prefix: maybe not ours here)."""
        out = self.run(["id", "-un"])
        user = out.stdout.strip().splitlines()[-1] if out.ok and out.stdout.strip() else ""
        if not user:
            raise SiteAgentError(f"site {self.site}: cannot tell which user its commands run as "
                                 f"({out.describe()}).", site=self.site, transient=True)
        return user

    def _collect(self, proc: subprocess.Popen[bytes], deadline: float) -> tuple[bytes, bytes, str]:
        """What the command prints, and how it ended.

        "exited", "gave up" (a line of `give_up_on`) or "timed out"; the last two are killed, with their
        process group.
        """
        assert proc.stdout is not None  # noqa: S101  (piped by run)
        assert proc.stderr is not None  # noqa: S101
        names = {proc.stdout.fileno(): 1, proc.stderr.fileno(): 2}
        chunks: dict[int, list[bytes]] = {1: [], 2: []}
        ended = "exited"
        with selectors.DefaultSelector() as selector:
            for fd in names:
                selector.register(fd, selectors.EVENT_READ)
            while selector.get_map() and ended == "exited":
                left = deadline - time.monotonic()
                ready = selector.select(timeout=left) if left > 0 else []
                if not ready:
                    ended = "timed out"
                for key, _ in ready:
                    data = os.read(key.fd, 65536)
                    if not data:
                        selector.unregister(key.fd)
                    chunks[names[key.fd]].append(data)
                    if names[key.fd] == 2 and data and self._gives_up(b"".join(chunks[2])):
                        ended = "gave up"
        if ended == "exited":
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                ended = "timed out"
        if ended != "exited":
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            stream.close()
        return b"".join(chunks[1]), b"".join(chunks[2]), ended

    def _gives_up(self, stderr: bytes) -> bool:
        """Whether a complete line of stderr holds a marker of `give_up_on`."""
        if not self.give_up_on:
            return False
        lines = stderr.decode(errors="replace").rpartition("\n")[0]
        return any(marker in lines for marker in self.give_up_on)
