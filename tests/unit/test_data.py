"""The data layer's pure parts and its file-store copies (real files, real ProxyStore connectors)."""

from __future__ import annotations

import os
import pickle
import time
from pathlib import Path

import cloudpickle
import pytest

from metasched.data.objects import (
    DataRef,
    copy_object,
    decode_ref,
    encode_ref,
    evict,
    exists,
    proxy_for,
    put_blob,
)
from metasched.data.stores import EndpointStore, FileStore, RedisStore
from metasched.data.tracker import DataTracker
from metasched.data.transfers import ThreadTransferRunner, TransferManager
from metasched.errors import ConfigurationError
from metasched.placement import DefaultPolicy
from metasched.records import (
    Resources,
    SiteLoad,
    SiteName,
    TaskId,
    TaskKind,
    TaskRef,
    TaskSpec,
    replace_nested,
)


def _stores(tmp_path: Path) -> tuple[FileStore, FileStore]:
    return FileStore(str(tmp_path / "a")), FileStore(str(tmp_path / "b"))


def test_encoded_refs_are_never_mistaken_for_inline_results(tmp_path: Path) -> None:
    a, _ = _stores(tmp_path)
    ref = put_blob(a, cloudpickle.dumps(list(range(10))), object_id="t1")
    assert decode_ref(encode_ref(ref)) == ref
    for value in (b"MSREF", [1, 2], "MSREF1", None, ref.key):
        assert decode_ref(cloudpickle.dumps(value)) is None
    assert decode_ref(None) is None


def test_file_copy_is_verified_and_resolves_through_a_proxy(tmp_path: Path) -> None:
    a, b = _stores(tmp_path)
    value = os.urandom(3_000_000)
    ref = put_blob(a, cloudpickle.dumps(value), object_id="t1")
    result = copy_object(ref, b)
    assert result.error == ""
    assert result.ref is not None
    copy = result.ref
    assert copy.store == b
    assert copy.size == ref.size
    assert copy.digest == ref.digest
    assert copy.key != ref.key
    assert proxy_for(copy) == value  # resolves from b, with the store's own deserializer
    evict(copy)
    assert not exists(copy)
    assert exists(ref)


def test_a_corrupted_source_fails_the_copy_and_leaves_nothing_behind(tmp_path: Path) -> None:
    a, b = _stores(tmp_path)
    ref = put_blob(a, cloudpickle.dumps(os.urandom(200_000)), object_id="t1")
    path = Path(a.path) / ref.key.filename
    data = bytearray(path.read_bytes())
    data[1000] ^= 0xFF
    path.write_bytes(bytes(data))
    result = copy_object(ref, b)
    assert result.ref is None
    assert "DataIntegrityError" in result.error
    assert ref.digest in result.error
    assert os.listdir(b.path) == []  # the bad copy was removed, no '.ready' marker


def test_a_missing_source_is_reported_not_raised(tmp_path: Path) -> None:
    a, b = _stores(tmp_path)
    ref = put_blob(a, b"x" * 10, object_id="gone")
    evict(ref)
    result = copy_object(ref, b)
    assert result.ref is None
    assert "missing" in result.error
    assert "gone" in result.error


def test_replace_nested_leaves_proxies_unresolved(tmp_path: Path) -> None:
    from proxystore.proxy import is_resolved

    a, _ = _stores(tmp_path)
    proxy = proxy_for(put_blob(a, cloudpickle.dumps(b"payload"), object_id="t1"))
    out = replace_nested([proxy, {"k": (proxy, TaskRef(TaskId("t9")))}], TaskRef, lambda r: "dep")
    assert out[1]["k"][1] == "dep"
    assert out[0] is proxy
    assert not is_resolved(proxy)
    assert not is_resolved(pickle.loads(pickle.dumps(proxy)))


def test_store_specs_reject_bad_values() -> None:
    with pytest.raises(ConfigurationError, match="absolute"):
        FileStore("relative/dir")
    with pytest.raises(ConfigurationError, match="port"):
        RedisStore(0)
    assert RedisStore(6379).store_id == "redis:127.0.0.1:6379"
    with pytest.raises(ConfigurationError, match="not an endpoint UUID"):
        EndpointStore("my-endpoint")


def _ref(object_id: str, store: FileStore, size: int) -> DataRef:
    return DataRef(object_id=object_id, store=store, key=None, size=size, digest="-")


def test_tracker_finds_missing_inputs_and_learns_bandwidth(tmp_path: Path) -> None:
    a, b = _stores(tmp_path)
    tracker = DataTracker()
    tracker.add(_ref("x", a, 100_000_000), origin=True)
    tracker.add(_ref("y", b, 1_000))
    assert [r.object_id for r in tracker.missing(["x", "y"], b.store_id)] == ["x"]
    assert tracker.missing(["x", "y"], "nowhere")[0].object_id == "x"
    before = tracker.transfer_seconds(["x"], b.store_id)
    tracker.model.observe(a.store_id, b.store_id, 100_000_000, 10.0)  # a slow link: 10 MB/s
    after = tracker.transfer_seconds(["x"], b.store_id)
    assert before < 1.5
    assert 9.0 < after < 11.0
    tracker.add(_ref("x", b, 100_000_000))
    assert tracker.transfer_seconds(["x", "y"], b.store_id) == 0.0
    assert tracker.remove("x", a.store_id) is not None
    assert tracker.origin["x"] == a.store_id


def _load(name: str, *, inflight: int = 0, wait: float = 0.0) -> SiteLoad:
    return SiteLoad(site=SiteName(name), total_cores=16, max_cores_per_task=8, max_memory_mb=8000, gpus=0,
                    nodes=2, inflight=inflight, max_inflight=10, est_wait_s=wait)


def test_placement_goes_where_the_data_is_while_that_site_has_room() -> None:
    policy = DefaultPolicy()
    spec = TaskSpec(task_id=TaskId("t"), name="t", kind=TaskKind.FUNCTION, resources=Resources())
    costs = {SiteName("alpha"): 0.0, SiteName("beta"): 0.6}
    # alpha holds the data but is busier: the data still decides
    assert policy.choose(spec, [_load("alpha", inflight=8), _load("beta")], costs) == "alpha"
    # alpha full: the task goes to beta and its data moves
    assert policy.choose(spec, [_load("alpha", inflight=10), _load("beta")], costs) == "beta"
    # alpha's queue wait is longer than moving the data: beta
    assert policy.choose(spec, [_load("alpha", wait=30.0), _load("beta")], costs) == "beta"
    # no data: the freer site
    assert policy.choose(spec, [_load("alpha", inflight=8), _load("beta")], {}) == "beta"


def _drain(manager: TransferManager, deadline_s: float = 20.0) -> tuple[list[str], list[str]]:
    ready: list[str] = []
    failed: list[str] = []
    end = time.monotonic() + deadline_s
    while manager.in_flight and time.monotonic() < end:
        report = manager.poll()
        ready += report.ready
        failed += [f"{task}: {why}" for task, _, _, why in report.failed]
        time.sleep(0.01)
    return ready, failed


def test_transfers_are_shared_by_waiting_tasks_and_retried_before_failing(tmp_path: Path) -> None:
    a, b = _stores(tmp_path)
    good = put_blob(a, cloudpickle.dumps(os.urandom(500_000)), object_id="good")
    bad = put_blob(a, b"x" * 100, object_id="bad")
    evict(bad)
    manager = TransferManager(ThreadTransferRunner(), retries=2)
    assert manager.request("t1", [good], b) == 1
    manager.request("t2", [good], b)
    assert manager.in_flight == 1  # one copy for both
    manager.request("t3", [good, bad], b)
    ready, failed = _drain(manager)
    assert sorted(ready) == ["t1", "t2"]
    assert len(failed) == 1
    assert failed[0].startswith("t3: ")
    assert "tried 3 time(s)" in failed[0]
    assert len([n for n in os.listdir(b.path) if n.endswith(".ready")]) == 1
