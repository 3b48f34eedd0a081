"""The journal's compact encodings (schema 3): states, specs, attempt ids, resource use."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from metasched.data.objects import DataRef
from metasched.data.stores import FileStore
from metasched.journal_codec import (
    SPEC_FIELDS,
    STATE_CODES,
    decode_spec,
    encode_spec,
    usage_columns,
    usage_of,
)
from metasched.records import (
    CheckpointKind,
    CommandSpec,
    Image,
    Resources,
    SiteName,
    TaskId,
    TaskKind,
    TaskSpec,
    Usage,
    split_attempt_id,
)
from metasched.scheduler.states import AttemptState, TaskState


def test_every_state_has_one_stored_code() -> None:
    names = {s.value for s in TaskState} | {s.value for s in AttemptState}
    assert names <= set(STATE_CODES)
    assert len(set(STATE_CODES.values())) == len(STATE_CODES)


def test_every_spec_field_is_stored() -> None:
    # a field added to TaskSpec but not to SPEC_FIELDS would be lost on every resume
    fields = [f.name for f in dataclasses.fields(TaskSpec)]
    assert fields[:2] == ["task_id", "name"]
    assert sorted(fields[2:]) == sorted(SPEC_FIELDS)


def test_a_plain_function_task_encodes_small_and_back() -> None:
    spec = TaskSpec(task_id=TaskId("94a168a15db84f45"), name="noop", kind=TaskKind.FUNCTION,
                    resources=Resources(), function_digest="795d8b563d73472af53d", payload=b"x" * 20)
    blob = encode_spec(spec)
    assert decode_spec("94a168a15db84f45", "noop", blob) == spec
    assert len(blob) < 60  # schema 2 pickled the same spec in 199 bytes


def test_every_field_set_round_trips(tmp_path: Path) -> None:
    ref = DataRef(object_id="o1", store=FileStore(str(tmp_path)), key="k", size=3, digest="d")
    spec = TaskSpec(
        task_id=TaskId("t1"), name="all", kind=TaskKind.COMMAND,
        resources=Resources(cores=4, memory_mb=512, gpus=1, nodes=2, walltime_s=60.0), retries=2,
        sites=(SiteName("alpha"),), tags=(("k", "v"),), depends_on=(TaskId("t0"),),
        function_digest="not hex!", payload=b"p",
        command=CommandSpec(argv=("sh", "-c", "echo $HOME; rm -rf /"), env=(("A", "b"),), cwd="/tmp"),
        inputs=(ref,), keep=True, checkpoint=CheckpointKind.CRIU, checkpoint_every_s=30.0,
        container=Image("app:1", docker="app:1"))
    assert decode_spec("t1", "all", encode_spec(spec)) == spec


def test_decoded_specs_share_their_resources() -> None:
    a, b = (decode_spec(f"t{i}", "n", encode_spec(TaskSpec(
        task_id=TaskId(f"t{i}"), name="n", kind=TaskKind.FUNCTION, resources=Resources(cores=3))))
        for i in range(2))
    assert a.resources is b.resources  # a million resumed tasks hold one record, not a million


def test_attempt_ids_split_into_task_and_number() -> None:
    assert split_attempt_id("abc.def.12") == ("abc.def", 12)
    for bad in ("abc", "abc.", ".3", "abc.x"):
        with pytest.raises(ValueError, match="not <task id>.<number>"):
            split_attempt_id(bad)


def test_usage_is_kept_to_the_microsecond() -> None:
    used = Usage(wall_s=0.000062, cpu_s=12.5, max_rss_mb=88.6)
    back = usage_of(*usage_columns(used))
    assert back is not None
    assert back.wall_s == pytest.approx(0.000062, abs=1e-6)
    assert back.cpu_s == pytest.approx(12.5)
    assert back.max_rss_mb == pytest.approx(88.6, abs=1 / 1024)
    assert usage_of(*usage_columns(None)) is None
    no_memory = usage_of(*usage_columns(Usage(wall_s=1, cpu_s=1, max_rss_mb=None)))
    assert no_memory is not None
    assert no_memory.max_rss_mb is None
