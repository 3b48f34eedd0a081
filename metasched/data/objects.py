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
from dataclasses import dataclass, field, replace
from typing import Any

import xxhash

from metasched.data.serializers import loads
from metasched.data.stores import FileStore, SshFileStore, StoreSpec, is_here, open_store, over_ssh

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


def adopt_file(path: str, store: StoreSpec, *, object_id: str, size: int, digest: str,
               record: str | None = None) -> DataRef:
    """Make a file that is already on the store's filesystem an object of a file store (a rename).

    `path` is where the store is (at its host, for an SSH file store: the rename runs there). The file's
    size is checked against `size`; its hash was computed by whoever wrote it. `record`, the file that
    announced it, is renamed ``<record>.adopted`` with it, so a file is adopted once.
    """
    if over_ssh(store):
        from metasched.data import remote

        key = remote.adopt(store, path, size, record)
        return DataRef(object_id=object_id, store=store, key=key, size=size, digest=digest)
    if not is_here(store):
        raise TypeError(f"only file stores can adopt files; {store.store_id} is not one")
    actual = os.stat(path).st_size
    if actual != size:
        raise DataIntegrityError(f"{path} has {actual} bytes, expected {size}")
    connector = open_store(store).connector
    key = connector.new_key()
    os.replace(path, os.path.join(connector.store_dir, key.filename))
    _mark_ready(os.path.join(connector.store_dir, key.filename))
    if record is not None:
        os.replace(record, f"{record}.adopted")
    return DataRef(object_id=object_id, store=store, key=key, size=size, digest=digest)


def discard_files(store: StoreSpec, paths: list[str]) -> None:
    """Remove files beside the store's objects, where the store is (e.g. restart points superseded)."""
    if over_ssh(store):
        from metasched.data import remote

        remote.remove(store, paths)
        return
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


def local_path(ref: DataRef) -> str:
    """The file holding a file-store replica, where the store is (an SSH file store: at its host).

    To read it in place, e.g. a checkpoint archive.
    """
    if not isinstance(ref.store, FileStore | SshFileStore):
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

    File to file streams in the kernel (no copy of the object in this process); to or from a host over
    SSH, ssh reads or writes the file itself; other pairs read the object here. Runs in a Ray worker
    process, never in the scheduler's. Never raises: a failure comes back as ``CopyResult.error``.
    """
    start = time.perf_counter()
    try:
        if is_here(ref.store) and is_here(target):  # both directories here
            new = _copy_file_to_file(ref, target)
        elif over_ssh(target) and over_ssh(ref.store):
            new = _copy_host_to_host(ref, ref.store, target)
        elif over_ssh(target) and is_here(ref.store):
            new = _copy_to_host(ref, target)
        elif over_ssh(ref.store) and is_here(target):
            new = _copy_from_host(ref, ref.store, target)
        else:
            new = _copy_through_memory(ref, target)
    except Exception as exc:  # reported to the scheduler, which retries or fails the consumer
        return CopyResult(ref=None, error=f"{type(exc).__name__}: {exc}", seconds=time.perf_counter() - start)
    return CopyResult(ref=new, seconds=time.perf_counter() - start)


def _copy_file_to_file(ref: DataRef, target: StoreSpec) -> DataRef:
    source = _file_of(ref)
    sink = _FileSink(target)
    try:
        sink.file.close()
        shutil.copyfile(source, sink.path)
        size, digest = _file_digests(sink.path)
        _verify(ref, size, digest, sink.path)
        return replace(ref, store=target, key=sink.finish())
    except BaseException:
        sink.abort()
        raise


def _copy_to_host(ref: DataRef, target: SshFileStore) -> DataRef:
    """To a host over SSH: ssh reads the file while it is hashed here (it must hash to the object's).

    SSH authenticates every byte in transit, and the host reports the size it wrote (``remote.Writer``).
    """
    from metasched.data import remote

    with open(_file_of(ref), "rb") as source:
        writer = remote.Writer(target, source=source)
        try:
            size, digest = _file_digests(source.name)
            _verify(ref, size, digest, ref.store.store_id)
            return replace(ref, store=target, key=writer.finish(size))
        except BaseException:
            writer.abort()
            raise


def _copy_from_host(ref: DataRef, source: SshFileStore, target: StoreSpec) -> DataRef:
    """From a host over SSH: ssh writes the file here, then its hash is checked.

    `source` is the replica's store (``ref.store``, known to be one over SSH).
    """
    from metasched.data import remote

    sink = _FileSink(target)
    try:
        remote.fetch_into(source, ref.key, sink.file)
        sink.file.close()
        size, digest = _file_digests(sink.path)
        _verify(ref, size, digest, target.store_id)
        return replace(ref, store=target, key=sink.finish())
    except BaseException:
        sink.abort()
        raise


def _copy_host_to_host(ref: DataRef, source: SshFileStore, target: SshFileStore) -> DataRef:
    """From a host over SSH to another: chunks pass through this process, hashed on the way.

    `source` is the replica's store (``ref.store``, known to be one over SSH).
    """
    from metasched.data import remote

    writer = remote.Writer(target)
    try:
        with remote.reader(source, ref.key) as stream:
            hasher, size = xxhash.xxh3_128(), 0
            while chunk := stream.read(remote.CHUNK):
                hasher.update(chunk)
                size += len(chunk)
                writer.write(chunk)
        _verify(ref, size, hasher.hexdigest(), ref.store.store_id)
        return replace(ref, store=target, key=writer.finish())
    except BaseException:
        writer.abort()
        raise


def _file_of(ref: DataRef) -> str:
    """The complete file of a replica whose store's directory is here."""
    path = os.path.join(ref.store.path, ref.key.filename)  # type: ignore[union-attr]
    if not os.path.exists(path + ".ready"):
        raise FileNotFoundError(f"{ref.describe()} is missing from its store ({path})")
    return path


def _file_digests(path: str) -> tuple[int, str]:
    """A file's size and hash, read through a memory map."""
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size == 0:
            return 0, digest_of(b"")
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as view:
            return size, digest_of(view)


class _FileSink:
    """A new object of a store whose directory is here: a file, complete once ``finish`` marks it."""

    def __init__(self, store: StoreSpec) -> None:
        connector = open_store(store).connector
        self.key = connector.new_key()
        self.path = os.path.join(connector.store_dir, self.key.filename)
        self.file = open(self.path, "wb")  # noqa: SIM115  (closed by whoever writes it, or abort)

    def finish(self) -> Any:
        self.file.close()
        _mark_ready(self.path)
        return self.key

    def abort(self) -> None:
        self.file.close()
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
    """The directories of the file stores an attempt writes to or reads from (to mount in containers).

    Those of SSH file stores too: at their host (the site the attempt runs at), they are directories.
    """
    if data is None:
        return []
    stores = [data.store, *(ref.store for ref in data.inputs.values())]
    return list(dict.fromkeys(s.path for s in stores if isinstance(s, FileStore | SshFileStore)))
