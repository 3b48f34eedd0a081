"""A file store at a host reached over SSH (``SshFileStore``), and its objects from a process not there.

``SshFileConnector`` is a ProxyStore connector for an ``SshFileStore``: the same files (``<key>`` and the
``<key>.ready`` marker ProxyStore's FileConnector writes and reads at the host) reached through this
process's SSH master to the host (``metasched.ssh.shared_master``), so the driver resolves a remote result,
and the scheduler evicts one, without anything at the host but ``sh`` and coreutils.

Copies (``fetch_into``, ``Writer``): ssh itself reads or writes the file here, so the bytes never pass
through this process (host to host, they pass in chunks, never whole); a write becomes an object only once
the host reports the size the writer sent.

Remote commands are argv lists quoted once (``shlex.join``); the scripts are constants taking every value
as a positional argument.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import KW_ONLY, dataclass
from typing import IO, TYPE_CHECKING, Any, ClassVar

from metasched.errors import ConfigurationError
from metasched.ssh import SSH_FAILED, Master, shared_master

if TYPE_CHECKING:
    from proxystore.connectors.file import FileKey

CHUNK = 1 << 20
COMMAND_TIMEOUT_S = 60.0
TRANSFER_TIMEOUT_S = 3600.0  # one object's copy (a stalled connection is ended by ServerAlive before)
NOT_THERE = 44  # GET's exit status for an object that is not (or not yet completely) stored
# Values are positional arguments ("$1"...), never part of these texts.
GET = f'[ -e "$1.ready" ] || exit {NOT_THERE}; exec cat -- "$1"'
# Writes the stream under a temporary name and prints the size written; COMMIT then moves it into place
# and marks it complete, once the writer has compared the size with what it sent. (Not a hash at the host:
# SSH authenticates every byte in transit, and on the 2-core test machine a `tee | sha256sum` there took
# 1.05 s for 100 MB against 0.43 s for `cat`; docs/ssh.md.)
PUT = r"""mkdir -p -- "$1" || exit 3
cat > "$1/$2.part" || exit 4
wc -c < "$1/$2.part" || exit 5
"""
COMMIT = 'mv -f -- "$1.part" "$1" && : > "$1.ready"'
EXISTS = 'test -e "$1.ready"'
# $1 file, $2 object path, $3 expected size, $4 (optional) the record announcing the file.
ADOPT = r"""[ "$(wc -c < "$1")" = "$3" ] || { echo "$1 is not $3 bytes" >&2; exit 7; }
mkdir -p -- "$(dirname -- "$2")" && mv -f -- "$1" "$2" && : > "$2.ready" || exit 6
[ -z "$4" ] || mv -f -- "$4" "$4.adopted"
"""
REMOVE = 'rm -f -- "$@"'
EVICT = 'rm -f -- "$1" "$1.ready"'


@dataclass(frozen=True, slots=True)
class SshFileStore:
    """A file store in a directory of a host reached over SSH (an SSH site's default store).

    Processes at the host (the site's jobs) use the directory directly; any other process (the transfer
    worker, the driver reading a result) goes through one SSH master connection of its own to `host`
    (``metasched.data.remote``). Objects stay at the host until a consumer elsewhere needs them.

    Args:
        host: the login node: a name or a ``~/.ssh/config`` alias.
        path: the directory at the host (absolute; the same path on its login and compute nodes).
        ssh_options: more ssh options (e.g. ``("-F", "/path/ssh_config")``).
        control_path: the socket of an SSH master the user opened (used, never opened or closed).
        name: optional label.
    """

    kind: ClassVar[str] = "ssh-file"
    host: str
    path: str
    _: KW_ONLY
    ssh_options: tuple[str, ...] = ()
    control_path: str | None = None
    name: str = ""

    def __post_init__(self) -> None:
        if not self.host or self.host.startswith("-"):
            raise ConfigurationError(f"ssh file store: host {self.host!r} must be a host name or alias.")
        if not os.path.isabs(self.path):
            raise ConfigurationError(f"ssh file store path {self.path!r} must be absolute.")

    @property
    def store_id(self) -> str:
        """Identifies the store (the host as written: an alias is one host)."""
        return f"ssh:{self.host}:{os.path.normpath(self.path)}"


class RemoteStoreError(OSError):
    """A command at the store's host failed (or the connection to it did)."""


def _master(store: SshFileStore) -> Master:
    master = shared_master(f"store {store.store_id}", store.host, store.ssh_options, store.control_path)
    down = master.reopen_if_due()
    if down:
        raise RemoteStoreError(f"no SSH connection to {store.host} for {store.store_id}: {down}")
    return master


def _argv(store: SshFileStore, script: str, *args: str) -> list[str]:
    return _master(store).argv(["sh", "-c", script, "sh", *args])


def _run(store: SshFileStore, script: str, *args: str,
         stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(_argv(store, script, *args), input=stdin, capture_output=True,
                              timeout=COMMAND_TIMEOUT_S, check=False,
                              stdin=None if stdin is not None else subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise RemoteStoreError(f"{store.host} did not answer within {COMMAND_TIMEOUT_S:.0f} s "
                               f"({store.store_id})") from None


def _failed(store: SshFileStore, what: str, returncode: int | None, stderr: bytes) -> RemoteStoreError:
    said = " ".join(stderr.decode(errors="replace").split())[-300:]
    if returncode == SSH_FAILED:
        return RemoteStoreError(f"SSH to {store.host} failed while {what}: {said}")
    return RemoteStoreError(f"{what} at {store.host} failed (exit {returncode}): {said}")


def _check_read(store: SshFileStore, key: FileKey, returncode: int, stderr: bytes) -> None:
    """Raise unless GET read the object: FileNotFoundError if it is not stored, else what failed."""
    if returncode == NOT_THERE:
        raise FileNotFoundError(f"{key.filename} is not in {store.store_id}")
    if returncode != 0:
        raise _failed(store, f"reading {key.filename}", returncode, stderr)


def new_key() -> FileKey:
    """A fresh object key.

    ProxyStore's file connector is imported here, not with this module: it imports numpy, ~0.05 s of every
    worker process's start (every Ray worker imports this module with ``metasched.worker``).
    """
    from proxystore.connectors.file import FileKey

    return FileKey(filename=str(uuid.uuid4()))


def object_path(store: SshFileStore, key: FileKey) -> str:
    """The object's file at the host."""
    return f"{store.path.rstrip('/')}/{key.filename}"


def fetch_into(store: SshFileStore, key: FileKey, file: IO[bytes]) -> None:
    """Write the object into `file` (ssh writes it: the bytes never pass through this process)."""
    with tempfile.TemporaryFile() as stderr:
        try:
            proc = subprocess.run(_argv(store, GET, object_path(store, key)), stdin=subprocess.DEVNULL,
                                  stdout=file, stderr=stderr, timeout=TRANSFER_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            raise RemoteStoreError(f"reading {key.filename} from {store.host} took over "
                                   f"{TRANSFER_TIMEOUT_S:.0f} s") from None
        stderr.seek(0)
        _check_read(store, key, proc.returncode, stderr.read())


@contextlib.contextmanager
def reader(store: SshFileStore, key: FileKey) -> Iterator[IO[bytes]]:
    """The object's bytes, streamed from the host (FileNotFoundError if it is not stored there)."""
    with tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen(_argv(store, GET, object_path(store, key)), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=stderr)
        assert proc.stdout is not None  # noqa: S101  (stdout=PIPE)
        try:
            yield proc.stdout
            proc.stdout.read()  # drain what the caller left, so cat ends
        finally:
            proc.stdout.close()
            returncode = proc.wait()
        stderr.seek(0)
        _check_read(store, key, returncode, stderr.read())


class Writer:
    """A new object at the host: from `source` (a file ssh reads itself) or in chunks (``write``).

    ``finish`` completes it if the host stored what was sent.
    """

    def __init__(self, store: SshFileStore, source: IO[bytes] | None = None) -> None:
        self.store = store
        self.key = new_key()
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115  (closed by finish or abort)
        self._proc = subprocess.Popen(_argv(store, PUT, store.path, self.key.filename),
                                      stdin=subprocess.PIPE if source is None else source,
                                      stdout=subprocess.PIPE, stderr=self._stderr)
        self.size = 0

    def write(self, chunk: bytes | memoryview) -> None:
        """Send the next chunk."""
        assert self._proc.stdin is not None  # noqa: S101  (stdin=PIPE)
        try:
            self._proc.stdin.write(chunk)
        except BrokenPipeError:
            raise self._failure("writing") from None
        self.size += len(chunk)

    def finish(self, size: int | None = None) -> FileKey:
        """Complete the object if the host stored as many bytes as were sent, else raise.

        Sent: the chunks written, or from a `source`, `size`. Until it completes, the object is only
        ``<key>.part`` at the host, which no reader takes for an object.
        """
        said = self._close(timeout_s=TRANSFER_TIMEOUT_S).strip()
        if self._proc.returncode != 0:
            raise self._failure("writing")
        sent = self.size if size is None else size
        if said != str(sent):
            raise RemoteStoreError(f"{self.key.filename} at {self.store.host} has {said or '?'} bytes, "
                                   f"{sent} were sent")
        path = object_path(self.store, self.key)
        proc = _run(self.store, COMMIT, path)
        if proc.returncode != 0:
            raise _failed(self.store, f"completing {self.key.filename}", proc.returncode, proc.stderr)
        self._stderr.close()
        return self.key

    def abort(self) -> None:
        """Remove whatever reached the host (the write is let finish first, so nothing moves it later)."""
        self._close()
        self._stderr.close()
        with contextlib.suppress(OSError):
            _run(self.store, EVICT, object_path(self.store, self.key) + ".part")

    def _close(self, timeout_s: float = COMMAND_TIMEOUT_S) -> str:
        """End the stream and wait for the host's answer (what PUT printed)."""
        if self._proc.returncode is not None:
            return ""
        try:  # closes stdin (a broken pipe is ignored) and reads stdout
            said, _ = self._proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            said, _ = self._proc.communicate()
        return str(said.decode(errors="replace"))

    def _failure(self, what: str) -> RemoteStoreError:
        self._proc.wait()
        self._stderr.seek(0)
        return _failed(self.store, f"{what} {self.key.filename}", self._proc.returncode, self._stderr.read())


def adopt(store: SshFileStore, path: str, size: int, record: str | None = None) -> FileKey:
    """Make `path`, a file at the host, an object of `store` (a rename there; see objects.adopt_file)."""
    key = new_key()
    proc = _run(store, ADOPT, path, object_path(store, key), str(size), record or "")
    if proc.returncode != 0:
        raise _failed(store, f"adopting {path}", proc.returncode, proc.stderr)
    return key


def remove(store: SshFileStore, paths: Sequence[str]) -> None:
    """Remove files at the store's host (no error for those already gone)."""
    if paths:
        proc = _run(store, REMOVE, *paths)
        if proc.returncode != 0:
            raise _failed(store, "removing files", proc.returncode, proc.stderr)


class SshFileConnector:
    """ProxyStore connector for an ``SshFileStore`` from a process that is not at its host."""

    def __init__(self, store: SshFileStore) -> None:
        self.store = store

    def close(self) -> None:
        """Nothing to close: the master is this process's, shared, and exits on its own."""

    def config(self) -> dict[str, Any]:
        """What rebuilds this connector in another process."""
        return {"host": self.store.host, "path": self.store.path, "ssh_options": self.store.ssh_options,
                "control_path": self.store.control_path}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> SshFileConnector:
        """The connector `config` describes."""
        return cls(SshFileStore(config["host"], config["path"], ssh_options=tuple(config["ssh_options"]),
                                control_path=config["control_path"]))

    def new_key(self, obj: bytes | None = None) -> FileKey:
        """A fresh key."""
        return new_key()

    def get(self, key: FileKey) -> bytes | None:
        """The object's bytes, or None if it is not stored."""
        proc = _run(self.store, GET, object_path(self.store, key))
        if proc.returncode == NOT_THERE:
            return None
        if proc.returncode != 0:
            raise _failed(self.store, f"reading {key.filename}", proc.returncode, proc.stderr)
        return proc.stdout

    def get_batch(self, keys: Sequence[FileKey]) -> list[bytes | None]:
        """Each key's object (one command each)."""
        return [self.get(key) for key in keys]

    def exists(self, key: FileKey) -> bool:
        """Whether the object is stored completely."""
        proc = _run(self.store, EXISTS, object_path(self.store, key))
        if proc.returncode == SSH_FAILED:
            raise _failed(self.store, f"looking for {key.filename}", proc.returncode, proc.stderr)
        return proc.returncode == 0

    def put(self, obj: bytes | bytearray | memoryview) -> FileKey:
        """Store `obj` (verified, see ``Writer``)."""
        writer = Writer(self.store)
        try:
            for start in range(0, len(obj), CHUNK):
                writer.write(memoryview(obj)[start:start + CHUNK])
            return writer.finish()
        except BaseException:
            writer.abort()
            raise

    def put_batch(self, objs: Sequence[bytes]) -> list[FileKey]:
        """Store each object."""
        return [self.put(obj) for obj in objs]

    def evict(self, key: FileKey) -> None:
        """Remove the object (no error if it is gone)."""
        proc = _run(self.store, EVICT, object_path(self.store, key))
        if proc.returncode != 0:
            raise _failed(self.store, f"evicting {key.filename}", proc.returncode, proc.stderr)
