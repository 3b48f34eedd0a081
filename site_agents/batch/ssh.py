"""A batch site reached over SSH, with a filesystem of its own (``transport = "ssh"``).

Everything goes through the OpenSSH client, so the user's ``~/.ssh/config`` (ProxyJump, keys, agents,
Kerberos) applies: one master connection per site (``ControlMaster``), opened at start and authenticated
once, carries every scheduler command and file transfer. A master that drops is opened again at the next
command; until it is, commands fail with a transient error, so the site takes no new work and nothing is
lost (as with a controller that does not answer).

Files: this process keeps a local copy of the site area (``<local_dir>``, mirroring
``<shared_dir>/.metasched`` there). The agent writes attempt directories in the copy and **sends** them in
one tar stream before submitting their jobs; each poll runs the status command and **fetches** what the
jobs wrote (outcome records, exit statuses, checkpoint records, the job's own output; a command's output
once it has ended) in one tar stream, in the same round trip (``run_and_fetch``). The worker's code is
staged once per content, as on a shared filesystem. Stored data: ``metasched.data.remote``.

Remote commands are argv lists, quoted into one string once (``CommandRunner(joins=True)``: ``shlex.join``);
the shell scripts below are constants that take every value as a positional argument. Host keys are
checked as the user's configuration says; metasched handles no password.
"""

from __future__ import annotations

import io
import logging
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from metasched.attempt_dir import AttemptDir, site_area
from metasched.errors import SiteAgentError
from metasched.ssh import SSH_FAILED, Master, shared_master
from site_agents.batch.access import SiteUser
from site_agents.runner import CommandOutput, CommandRunner
from site_agents.staging import stage_worker_in

log = logging.getLogger(__name__)

# Values are positional arguments ("$1"...), never part of these texts.
SEND = 'mkdir -p "$1" && exec tar -C "$1" --no-same-owner -xf -'
# The files of attempt directory $1 a poll brings back (a command's output only once it has ended).
RECORDS = r"""records() {
    [ -d "$1" ] || return 0
    for f in outcome.pkl exit-status refused-runs walltime-warning coop-checkpoint container-check \
             criu-error checkpoint.json job.out job.err "$1"/restart-*.json; do
        f=${f#"$1/"}
        [ -e "$1/$f" ] && echo "$1/$f"
    done
    if [ -e "$1/outcome.pkl" ] || [ -e "$1/exit-status" ] || [ -e "$1/container-check" ] \
       || [ -e "$1/criu-error" ]; then
        for f in cmd.out cmd.err container.out container.err; do [ -e "$1/$f" ] && echo "$1/$f"; done
    fi
    return 0
}
"""
FETCH = RECORDS + r"""cd "$1" || exit 3
shift
for d in "$@"; do records "$d"; done | tar -cf - -T -
"""
# A poll in one round trip: $1 the attempts directory, $2 how many attempt ids follow, then the ids, then
# the status command. Prints "<status> <stdout bytes> <stderr bytes>", the status command's stdout and
# stderr, then the tar stream of the attempts' records (FETCH's).
STATUS_AND_FETCH = RECORDS + r"""where=$1 n=$2
shift 2
tmp=$(mktemp -d) || exit 3
trap 'rm -rf "$tmp"' EXIT
: > "$tmp/ids"
while [ "$n" -gt 0 ]; do printf '%s\n' "$1" >> "$tmp/ids"; shift; n=$((n - 1)); done
"$@" > "$tmp/out" 2> "$tmp/err"
status=$?
printf '%s %s %s\n' "$status" "$(wc -c < "$tmp/out")" "$(wc -c < "$tmp/err")"
cat "$tmp/out" "$tmp/err"
cd "$where" 2> /dev/null || cd "$tmp" || exit 3
while IFS= read -r d; do records "$d"; done < "$tmp/ids" | tar -cf - -T -
"""
RESTORE = 'cd "$1" && [ -d "$2" ] && exec tar -cf - "$2"'
TAR_CHANGED = 1  # GNU tar: a file changed while it was read (a job still writing its output); archive fine


class SshRunner(CommandRunner):
    """A CommandRunner whose commands go through the site's master; ssh's own failure is a transient error."""

    def __init__(self, master: Master, *, site: str, env: dict[str, str], timeout_s: float,
                 give_up_on: Sequence[str]) -> None:
        super().__init__(site=site, env=env, timeout_s=timeout_s, login=master.command_prefix,
                         give_up_on=give_up_on, joins=True)
        self.master = master

    def run(self, argv: Sequence[str], *, timeout_s: float | None = None, stdin: IO[bytes] | None = None,
            binary: bool = False) -> CommandOutput:
        """Run `argv` at the site; raise a transient SiteAgentError if the connection (not it) failed."""
        down = self.master.reopen_if_due()
        if down:
            raise SiteAgentError(f"site {self.site}: no SSH connection to {self.master.host}: {down}",
                                 site=self.site, transient=True)
        out = super().run(argv, timeout_s=timeout_s, stdin=stdin, binary=binary)
        if out.returncode == SSH_FAILED and not self.master.listening():
            # not run again: it may have reached the site before the connection dropped
            raise SiteAgentError(f"site {self.site}: SSH connection to {self.master.host} dropped "
                                 f"({' '.join(out.stderr.split())[-300:]})", site=self.site, transient=True)
        return out


class SshTransport:
    """A site over SSH with its own filesystem (see the module docstring)."""

    def __init__(self, *, site: str, host: str, shared_dir: str, local_dir: Path, ssh_options: Sequence[str],
                 env: dict[str, str], timeout_s: float, give_up_on: Sequence[str],
                 control_path: str | None = None) -> None:
        self.site, self.host = site, host
        self.shared_dir = shared_dir
        self.area = site_area(shared_dir)  # at the site
        self.local_area = local_dir  # its copy here
        self.master = shared_master(site, host, ssh_options, control_path)
        self.runner = SshRunner(self.master, site=site, env=env, timeout_s=timeout_s, give_up_on=give_up_on)

    def attempt(self, attempt_id: str) -> AttemptDir:
        """The attempt's directory at the site, kept here in the local copy."""
        return AttemptDir.of(self.shared_dir, attempt_id, local_area=self.local_area)

    def shared_dir_problem(self) -> str:
        """Log in (the master) and check the shared directory is a writable directory there."""
        said = self.master.reopen_if_due()
        if said:
            return said
        out = self.runner.run(["test", "-d", self.shared_dir, "-a", "-w", self.shared_dir])
        return "" if out.ok else f"shared_dir {self.shared_dir} is not a writable directory at {self.host}"

    def site_user(self) -> SiteUser:
        """The SSH user owns what it unpacks: no group write needed."""
        return SiteUser(name=self.runner.whoami(), for_group=False)

    def stage_worker(self) -> str:
        """Staged in the local copy, sent once per content (a ``lib-<hash>`` already there is kept)."""
        local = stage_worker_in(self.local_area)
        remote = self.area / local.name
        if not self.runner.run(["test", "-d", str(remote)]).ok:
            self._send_tree(self.local_area, [local.name], self.area)
        return str(remote)

    def send(self, attempts: Sequence[AttemptDir]) -> None:
        """One tar stream of these attempt directories into the site's attempts directory."""
        if attempts:
            names = [a.attempt_id for a in attempts]
            self._send_tree(self.local_area / "attempts", names, self.area / "attempts")

    def send_files(self, attempt: AttemptDir, names: Sequence[str]) -> None:
        """These files of the attempt's local copy, into its directory at the site (one tar stream)."""
        self._send_tree(attempt.here, names, attempt.path)

    def run_and_fetch(self, argv: Sequence[str], attempts: Sequence[AttemptDir]) -> CommandOutput:
        """`argv` (the status command) and ``fetch(attempts)`` in one round trip; `argv`'s output."""
        out = self.runner.run(["sh", "-c", STATUS_AND_FETCH, "sh", str(self.area / "attempts"),
                               str(len(attempts)), *(a.attempt_id for a in attempts), *argv], binary=True)
        header, _, rest = out.data.partition(b"\n")
        said = header.split()
        if out.returncode not in (0, TAR_CHANGED) or len(said) != 3 or not all(w.isdigit() for w in said):
            raise SiteAgentError(f"site {self.site}: could not poll ({argv[0]} and the attempt records): "
                                 f"{out.describe()}", site=self.site, transient=True)
        returncode, printed, complained = (int(w) for w in said)
        self._unpack(rest[printed + complained:])
        return CommandOutput(argv=tuple(argv), returncode=returncode,
                             stdout=rest[:printed].decode(errors="replace"),
                             stderr=rest[printed:printed + complained].decode(errors="replace"))

    def fetch(self, attempts: Sequence[AttemptDir]) -> None:
        """One tar stream of what these attempts' jobs wrote, unpacked into their local copies."""
        if not attempts:
            return
        out = self.runner.run(["sh", "-c", FETCH, "sh", str(self.area / "attempts"),
                               *(a.attempt_id for a in attempts)], binary=True)
        if out.returncode not in (0, TAR_CHANGED):
            raise SiteAgentError(f"site {self.site}: could not fetch attempt records: {out.describe()}",
                                 site=self.site, transient=True)
        self._unpack(out.data)

    def restore(self, attempt: AttemptDir) -> None:
        """The whole attempt directory from the site, if it is there (one tar stream)."""
        out = self.runner.run(["sh", "-c", RESTORE, "sh", str(self.area / "attempts"), attempt.attempt_id],
                              binary=True)
        if out.ok:
            self._unpack(out.data)

    def close(self) -> None:
        """Close the master connection."""
        if self.master.listening():
            self.master.close()

    def _unpack(self, stream: bytes) -> None:
        """A tar stream from the site's attempts directory, into the local copy's (nothing outside it)."""
        with tarfile.open(fileobj=io.BytesIO(stream), mode="r:") as tar:
            tar.extractall(self.local_area / "attempts", filter="data")

    def _send_tree(self, local_root: Path, names: Sequence[str], remote_root: Path) -> None:
        with tempfile.TemporaryFile() as buf:
            with tarfile.open(fileobj=buf, mode="w") as tar:
                for name in names:
                    tar.add(local_root / name, arcname=name)
            buf.seek(0)
            out = self.runner.run(["sh", "-c", SEND, "sh", str(remote_root)], stdin=buf)
        if not out.ok:
            raise SiteAgentError(f"site {self.site}: could not send {len(names)} directories to "
                                 f"{self.host}:{remote_root}: {out.describe()}", site=self.site,
                                 transient=True)
