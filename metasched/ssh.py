"""One OpenSSH master connection per remote host, shared by everything in this process that goes there.

metasched reaches a site's login node with the OpenSSH client, so the user's ``~/.ssh/config`` (ProxyJump,
keys, agents, Kerberos) applies. A ``Master`` is one ``ControlMaster`` connection, authenticated once
(``BatchMode``: it never prompts); every command runs through it (``command_prefix``). It is checked
before use (ssh quietly opens a connection of its own without one) and opened again at most every
``REOPEN_EVERY_S``. ``shared_master`` hands every user in a process (a batch site's agent, the data layer's
store connector) the same one per host and options. With a control path of the user's own (a master opened
by hand to answer a one-time code), it is used while it runs, never opened or closed here.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import os
import shlex
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger(__name__)

MASTER_PERSIST_S = 300  # a master outlives a scheduler killed with it open by this much, then exits
MASTER_OPEN_TIMEOUT_S = 30.0
REOPEN_EVERY_S = 5.0  # a master that dropped is opened again at most this often
SSH_FAILED = 255  # ssh's own exit status when it could not run the command at all


class Master:
    """The site's ControlMaster connection: opened once, checked and opened again when it drops.

    With `control_path` the master is the user's own (opened by hand, e.g. to answer a one-time code):
    it is used while it runs, never opened or closed here.
    """

    def __init__(self, site: str, host: str, options: Sequence[str], control_path: str | None = None) -> None:
        self.site, self.host = site, host
        self.owned = control_path is None
        if control_path is None:
            sockets = Path(tempfile.gettempdir()) / f"metasched-ssh-{os.getuid()}"
            sockets.mkdir(mode=0o700, exist_ok=True)
            name = hashlib.sha256(f"{host}\0{options}\0{os.getpid()}".encode()).hexdigest()[:16]
            self.socket = sockets / name  # short: a Unix socket path has at most ~100 bytes
        else:
            self.socket = Path(control_path)
        self.options = ["-o", f"ControlPath={self.socket}", *options]
        self._tried_at = -REOPEN_EVERY_S
        self._was_open = False  # opened once already (a later open is a reconnection, and logged)
        self._failed = ""  # what ssh said when the last open failed
        self._lock = threading.Lock()  # submit threads, the poller and the queue lister share the master

    @property
    def command_prefix(self) -> list[str]:
        """``ssh ... HOST --``: runs one command string through the master (never opens one itself)."""
        return ["ssh", *self.options, "-o", "ControlMaster=no", self.host, "--"]

    def argv(self, remote: Sequence[str]) -> list[str]:
        """The ssh argv that runs `remote` at the host through the master, quoted once (``shlex.join``)."""
        return [*self.command_prefix, shlex.join(remote)]

    def open(self) -> str:
        """Open the master (authenticating once); "" on success, else what ssh said."""
        self._tried_at = time.monotonic()
        self.socket.unlink(missing_ok=True)  # a master killed outright leaves its socket behind
        argv = ["ssh", *self.options, "-o", "ControlMaster=yes", "-o", f"ControlPersist={MASTER_PERSIST_S}",
                "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3", "-o", "BatchMode=yes",
                "-N", "-f", self.host]
        with tempfile.TemporaryFile() as said:  # the master keeps stderr open: not a pipe we would wait on
            try:
                proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=said,
                                      timeout=MASTER_OPEN_TIMEOUT_S, start_new_session=True, check=False)
            except subprocess.TimeoutExpired:
                return f"ssh {self.host} did not log in within {MASTER_OPEN_TIMEOUT_S:.0f} s"
            except OSError as exc:
                return f"cannot run ssh: {exc.strerror} (install the OpenSSH client)"
            said.seek(0)
            text = " ".join(said.read().decode(errors="replace").split())[-500:]
        return "" if proc.returncode == 0 else f"ssh {self.host} exited {proc.returncode}: {text}"

    def listening(self) -> bool:
        """Whether the master accepts connections on its socket.

        Checked before every command: ssh falls back to a connection of its own without a master.
        """
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(str(self.socket))
            except OSError:
                return False
        return True

    def reopen_if_due(self) -> str:
        """Open the master again unless it listens or was tried just now; "" if it is up."""
        if self.listening():
            return ""
        if not self.owned:
            return (f"your SSH master {self.socket} is not running; open it again with "
                    f"`ssh -M -S {self.socket} -fN {self.host}`")
        with self._lock:
            if self.listening():  # another thread opened it meanwhile
                return ""
            if time.monotonic() - self._tried_at < REOPEN_EVERY_S:
                said = self._failed or "the connection dropped"
                return f"{said} (trying again within {REOPEN_EVERY_S:g} s)"
            said = self._failed = self.open()
            if not said and self._was_open:
                log.warning("site %s: SSH connection to %s opened again", self.site, self.host)
            self._was_open = self._was_open or not said
            return said

    def close(self) -> None:
        """Ask the master to exit (not the user's own); the next command opens it again at once."""
        if not self.owned:
            return
        subprocess.run(["ssh", *self.options, "-O", "exit", self.host], stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=10, check=False)
        with self._lock:
            self._tried_at, self._was_open, self._failed = -REOPEN_EVERY_S, False, ""


_SHARED: dict[tuple[str, tuple[str, ...], str | None], Master] = {}
_SHARED_LOCK = threading.Lock()


def shared_master(label: str, host: str, options: Sequence[str], control_path: str | None = None) -> Master:
    """This process's master for `host` with these options (created once; `label` names it in messages)."""
    key = (host, tuple(options), control_path)
    with _SHARED_LOCK:
        master = _SHARED.get(key)
        if master is None:
            if not _SHARED:
                atexit.register(close_shared)
            master = _SHARED[key] = Master(label, host, options, control_path)
        return master


def close_shared() -> None:
    """Close this process's masters (not a user's own); a later command opens one again."""
    with _SHARED_LOCK:
        masters = list(_SHARED.values())
    for master in masters:
        if master.owned and master.listening():
            master.close()
