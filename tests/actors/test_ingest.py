"""The Ingestor: valid posts are kept and announced, every other line is kept with its reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from actors.ingestor import Ingestor
from bus.bus import Bus
from bus.messages import GENERATE_REQUESTED, POSTS_OBSERVED
from reer_runtime.testing import TopicRecorder
from runtime.inputs.lines import Line, LineSplitter, nesting_depth, parse_line
from runtime.records import Accepted, PostEvent, Rejected, Rejection
from runtime.store import JsonlStore
from tests.helpers import post_line

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"type": "post", "id": ', "invalid JSON: Input data was truncated"),
        (b"[1, 2]", "invalid event: Expected `object`, got `array`"),
        (post_line(1, platform="myspace").encode(), "Invalid enum value 'myspace' - at `$.platform`"),
        (post_line(1, created_at="2026-03-01T10:00:00").encode(), "at `$.created_at`"),
        (post_line(1, metrics={"likes": -1, "reposts": 0, "replies": 0}).encode(), "at `$.metrics.likes`"),
        (post_line(1, text="").encode(), "at `$.text`"),
        (b'{"type": "post", "id": "1"}', "Object missing required field `text`"),
        (b'{"type": "tweet"}', "Invalid value 'tweet' - at `$.type`"),
        (post_line(1)[:-1].encode() + b', "extra": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "100001 levels"),
        (post_line(1, extra={"a": [[{"b": [1]}]]}).encode(), "too deeply nested: 6 levels, over max_nesting (4)"),
        (b'{"type": "post", "text": "caf\xe9"}', "not UTF-8: byte 29"),
    ],
)
def test_each_bad_line_gets_a_specific_reason(raw: bytes, reason: str) -> None:
    result = parse_line(raw, max_nesting=4)
    assert isinstance(result, Rejection) and reason in str(result)


def test_a_valid_post_parses() -> None:
    event = parse_line(post_line(7).encode())
    assert isinstance(event, PostEvent) and event.key == "x:7"
    brackets = post_line(8, text='Brackets [[[{{{ and quotes \\" in text', extra={"a": [[1]]}).encode()
    assert nesting_depth(brackets) == 4 and isinstance(parse_line(brackets, max_nesting=4), PostEvent)


def test_long_lines_are_cut_and_flagged_and_numbers_count_every_line() -> None:
    splitter = LineSplitter(max_bytes=8)
    lines = splitter.feed(b"short\n0123456789abc\nla") + splitter.feed(b"st") + splitter.finish()
    assert lines == [Line(1, b"short"), Line(2, b"01234567", too_long=True), Line(3, b"last")]


async def test_batches_are_persisted_then_announced_and_duplicates_rejected(tmp_path: Path) -> None:
    ledger = JsonlStore(tmp_path / "posts.jsonl", Accepted)
    rejected = JsonlStore(tmp_path / "rejected.jsonl", Rejected)
    ledger.open()
    rejected.open()
    bus = Bus(buffer_size=100)
    observed = TopicRecorder(bus, POSTS_OBSERVED)
    requested = TopicRecorder(bus, GENERATE_REQUESTED)
    ingestor = Ingestor(
        bus, ledger, rejected, min_engagement=0.5, min_author_posts=1, max_line_bytes=10_000, batch_max_lines=100
    )
    lines = [post_line(i, author="a") for i in range(4)]
    lines += ["not json", "", post_line(2, author="a"), json.dumps({"type": "generate", "topic": "launch"})]
    await ingestor.ingest("file.jsonl", [Line(n, s.encode()) for n, s in enumerate(lines, start=1)])
    await bus.aclose()

    assert [a.post.id for a in ledger.read()] == ["0", "1", "2", "3"]
    assert [a.line for a in ledger.read()] == [1, 2, 3, 4]
    reasons = {r.line: r.reason for r in rejected.read()}
    assert reasons[5].startswith("invalid JSON")
    assert reasons[7] == "duplicate: post x:2 was already accepted"
    assert 8 not in reasons  # a request for drafts, passed to the Generator
    assert 6 not in reasons  # a blank line is not an event
    assert next(iter(rejected.read())).raw == "not json" and next(iter(rejected.read())).source == "file.jsonl"
    assert [m.request.topic for m in await requested.bodies()] == ["launch"]
    announced = await observed.bodies()
    assert [m.post.id for m in announced] == ["0", "1", "2", "3"]
    by_engagement = sorted(announced, key=lambda m: m.engagement)
    assert [m.selected for m in by_engagement] == [False, False, True, True]
    assert (ingestor.counts.lines, ingestor.counts.accepted, ingestor.counts.rejected) == (7, 4, 2)  # and 1 request

    again = Ingestor(
        bus, ledger, rejected, min_engagement=0.5, min_author_posts=1, max_line_bytes=99, batch_max_lines=9
    )
    assert again.counts.accepted == 0
    assert (
        str(again._admission.check(Line(1, post_line(3, author="a").encode())))
        == "duplicate: post x:3 was already accepted"
    )


async def test_text_longer_than_the_limit_is_rejected_with_the_numbers(tmp_path: Path) -> None:
    ledger = JsonlStore(tmp_path / "posts.jsonl", Accepted)
    rejected = JsonlStore(tmp_path / "rejected.jsonl", Rejected)
    ledger.open()
    rejected.open()
    ingestor = Ingestor(
        Bus(),
        ledger,
        rejected,
        min_engagement=1,
        min_author_posts=1,
        max_line_bytes=10_000,
        batch_max_lines=9,
        max_text_chars=20,
    )
    assert str(ingestor._admission.check(Line(1, post_line(1, text="x" * 21).encode()))) == (
        "too long: the text has 21 characters, over max_text_chars (20)"
    )
