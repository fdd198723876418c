"""The append-only store: durable appends, torn tails repaired, corrupt lines reported."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import msgspec
import pytest

from runtime.errors import CorruptRecordError, StoreFullError
from runtime.records import PostEvent, Trace
from runtime.store import JsonlStore
from tests.helpers import make_post, validate_store
from tests.runtime.writer.test_writer import make_trace

pytestmark = pytest.mark.anyio


async def test_records_read_back_in_order(tmp_path: Path) -> None:
    store = JsonlStore(tmp_path / "posts.jsonl", PostEvent)
    store.open()
    await store.append(make_post(1))
    await store.append_many([make_post(2), make_post(3)])
    store.close()
    assert [p.id for p in store.read()] == ["1", "2", "3"]


async def test_a_torn_last_record_is_cut_on_open_and_kept_aside(tmp_path: Path) -> None:
    path = tmp_path / "posts.jsonl"
    store = JsonlStore(path, PostEvent)
    store.open()
    await store.append(make_post(1))
    store.close()
    path.write_bytes(path.read_bytes() + b'{"id": "2", "text": "half a rec')  # a crash mid-write
    assert [p.id for p in store.read()] == ["1"]  # readers never see the torn tail

    store.open()
    assert store.repaired_bytes == len(b'{"id": "2", "text": "half a rec')
    await store.append(make_post(3))
    store.close()
    assert [p.id for p in store.read()] == ["1", "3"]
    assert (tmp_path / "posts.jsonl.torn").read_bytes() == b'{"id": "2", "text": "half a rec\n'


async def test_a_complete_but_invalid_line_is_reported_with_its_place(tmp_path: Path) -> None:
    path = tmp_path / "posts.jsonl"
    path.write_text('{"not": "a post"}\n')
    with pytest.raises(CorruptRecordError, match=r"posts\.jsonl:1: .*missing required field"):
        list(JsonlStore(path, PostEvent).read())
    path.write_text('{"not": "a post"}\n{oops\n')
    with pytest.raises(CorruptRecordError, match=r"posts\.jsonl:2: not valid JSON"):
        list(JsonlStore(path, PostEvent).read(start=1))


def test_reading_a_missing_store_gives_nothing(tmp_path: Path) -> None:
    assert list(JsonlStore(tmp_path / "none.jsonl", PostEvent).read()) == []


async def test_a_record_that_breaks_its_constraints_is_never_written(tmp_path: Path) -> None:
    store = JsonlStore(tmp_path / "posts.jsonl", PostEvent)
    store.open()
    bad = msgspec.structs.replace(make_post(2), text="")  # construction does not check; the store does
    with pytest.raises(CorruptRecordError, match=r"refusing to write an invalid record .* `\$\.text`"):
        await store.append_many([make_post(1), bad])
    store.close()
    assert list(store.read()) == []


def test_traces_of_schema_version_2_still_read_with_no_held_out_figures(tmp_path: Path) -> None:
    current = make_trace(1, "Backups you never restored are hopes.", gain=0.12)
    assert current.schema_version == 3 and current.held_out is not None
    old = msgspec.json.decode(msgspec.json.encode(current))
    del old["held_out"]
    old["schema_version"] = 2
    store = tmp_path / "traces.jsonl"
    store.write_bytes(msgspec.json.encode(old) + b"\n")
    (read,) = JsonlStore(store, Trace).read()
    assert read.schema_version == 2 and read.held_out is None and read.plan == current.plan
    assert validate_store(store, "trace") == 1  # and the schema still accepts it


async def test_count_and_reading_from_a_record_on(tmp_path: Path) -> None:
    store = JsonlStore(tmp_path / "posts.jsonl", PostEvent)
    store.open()
    await store.append_many([make_post(i) for i in range(1, 5)])
    store.close()
    assert store.count() == 4
    assert [p.id for p in store.read(start=2)] == ["3", "4"]  # the first two are skipped, not decoded
    assert list(store.read(start=4)) == []


async def test_corrupt_lines_are_set_aside_in_order_and_the_rest_kept(tmp_path: Path) -> None:
    store = JsonlStore(tmp_path / "posts.jsonl", PostEvent)
    store.open()
    await store.append_many([make_post(1), make_post(2)])
    store.close()
    with store.path.open("ab") as file:
        file.write(b'{"not": "a post"}\nnot json\n')
    store.open()
    await store.append(make_post(3))
    store.close()
    assert store.set_aside_corrupt() == 2
    assert [p.id for p in store.read()] == ["1", "2", "3"]
    corrupt = tmp_path / "posts.jsonl.corrupt"
    assert corrupt.read_bytes() == b'{"not": "a post"}\nnot json\n'
    assert store.set_aside_corrupt() == 0 and corrupt.read_bytes() == b'{"not": "a post"}\nnot json\n'


@pytest.mark.parametrize(
    ("code", "raised"), [(errno.ENOSPC, StoreFullError), (errno.EDQUOT, StoreFullError), (errno.EIO, OSError)]
)
async def test_a_write_that_fails_midway_leaves_none_of_its_batch(
    code: int, raised: type[Exception], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "posts.jsonl"
    store = JsonlStore(path, PostEvent)
    store.open()
    await store.append(make_post(1))
    before = path.read_bytes()
    real_write = os.write

    def half_then_fail(fd: int, data: memoryview) -> int:
        if len(data) > 20:  # the first call writes part of the batch, the next fails
            return real_write(fd, data[:20])
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "write", half_then_fail)
    with pytest.raises(raised) as caught:
        await store.append_many([make_post(2), make_post(3)])
    assert type(caught.value) is raised
    if raised is StoreFullError:
        assert f"cannot write {path}: {os.strerror(code)}." in str(caught.value)
    assert path.read_bytes() == before  # none of the batch, not a torn part of it
    monkeypatch.undo()
    await store.append(make_post(4))  # the store goes on from where it was
    store.close()
    assert [p.id for p in store.read()] == ["1", "4"]


async def test_a_closed_store_refuses_writes_and_closes_twice(tmp_path: Path) -> None:
    store = JsonlStore(tmp_path / "posts.jsonl", PostEvent)
    with pytest.raises(RuntimeError, match=r"posts\.jsonl is not open"):
        await store.append(make_post(1))
    store.open()
    store.close()
    store.close()  # a second close is harmless
    with pytest.raises(RuntimeError, match="is not open"):
        await store.append(make_post(1))


async def test_a_torn_tail_after_several_records_keeps_them_all(tmp_path: Path) -> None:
    path = tmp_path / "posts.jsonl"
    store = JsonlStore(path, PostEvent)
    store.open()
    await store.append_many([make_post(1), make_post(2)])
    store.close()
    path.write_bytes(path.read_bytes() + b'{"id": "3"')
    store.open()
    store.close()
    assert store.repaired_bytes == len(b'{"id": "3"') and [p.id for p in store.read()] == ["1", "2"]
    assert (tmp_path / "posts.jsonl.torn").read_bytes() == b'{"id": "3"\n'


@pytest.mark.parametrize("content", [None, b"", b'{"id": "1"}\n'], ids=["new", "empty", "whole"])
def test_a_store_with_no_torn_tail_is_left_as_it_is(content: bytes | None, tmp_path: Path) -> None:
    path = tmp_path / "posts.jsonl"
    if content is not None:
        path.write_bytes(content)
    store = JsonlStore(path, PostEvent)
    store.open()
    store.close()
    assert store.repaired_bytes == 0 and path.read_bytes() == (content or b"")
    assert not (tmp_path / "posts.jsonl.torn").exists()
