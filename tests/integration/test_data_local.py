"""The data layer on the local site: big values travel as proxies, through the real Ray scheduler."""

from __future__ import annotations

import itertools
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import cloudpickle
import pytest

import metasched as ms
from metasched.data.objects import proxy_for, put_blob

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_local")]
_names = itertools.count()


def _campaign(tmp_path: Path, **options: object) -> ms.Campaign:
    name = f"data-{os.getpid()}-{next(_names)}"
    return ms.Campaign(name, sites=[ms.LocalSite("local", cores=2)], journal=tmp_path / "c.db",
                       store=ms.FileStore(str(tmp_path / "store")), **options)  # type: ignore[arg-type]


def _objects(journal: Path) -> list[tuple[str, int, int, bool]]:
    with sqlite3.connect(journal) as db:
        return [(oid, size, origin, evicted is not None) for oid, size, origin, evicted in
                db.execute("SELECT object_id, size, origin, evicted FROM objects ORDER BY created")]


def test_big_results_travel_as_proxies_and_small_ones_inline(tmp_path: Path) -> None:
    from proxystore.proxy import is_resolved

    with _campaign(tmp_path) as c:
        @c.task()
        def make(n: int) -> bytes:
            return bytes(range(256)) * (n // 256)

        @c.task()
        def checksum(data: bytes) -> tuple[int, int]:
            return len(data), sum(data[:1024])

        big, small = make(2_000_000), make(512)
        assert checksum(big).result(timeout=60) == (1_999_872, sum(range(256)) * 4)
        assert checksum(small).result(timeout=60) == (512, sum(range(256)) * 2)
        value = big.result()
        assert not is_resolved(value)  # the driver fetches nothing until it uses the value
        assert len(value) == 1_999_872
        assert small.result() == bytes(range(256)) * 2
        big_id = big.task_id
    rows = _objects(tmp_path / "c.db")
    assert [(oid, origin, evicted) for oid, _, origin, evicted in rows] == [(big_id, True, False)]
    assert rows[0][1] > 1_999_872


def test_big_arguments_are_stored_once_and_evicted_after_use(tmp_path: Path) -> None:
    payload = os.urandom(400_000)
    with _campaign(tmp_path) as c:
        @c.task()
        def digest(data: bytes, label: str) -> tuple[str, int]:
            return label, len(data)

        assert digest(payload, "x").result(timeout=60) == ("x", 400_000)
    rows = _objects(tmp_path / "c.db")
    assert len(rows) == 1
    assert rows[0][0].endswith(".arg0")
    assert rows[0][3]
    assert [n for n in os.listdir(tmp_path / "store") if not n.startswith(".")] == []


def test_user_proxies_pass_through_unresolved(tmp_path: Path) -> None:
    from proxystore.connectors.file import FileConnector
    from proxystore.proxy import is_resolved
    from proxystore.store import Store

    store = Store(f"user-{os.getpid()}", FileConnector(str(tmp_path / "user")), register=True)
    try:
        proxy = store.proxy(b"z" * 5000, populate_target=False)
        with _campaign(tmp_path) as c:
            @c.task()
            def size(data: bytes) -> int:
                return len(data)

            assert size(proxy).result(timeout=60) == 5000
        assert not is_resolved(proxy)  # neither submission nor Ray made the driver fetch it
    finally:
        from proxystore.store import unregister_store

        unregister_store(store)


def test_intermediates_are_evicted_when_asked_and_outputs_stay(tmp_path: Path) -> None:
    with _campaign(tmp_path, evict_intermediates=True) as c:
        @c.task()
        def make(seed: int) -> bytes:
            return bytes([seed]) * 300_000

        @c.task()
        def combine(a: bytes, b: bytes) -> bytes:
            return a[:150_000] + b[:150_000]

        first, second = make(1), make(2)
        kept = c.task(keep=True)(make.fn)(3)
        out = combine(first, second)
        both = combine(out, kept)
        assert bytes(both.result(timeout=60))[:2] == b"\x01\x01"
        ids = {"first": first.task_id, "second": second.task_id, "kept": kept.task_id, "out": out.task_id,
               "both": both.task_id}
    evicted = {oid: ev for oid, _, _, ev in _objects(tmp_path / "c.db")}
    assert evicted[ids["first"]]
    assert evicted[ids["second"]]
    assert evicted[ids["out"]]
    assert not evicted[ids["kept"]]
    assert not evicted[ids["both"]]


def test_stored_objects_resolve_in_another_process(tmp_path: Path, redis_server: int,
                                                   proxystore_endpoint: tuple[str, str]) -> None:
    """Guards against ProxyStore 1.1.0's MultiConnector bug: metasched's proxies must resolve in a
    fresh process for every store kind it uses (MultiConnector's do not, so metasched avoids it)."""
    value = {"numbers": list(range(1000)), "blob": os.urandom(1000)}
    endpoint, home = proxystore_endpoint
    stores = (ms.FileStore(str(tmp_path / "f")), ms.RedisStore(redis_server),
              ms.EndpointStore(endpoint, proxystore_dir=home))
    for store in stores:
        proxy = proxy_for(put_blob(store, cloudpickle.dumps(value), object_id="x"))
        script = ("import pickle, sys; p = pickle.loads(sys.stdin.buffer.read()); "
                  "sys.stdout.buffer.write(pickle.dumps(dict(p)))")
        out = subprocess.run([sys.executable, "-c", script], input=cloudpickle.dumps(proxy),
                             capture_output=True, check=True, timeout=60)
        assert cloudpickle.loads(out.stdout) == value, store


def test_a_local_site_can_keep_its_data_in_a_proxystore_endpoint(
    tmp_path: Path, proxystore_endpoint: tuple[str, str]
) -> None:
    endpoint, home = proxystore_endpoint
    store = ms.EndpointStore(endpoint, proxystore_dir=home)
    name = f"data-ep-{os.getpid()}-{next(_names)}"
    sites = [ms.LocalSite("local", cores=2, store=store)]
    with ms.Campaign(name, sites=sites, journal=tmp_path / "c.db",
                     store=ms.FileStore(str(tmp_path / "driver"))) as c:
        @c.task()
        def make() -> bytes:
            return b"e" * 1_000_000

        @c.task()
        def size(data: bytes) -> int:
            return len(data)

        made = make()
        assert size(made).result(timeout=60) == 1_000_000
        assert bytes(made.result()) == b"e" * 1_000_000
    assert [store_id for (store_id,) in _rows(tmp_path / "c.db")] == [store.store_id]


def _rows(journal: Path) -> list[tuple[str]]:
    with sqlite3.connect(journal) as db:
        return list(db.execute("SELECT store_id FROM objects"))
