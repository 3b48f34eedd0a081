"""The one place site agents run external commands: argv lists only, always with a timeout.

Scheduler-specific modules build argv lists and parse output (pure functions); this runner does the I/O
and turns "could not run it at all" (missing binary, timeout) into a transient ``SiteAgentError``.
Every call is counted per program name, so tests can check how many scheduler commands a poll costs.
"""

from __future__ import annotations

import os
import subprocess
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from metasched.errors import SiteAgentError


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandOutput:
    """What a finished command printed and returned."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        """True if the command exited 0."""
        return self.returncode == 0

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
    site's own client programs and `env` are used there.
    """

    def __init__(self, *, site: str, env: Mapping[str, str] | None = None, timeout_s: float = 60.0,
                 login: Sequence[str] = ()) -> None:
        self.site = site
        base = {key: os.environ[key] for key in BASE_ENV_KEYS if key in os.environ}
        self.env = {**base, **(env or {})}
        self.timeout_s = timeout_s
        self.login = tuple(login)
        self._forwarded = [f"{key}={value}" for key, value in (env or {}).items()]
        self.calls: Counter[str] = Counter()

    def run(self, argv: Sequence[str], *, timeout_s: float | None = None, input_text: str | None = None
            ) -> CommandOutput:
        """Run `argv` (never through a shell) and return its output; raise only if it could not run."""
        program = os.path.basename(argv[0])
        self.calls[program] += 1
        full = [*self.login, "env", *self._forwarded, *argv] if self.login else list(argv)
        try:
            proc = subprocess.run(
                full, capture_output=True, text=True, env=self.env,
                timeout=timeout_s or self.timeout_s, input=input_text, check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise SiteAgentError(
                f"site {self.site}: {program} did not answer within {exc.timeout:.0f} s.",
                site=self.site, transient=True,
            ) from exc
        except OSError as exc:
            raise SiteAgentError(
                f"site {self.site}: cannot run {program}: {exc.strerror}. Is the scheduler's client "
                "installed on this machine?", site=self.site, transient=False,
            ) from exc
        return CommandOutput(argv=tuple(argv), returncode=proc.returncode, stdout=proc.stdout,
                             stderr=proc.stderr)
