"""The TraceWriter: one trace per post whatever arrives twice, failures and dead letters from
elsewhere kept, compiles asked for by the store's count."""

from __future__ import annotations

from datetime import UTC, datetime

import anyio
import msgspec
import pytest

from actors.base import Consumer, DeadLetters
from actors.trace_writer import TraceWriter
from bus.bus import Bus
from bus.messages import (
    OPTIMIZE_REQUESTED,
    RESULTS,
    DeadLettered,
    MiningFailed,
    OptimizeRequested,
    Result,
    TraceMined,
)
from runtime.ledger import Ledger, Stores
from runtime.records import DeadLetter, Failure
from tests.helpers import make_post
from tests.runtime.writer.test_writer import make_trace

pytestmark = pytest.mark.anyio
Sent = TraceMined | MiningFailed
NOW = datetime(2026, 12, 2, tzinfo=UTC)


class Optimizer(Consumer[OptimizeRequested]):
    """Counts the compiles asked for."""

    name = "optimizer"

    def __init__(self, bus: Bus, dead: DeadLetters) -> None:
        super().__init__(bus, OPTIMIZE_REQUESTED, dead)
        self.asked = 0

    async def handle(self, message: OptimizeRequested) -> None:
        self.asked += 1


async def write(
    stores: Stores, results: list[Result], optimize_after: int | None = None, accepted: set[str] | None = None
) -> int:
    """Run a TraceWriter over `results`, the posts of `accepted` (by key; by default those of the
    results) being those the Ingestor accepted; how many compiles it asked for."""
    posts = [r.trace.post if isinstance(r, TraceMined) else r.failure.post for r in results if isinstance(r, Sent)]
    keys = {p.key for p in posts} if accepted is None else accepted
    bus = Bus()
    optimizer = Optimizer(bus, stores.dead_letters)
    writer = TraceWriter(
        bus,
        stores.dead_letters,
        stores.traces,
        stores.failures,
        Ledger(stores),
        lambda post: post.key in keys,
        optimize_after,
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(writer.run)
        tg.start_soon(optimizer.run)
        for result in results:
            await bus.publish(RESULTS, result)
        await bus.wait_idle()
        await bus.aclose()
    return optimizer.asked


async def test_a_post_mined_twice_is_written_once_and_its_late_failure_not_at_all(stores: Stores) -> None:
    trace = make_trace(1, "We shipped the thing.")
    failure = Failure(post=trace.post, reason="timed out", failed_at=NOW)
    other = Failure(post=make_post(2), reason="every plan copied the post", failed_at=NOW)
    await write(stores, [TraceMined(trace=trace), TraceMined(trace=trace), MiningFailed(failure=failure)])
    await write(stores, [MiningFailed(failure=other), MiningFailed(failure=other)])
    assert [t.post.key for t in stores.traces.read()] == [trace.post.key]
    assert [f.post.key for f in stores.failures.read()] == [other.post.key]


async def test_dead_letters_from_other_processes_are_kept(stores: Stores) -> None:
    letter = DeadLetter(actor="miner", topic="posts.observed", message=msgspec.Raw(b"{}"), error="boom", failed_at=NOW)
    await write(stores, [DeadLettered(letter=letter)])
    assert list(stores.dead_letters.read()) == [letter]


async def test_a_compile_is_asked_for_each_time_the_store_reaches_a_multiple(stores: Stores) -> None:
    await stores.traces.append(make_trace(0, "Already here."))
    traces = [TraceMined(trace=make_trace(i, f"Post {i} says something.")) for i in range(1, 6)]
    asked = await write(stores, [*traces, traces[0]], optimize_after=2)  # a duplicate does not count
    assert asked == 3  # at 2, 4 and 6 traces in the store, the first already there before
