"""Stored objects: put, proxy, copy between stores (verified), evict.

A ``DataRef`` names one replica of an object: which store, the connector's key, the size and an xxh3-128
hash of the bytes. It is small and picklable; it travels through the scheduler, the journal and task
payloads instead of the data. Results stored this way are journaled as ``encode_ref(ref)``, which no
serialized value can be mistaken for (pickles start with byte 0x80, other serializers' bytes with a NUL).
"""

from __future__ import annotations

import contextlib
import mmap
import os
import pickle
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import IO, Any

import xxhash

from metasched.data.serializers import loads
from metasched.data.stores import FileStore, SshFileStore, StoreSpec, is_here, open_store

_MAGIC = b"MSREF1"


@dataclass(frozen=True, slots=True, kw_only=True)
class DataRef:
    """One replica of a stored object."""

    object_id: str
    store: StoreSpec
    key: Any
    size: int
    digest: str

    def describe(self) -> str:
        """For messages: object, size and store."""
        return f"object {self.object_id} ({self.size / 1e6:.1f} MB in {self.store.store_id})"


@dataclass(frozen=True, slots=True, kw_only=True)
class DataContext:
    """What a worker needs to handle data: where results go, from what size, and its inputs' replicas."""

    store: StoreSpec
    threshold: int
    inputs: dict[str, DataRef] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class CopyResult:
    """How a transfer went: the new replica, or why it failed; and how long it took."""

    ref: DataRef | None
    error: str = ""
    seconds: float = 0.0


class DataIntegrityError(Exception):
    """The bytes that arrived are not the bytes that were sent."""


def encode_ref(ref: DataRef) -> bytes:
    """The journaled form of a stored result."""
    return _MAGIC + pickle.dumps(ref, protocol=pickle.HIGHEST_PROTOCOL)


def decode_ref(blob: bytes | None) -> DataRef | None:
    """The DataRef in `blob`, or None if `blob` is an inline pickled value."""
    if blob is None or not blob.startswith(_MAGIC):
        return None
    ref: DataRef = pickle.loads(blob[len(_MAGIC):])
    return ref


def digest_of(data: bytes | memoryview | mmap.mmap) -> str:
    """The integrity hash metasched records (xxh3-128: fast enough to check every transfer)."""
    return xxhash.xxh3_128_hexdigest(data)


def put_blob(store: StoreSpec, blob: bytes, *, object_id: str) -> DataRef:
    """Store already-pickled bytes; returns the replica's ref."""
    key = open_store(store).connector.put(blob)
    return DataRef(object_id=object_id, store=store, key=key, size=len(blob), digest=digest_of(blob))


def adopt_file(path: str, store: StoreSpec, *, object_id: str, size: int, digest: str) -> DataRef:
    """Make a file that is already on the store's filesystem an object of a file store (a rename).

    The file's size is checked against `size`; its hash was computed by whoever wrote it.
    """
    if not isinstance(store, FileStore):
        raise TypeError(f"only file stores can adopt files; {store.store_id} is not one")
    actual = os.stat(path).st_size
    if actual != size:
        raise DataIntegrityError(f"{path} has {actual} bytes, expected {size}")
    connector = open_store(store).connector
    key = connector.new_key()
    os.replace(path, os.path.join(connector.store_dir, key.filename))
    _mark_ready(os.path.join(connector.store_dir, key.filename))
    return DataRef(object_id=object_id, store=store, key=key, size=size, digest=digest)


def local_path(ref: DataRef) -> str:
    """The file holding a file-store replica (to read it in place, e.g. a checkpoint archive)."""
    if not isinstance(ref.store, FileStore):
        raise TypeError(f"{ref.describe()} is not in a file store")
    return os.path.join(ref.store.path, ref.key.filename)


def read_value(ref: DataRef) -> Any:
    """The object itself (unpickled here), read straight from its store."""
    data = open_store(ref.store).connector.get(ref.key)
    if data is None:
        raise FileNotFoundError(f"{ref.describe()} is missing from its store")
    return loads(data)


def proxy_for(ref: DataRef) -> Any:
    """A ProxyStore proxy that resolves to the object when first used (not before)."""
    return open_store(ref.store).proxy_from_key(ref.key)


def exists(ref: DataRef) -> bool:
    """Whether the replica is still in its store."""
    return bool(open_store(ref.store).connector.exists(ref.key))


def evict(ref: DataRef) -> None:
    """Remove the replica from its store (no error if it is already gone)."""
    open_store(ref.store).connector.evict(ref.key)


def copy_object(ref: DataRef, target: StoreSpec) -> CopyResult:
    """Copy a replica into `target`, verify size and hash of what arrived, return the new replica.

    File to file streams in the kernel (no copy of the object in this process); other pairs read the
    object here. Runs in a Ray worker process, never in the scheduler's. Never raises: a failure comes
    back as ``CopyResult.error``.
    """
    start = time.perf_counter()
    try:
        if isinstance(ref.store, FileStore) and isinstance(target, FileStore):
            new = _copy_file_to_file(ref, target)
        elif _streams(ref.store) and _streams(target):
            new = _copy_streamed(ref, target)
        else:
            new = _copy_through_memory(ref, target)
    except Exception as exc:  # reported to the scheduler, which retries or fails the consumer
        return CopyResult(ref=None, error=f"{type(exc).__name__}: {exc}", seconds=time.perf_counter() - start)
    return CopyResult(ref=new, seconds=time.perf_counter() - start)


def _copy_file_to_file(ref: DataRef, target: FileStore) -> DataRef:
    source_store, target_store = open_store(ref.store), open_store(target)
    source = os.path.join(source_store.connector.store_dir, ref.key.filename)
    if not source_store.connector.exists(ref.key):
        raise FileNotFoundError(f"{ref.describe()} is missing from its store ({source})")
    key = target_store.connector.new_key()
    destination = os.path.join(target_store.connector.store_dir, key.filename)
    try:
        shutil.copyfile(source, destination)
        with open(destination, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size == 0:
                digest = digest_of(b"")
            else:
                with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as view:
                    digest = digest_of(view)
        _verify(ref, size, digest, destination)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(destination)
        raise
    _mark_ready(destination)
    return replace(ref, store=target, key=key)


def _streams(store: StoreSpec) -> bool:
    return isinstance(store, FileStore | SshFileStore)


def _copy_streamed(ref: DataRef, target: StoreSpec) -> DataRef:
    """A copy from or to a host over SSH, in chunks.

    The hash of what was read is checked against the object's, and the target reports what it stored
    (``remote.Writer``), so neither end is taken on trust.
    """
    from metasched.data import remote

    sink: remote.Writer | _FileSink
    if isinstance(target, SshFileStore) and not is_here(target):
        sink = remote.Writer(target)
    else:
        sink = _FileSink(target)
    try:
        with _reader(ref) as stream:
            hasher, size = xxhash.xxh3_128(), 0
            while chunk := stream.read(remote.CHUNK):
                hasher.update(chunk)
                size += len(chunk)
                sink.write(chunk)
        _verify(ref, size, hasher.hexdigest(), ref.store.store_id)
        key = sink.finish()
    except BaseException:
        sink.abort()
        raise
    return replace(ref, store=target, key=key)


@contextlib.contextmanager
def _reader(ref: DataRef) -> Iterator[IO[bytes]]:
    from metasched.data import remote

    if isinstance(ref.store, SshFileStore) and not is_here(ref.store):
        with remote.reader(ref.store, ref.key) as stream:
            yield stream
        return
    path = os.path.join(ref.store.path, ref.key.filename)  # type: ignore[union-attr]
    if not os.path.exists(path + ".ready"):
        raise FileNotFoundError(f"{ref.describe()} is missing from its store ({path})")
    with open(path, "rb") as stream:
        yield stream


class _FileSink:
    """A new object of a store whose directory is here, written in chunks."""

    def __init__(self, store: StoreSpec) -> None:
        connector = open_store(store).connector
        self.key = connector.new_key()
        self.path = os.path.join(connector.store_dir, self.key.filename)
        self._file = open(self.path, "wb")  # noqa: SIM115  (closed by finish or abort)

    def write(self, chunk: bytes) -> None:
        self._file.write(chunk)

    def finish(self) -> Any:
        self._file.close()
        _mark_ready(self.path)
        return self.key

    def abort(self) -> None:
        self._file.close()
        with contextlib.suppress(OSError):
            os.remove(self.path)


def _copy_through_memory(ref: DataRef, target: StoreSpec) -> DataRef:
    data = open_store(ref.store).connector.get(ref.key)
    if data is None:
        raise FileNotFoundError(f"{ref.describe()} is missing from its store")
    _verify(ref, len(data), digest_of(data), ref.store.store_id)
    connector = open_store(target).connector
    key = connector.put(data)
    arrived = connector.get(key)
    if arrived is None:
        raise DataIntegrityError(
            f"object {ref.object_id} vanished from {target.store_id} right after the copy")
    try:
        _verify(ref, len(arrived), digest_of(arrived), target.store_id)
    except DataIntegrityError:
        connector.evict(key)
        raise
    return replace(ref, store=target, key=key)


def _mark_ready(path: str) -> None:
    """ProxyStore's FileConnector marker that the object in `path` is complete."""
    with open(path + ".ready", "wb"):
        pass


def _verify(ref: DataRef, size: int, digest: str, where: str) -> None:
    if size != ref.size or digest != ref.digest:
        raise DataIntegrityError(
            f"object {ref.object_id} at {where} has {size} bytes, hash {digest}; expected {ref.size} bytes, "
            f"hash {ref.digest}")


def store_paths(data: DataContext | None) -> list[str]:
    """The directories of the file stores an attempt writes to or reads from (to mount in containers)."""
    if data is None:
        return []
    stores = [data.store, *(ref.store for ref in data.inputs.values())]
    return list(dict.fromkeys(s.path for s in stores if isinstance(s, FileStore)))
