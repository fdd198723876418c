"""Fuzzed input: the Ingestor never fails, and every line ends up accepted or rejected with a reason."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import anyio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.ingestor import Ingestor
from bus.bus import Bus
from bus.messages import POSTS_OBSERVED
from reer_runtime.testing import TopicRecorder
from runtime.inputs.lines import LineSplitter, parse_line
from runtime.records import Accepted, PostEvent, Rejected
from runtime.store import JsonlStore
from tests.helpers import post_line

LIMIT = 1000

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
valid = st.integers(0, 10_000).map(lambda i: post_line(i).encode())
mutated = st.builds(
    lambda i, key, value: json.dumps({**json.loads(post_line(i)), key: value}).encode(),
    st.integers(0, 10_000),
    st.sampled_from(["id", "text", "created_at", "platform", "author", "metrics", "type"]),
    json_values,
)
garbage = st.binary(max_size=300).map(lambda b: b.replace(b"\n", b" "))
deep = st.integers(1, 300).map(lambda n: b"[" * n + b"]" * n)
deep_extra = st.integers(
    1, 5000
).map(  # deep nesting where unknown fields are skipped
    lambda n: post_line(n)[:-1].encode() + b', "extra": ' + b"[" * n + b"]" * n + b"}"
)
lines = st.lists(
    st.one_of(valid, mutated, garbage, deep, deep_extra, json_values.map(lambda v: json.dumps(v).encode())),
    max_size=25,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines)
def test_every_line_is_accepted_or_rejected_with_a_reason(raw_lines: list[bytes]) -> None:
    async def run() -> tuple[list[Accepted], list[Rejected], int]:
        with tempfile.TemporaryDirectory() as tmp:
            ledger = JsonlStore(Path(tmp) / "posts.jsonl", Accepted)
            rejected = JsonlStore(Path(tmp) / "rejected.jsonl", Rejected)
            ledger.open()
            rejected.open()
            bus = Bus(buffer_size=100)
            observed = TopicRecorder(bus, POSTS_OBSERVED)
            ingestor = Ingestor(
                bus, ledger, rejected, min_engagement=0.5, min_author_posts=1, max_line_bytes=LIMIT, batch_max_lines=50
            )
            splitter = LineSplitter(LIMIT)
            batch = splitter.feed(b"\n".join(raw_lines) + b"\n") if raw_lines else []
            await ingestor.ingest("fuzz", batch)
            await bus.aclose()
            announced = len(await observed.bodies())
            return list(ledger.read()), list(rejected.read()), announced

    accepted, refused, announced = anyio.run(run)
    non_blank = [line for line in raw_lines if line.strip()]
    assert len(accepted) + len(refused) == len(non_blank)  # nothing silently dropped
    assert announced == len(accepted)
    assert all(r.reason and ":" in r.reason for r in refused)  # a specific reason, with its kind first
    fitting = [line for line in non_blank if len(line) <= LIMIT]
    keys = [e.key for e in map(parse_line, fitting) if isinstance(e, PostEvent)]
    assert [a.post.key for a in accepted] == list(dict.fromkeys(keys))  # every valid post kept, once
