"""The serializers of Python tasks' values: round trips, self-describing bytes, proxies left unresolved,
and errors that name the task, the argument and the serializer."""

from __future__ import annotations

import collections
import dataclasses
import threading
from pathlib import Path

import pytest

from metasched.data import DataSettings
from metasched.data.driver import load_result, pack_arguments
from metasched.data.objects import decode_ref, proxy_for, put_blob
from metasched.data.serializers import (
    BUILT_IN_SERIALIZERS,
    dumps,
    loads,
    serializer_named,
    serializer_of,
)
from metasched.data.stores import FileStore
from metasched.errors import ConfigurationError
from metasched.options import check_options
from metasched.records import Resources, TaskId, TaskKind, TaskRef, TaskSpec
from metasched.retry import retried

SERIALIZERS = sorted(BUILT_IN_SERIALIZERS)
Point = collections.namedtuple("Point", "x y")


@pytest.mark.parametrize("name", SERIALIZERS)
def test_every_serializer_reads_back_what_it_wrote_and_says_so(name: str) -> None:
    value = {"points": [Point(1, 2.5), Point(-3, 0.0)], "blob": b"\x00\x80" * 10,
             "ref": TaskRef(TaskId("t1"))}
    blob = dumps(value, name)
    assert serializer_of(blob) == name
    assert loads(blob) == value
    assert load_result(blob) == value  # the driver's reader too
    assert decode_ref(blob) is None  # never mistaken for a stored result's ref


def test_the_default_writes_a_plain_pickle_stream_as_every_journal_so_far_holds() -> None:
    blob = dumps([1, 2])
    assert blob.startswith(b"\x80")
    assert serializer_of(blob) == "cloudpickle"
    framed = dumps([1, 2], "pickle")
    assert framed.startswith(b"\x00metasched-serializer:pickle\n")
    assert loads(framed) == [1, 2]


def test_stdlib_pickle_refuses_what_only_travels_by_value_and_dill_and_cloudpickle_take_it() -> None:
    square = lambda x: x * x  # noqa: E731
    with pytest.raises(Exception, match="lambda"):
        dumps(square, "pickle")
    for name in ("cloudpickle", "dill"):
        assert loads(dumps(square, name))(7) == 49


@pytest.mark.parametrize("name", SERIALIZERS)
def test_no_serializer_resolves_a_proxy_it_pickles(name: str, tmp_path: Path) -> None:
    from proxystore.proxy import is_resolved

    store = FileStore(str(tmp_path / "store"))
    proxy = proxy_for(put_blob(store, dumps(list(range(5)), name), object_id="t1"))
    copy = loads(dumps({"arg": proxy}, name))["arg"]
    assert not is_resolved(proxy)
    assert not is_resolved(copy)
    assert list(copy) == [0, 1, 2, 3, 4]  # resolved through the store's deserializer, framed bytes and all


def test_an_unserializable_argument_is_named_with_its_task_and_serializer(tmp_path: Path) -> None:
    settings = DataSettings(home=FileStore(str(tmp_path / "s")), threshold=1_000_000)
    lock = threading.Lock()
    with pytest.raises(ConfigurationError) as err:
        pack_arguments((1, lock), {}, task_name="simulate", task_id="t1", settings=settings)
    said = str(err.value)
    assert "task 'simulate'" in said
    assert "argument 2 (a lock)" in said
    assert "'cloudpickle'" in said
    with pytest.raises(ConfigurationError, match=r"keyword argument 'f' \(a function\).*'pickle'"):
        pack_arguments((), {"f": lambda: 1}, task_name="t", task_id="t2", settings=settings,
                       serializer="pickle")


def test_big_arguments_are_stored_with_the_tasks_serializer(tmp_path: Path) -> None:
    settings = DataSettings(home=FileStore(str(tmp_path / "s")), threshold=1000)
    payload, inputs = pack_arguments((b"x" * 5000, 3), {}, task_name="t", task_id="t1", settings=settings,
                                     serializer="dill")
    assert serializer_of(payload) == "dill"
    assert len(inputs) == 1
    args, _ = loads(payload)
    assert bytes(proxy_for(args[0])) == b"x" * 5000
    assert args[1] == 3


def test_a_retried_copy_keeps_its_serializer() -> None:
    payload = dumps(((TaskRef(TaskId("a")), 2), {}), "dill")
    spec = TaskSpec(task_id=TaskId("b"), name="b", kind=TaskKind.FUNCTION, resources=Resources(),
                    depends_on=(TaskId("a"),), function_digest="d", payload=payload)
    copy = retried(spec, {TaskId("a"): TaskId("a2"), TaskId("b"): TaskId("b2")})
    assert serializer_of(copy.payload) == "dill"
    assert loads(copy.payload) == ((TaskRef(TaskId("a2")), 2), {})


def test_an_unknown_serializer_is_refused_where_it_is_given() -> None:
    with pytest.raises(ConfigurationError, match=r"campaign 'c' defaults: unknown serializer 'json'; known: "
                                                 r"'cloudpickle', 'pickle', 'dill'"):
        check_options({"serializer": "json"}, "campaign 'c' defaults")
    check_options({"serializer": "dill"}, "task 't'")
    assert serializer_named("dill") is serializer_named("dill")  # made once per process


def test_a_result_the_serializer_cannot_take_fails_its_task_with_its_error() -> None:
    import cloudpickle

    from metasched.outcomes import Failed, Succeeded
    from metasched.worker import run_function

    spec = TaskSpec(task_id=TaskId("g"), name="gen", kind=TaskKind.FUNCTION, resources=Resources(),
                    function_digest="gen", payload=dumps(((3,), {}), "dill"))
    outcome = run_function(spec, cloudpickle.dumps(lambda n: (i for i in range(n))), {})
    assert isinstance(outcome, Failed)
    assert "cannot pickle 'generator' object" in outcome.failure.message
    listing = dataclasses.replace(spec, function_digest="listing")  # a worker caches functions by digest
    fine = run_function(listing, cloudpickle.dumps(lambda n: list(range(n))), {})
    assert isinstance(fine, Succeeded)
    assert serializer_of(fine.result) == "dill"
    assert loads(fine.result) == [0, 1, 2]
