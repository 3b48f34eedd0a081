"""How a batch agent reaches its site: where commands run and how the site's files get there and back.

A batch site's attempts live in its shared directory (``metasched.attempt_dir``). On a shared filesystem
(``LocalTransport``, every site before SSH) this process writes and reads them in place and runs the
site's client programs here or through a ``login`` prefix. A site reached over SSH (``site_agents.batch.ssh``)
has its own filesystem: this process keeps a local copy of each attempt directory (``AttemptDir.here``),
**sends** what it wrote in one stream before the jobs are submitted and **fetches** the records the jobs
wrote back, in one stream per poll. The agent calls both on every site; here they do nothing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Protocol

from metasched.attempt_dir import AttemptDir
from site_agents.batch.access import SiteUser, site_user
from site_agents.batch.config import BatchSite
from site_agents.runner import CommandOutput, CommandRunner
from site_agents.staging import stage_worker


class Transport(Protocol):
    """The seam between the batch agent and where its site is (see the module docstring)."""

    @property
    def runner(self) -> CommandRunner:
        """Runs the site's client programs (where they are)."""
        ...

    def attempt(self, attempt_id: str) -> AttemptDir:
        """An attempt's directory: as the site's jobs see it, and where this process reads and writes it."""
        ...

    def shared_dir_problem(self) -> str:
        """What is wrong with the site's shared directory ("" if it is usable)."""
        ...

    def site_user(self) -> SiteUser:
        """Who the site's commands run as, and whether attempt directories must be group-writable."""
        ...

    def stage_worker(self) -> str:
        """The PYTHONPATH the site's nodes import metasched's worker from (staged there if new)."""
        ...

    def send(self, attempts: Sequence[AttemptDir]) -> None:
        """Make what this process wrote in these attempt directories visible to the site's jobs."""
        ...

    def send_files(self, attempt: AttemptDir, names: Sequence[str]) -> None:
        """Make these files this process wrote in a running attempt's directory visible to its job."""
        ...

    def run_and_fetch(self, argv: Sequence[str], attempts: Sequence[AttemptDir]) -> CommandOutput:
        """Run `argv` at the site and ``fetch(attempts)`` (one round trip where that counts); its output."""
        ...

    def fetch(self, attempts: Sequence[AttemptDir]) -> None:
        """Make what these attempts' jobs wrote so far readable here."""
        ...

    def restore(self, attempt: AttemptDir) -> None:
        """Bring back the local copy of an attempt directory missing here (a campaign resumed elsewhere)."""
        ...

    def close(self) -> None:
        """Let go of any connection to the site."""
        ...


class LocalTransport:
    """A site that shares this machine's filesystem: attempt directories are read and written in place."""

    def __init__(self, runner: CommandRunner, shared_dir: str) -> None:
        self.runner = runner
        self.shared_dir = shared_dir

    def attempt(self, attempt_id: str) -> AttemptDir:
        """The attempt's directory in the shared filesystem."""
        return AttemptDir.of(self.shared_dir, attempt_id)

    def shared_dir_problem(self) -> str:
        """The shared directory must be a directory here."""
        return "" if os.path.isdir(self.shared_dir) else f"shared_dir {self.shared_dir} is not a directory"

    def site_user(self) -> SiteUser:
        """Ask the site (see ``site_agents.batch.access``)."""
        return site_user(self.runner, self.shared_dir)

    def stage_worker(self) -> str:
        """A copy in the shared directory."""
        return str(stage_worker(self.shared_dir))

    def send(self, attempts: Sequence[AttemptDir]) -> None:
        """Nothing to send: the jobs read the same files."""

    def send_files(self, attempt: AttemptDir, names: Sequence[str]) -> None:
        """Nothing to send: the job reads the same files."""

    def run_and_fetch(self, argv: Sequence[str], attempts: Sequence[AttemptDir]) -> CommandOutput:
        """Only `argv`: there is nothing to fetch."""
        return self.runner.run(argv)

    def fetch(self, attempts: Sequence[AttemptDir]) -> None:
        """Nothing to fetch: the jobs wrote the same files."""

    def restore(self, attempt: AttemptDir) -> None:
        """Nothing to restore: there is no copy."""

    def close(self) -> None:
        """Nothing to close."""



def worker_path(config: BatchSite, transport: Transport) -> str:
    """Where the site's nodes import metasched from: its own `worker_pythonpath`, or a copy staged there."""
    return config.worker_pythonpath or transport.stage_worker()


def transport_for(config: BatchSite, env: Mapping[str, str], give_up_on: Sequence[str]) -> Transport:
    """The transport a site's configuration asks for (its commands get `env` and stop at `give_up_on`)."""
    if config.transport == "ssh":
        from site_agents.batch.ssh import SshTransport

        return SshTransport(site=config.name, host=config.host, shared_dir=config.shared_dir,
                            local_dir=config.local_copy_dir(), ssh_options=config.ssh_options, env=dict(env),
                            timeout_s=config.command_timeout_s, give_up_on=give_up_on,
                            control_path=config.ssh_control_path)
    runner = CommandRunner(site=config.name, env=env, timeout_s=config.command_timeout_s, login=config.login,
                           give_up_on=give_up_on)
    return LocalTransport(runner, config.shared_dir)
