"""The transport contract, on both transports: in memory and on a real NATS JetStream server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import anyio
import pytest
from opentelemetry import trace as otel_trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from actors.base import Consumer
from bus import tracing
from bus.bus import Bus, NoSubscriberError
from bus.jetstream import JetStreamOptions, JetStreamTransport
from bus.messages import (
    POSTS_OBSERVED,
    PROVIDER_REQUESTS,
    RESULTS,
    CallFailed,
    Envelope,
    MiningFailed,
    PostObserved,
    ProviderReply,
    ProviderRequest,
    decode,
    encode,
)
from bus.transport import Delivery, Subscription
from reer_runtime.testing import TopicRecorder
from runtime.providers.calls import ChatMessage, GenerateCall, TokenScores
from runtime.records import Failure
from tests.helpers import make_post

pytestmark = pytest.mark.anyio

OPTIONS = JetStreamOptions(ack_wait_s=1.0, max_deliver=3, poll_s=0.2)
"""Short enough that redelivery is seen within a test."""

OpenBus = Callable[..., Any]


@pytest.fixture(params=["memory", "nats"])
def open_bus(request: pytest.FixtureRequest) -> OpenBus:
    """`async with open_bus() as bus`: a bus on the transport under test."""

    @asynccontextmanager
    async def open_(**options: Any) -> AsyncIterator[Bus]:
        if request.param == "memory":
            yield Bus()
            return
        url, namespace = request.getfixturevalue("nats_url"), request.getfixturevalue("namespace")
        transport = await JetStreamTransport.connect(url, namespace, JetStreamOptions(**{**vars(OPTIONS), **options}))
        try:
            yield Bus(shared=transport)
        finally:
            await transport.disconnect()

    return open_


def observed(i: int) -> PostObserved:
    return PostObserved(post=make_post(i), engagement=0.5, selected=True)


async def take(subscription: Subscription) -> Delivery:
    delivery = await subscription.next()
    assert delivery is not None
    return delivery


async def test_every_group_gets_every_message(open_bus: OpenBus) -> None:
    async with open_bus() as bus:
        first, second = bus.subscribe(POSTS_OBSERVED, "one"), bus.subscribe(POSTS_OBSERVED, "two")
        for i in range(3):
            await bus.publish(POSTS_OBSERVED, observed(i))
        for subscription in (first, second):
            ids = []
            for _ in range(3):
                delivery = await take(subscription)
                ids.append(delivery.envelope.body.post.id)
                await delivery.ack()
            assert ids == ["0", "1", "2"]
        await bus.wait_idle()


async def test_members_of_a_group_share_its_messages(open_bus: OpenBus) -> None:
    async with open_bus() as bus:
        members = [bus.subscribe(POSTS_OBSERVED, "miner"), bus.subscribe(POSTS_OBSERVED, "miner")]
        for i in range(6):
            await bus.publish(POSTS_OBSERVED, observed(i))
        got: list[str] = []
        for i in range(6):
            delivery = await take(members[i % 2])
            got.append(delivery.envelope.body.post.id)
            await delivery.ack()
        assert sorted(got) == ["0", "1", "2", "3", "4", "5"]  # each once, whichever member took it
        await bus.wait_idle()


async def test_a_key_published_twice_is_delivered_once(open_bus: OpenBus) -> None:
    async with open_bus() as bus:
        subscription = bus.subscribe(POSTS_OBSERVED, "miner")
        await bus.publish(POSTS_OBSERVED, observed(1), key="post:x:1")
        await bus.publish(POSTS_OBSERVED, observed(1), key="post:x:1")
        await bus.publish(POSTS_OBSERVED, observed(2), key="post:x:2")
        first, second = await take(subscription), await take(subscription)
        assert [first.envelope.body.post.id, second.envelope.body.post.id] == ["1", "2"]
        await first.ack()
        await second.ack()
        await bus.wait_idle()


async def test_a_nak_delivers_it_again_and_counts_the_attempt(open_bus: OpenBus) -> None:
    async with open_bus() as bus:
        subscription = bus.subscribe(POSTS_OBSERVED, "miner")
        await bus.publish(POSTS_OBSERVED, observed(1))
        first = await take(subscription)
        assert first.attempt == 1
        await first.nak()
        again = await take(subscription)
        assert (again.envelope.id, again.attempt) == (first.envelope.id, 2)
        await again.ack()
        await bus.wait_idle()


async def test_an_unsettled_message_goes_to_another_member_after_ack_wait(nats_url: str, namespace: str) -> None:
    transport = await JetStreamTransport.connect(nats_url, namespace, OPTIONS)
    bus = Bus(shared=transport)
    try:
        dying, alive = bus.subscribe(POSTS_OBSERVED, "miner"), bus.subscribe(POSTS_OBSERVED, "miner")
        await bus.publish(POSTS_OBSERVED, observed(1))
        lost = await take(dying)  # the member dies holding it: never settled
        again = await take(alive)  # after ack_wait
        assert (again.envelope.id, again.attempt) == (lost.envelope.id, 2)
        await again.ack()
        await bus.wait_idle()
    finally:
        await transport.disconnect()


LONG_JOB = JetStreamOptions(ack_wait_s=3.0, max_deliver=3, poll_s=0.2)
"""An ack wait with room: the marks (every third of it) hold through a stall of up to 2 s."""


class Slow(Consumer[PostObserved]):
    """Takes twice the ack wait over each message, counting the deliveries it sees."""

    name = "miner"

    def __init__(self, bus: Bus, dead: Any) -> None:
        super().__init__(bus, POSTS_OBSERVED, dead, concurrency=2)
        self.attempts: list[int] = []

    async def handle(self, message: PostObserved) -> None:
        self.attempts.append(int(message.post.id))
        await anyio.sleep(2 * LONG_JOB.ack_wait_s)  # the long job under test, not a wait for something


class Letters:
    def __init__(self) -> None:
        self.letters: list[Any] = []

    async def append(self, record: Any, /) -> None:
        self.letters.append(record)


async def test_in_progress_marks_hold_a_long_job(nats_url: str, namespace: str) -> None:
    transport = await JetStreamTransport.connect(nats_url, namespace, LONG_JOB)
    bus = Bus(shared=transport)
    try:
        actor = Slow(bus, Letters())  # two slots: a second one would take the message if it were let go
        async with anyio.create_task_group() as tg:
            tg.start_soon(actor.run)
            await bus.publish(POSTS_OBSERVED, observed(1))
            await bus.wait_idle()
            await bus.aclose()
        assert actor.attempts == [1]
        (group,) = await transport.groups()
        assert (group.redelivered, group.unacked, group.pending) == (0, 0, 0)
    finally:
        await transport.disconnect()


async def test_a_terminated_message_is_not_delivered_again(open_bus: OpenBus) -> None:
    async with open_bus() as bus:
        subscription = bus.subscribe(POSTS_OBSERVED, "miner")
        await bus.publish(POSTS_OBSERVED, observed(1))
        await bus.publish(POSTS_OBSERVED, observed(2))
        await (await take(subscription)).term()
        second = await take(subscription)
        assert second.envelope.body.post.id == "2"  # not post 1 again
        await second.ack()
        await bus.wait_idle()


async def test_max_deliver_turns_a_message_into_a_dead_letter(nats_url: str, namespace: str) -> None:
    transport = await JetStreamTransport.connect(nats_url, namespace, OPTIONS)
    bus = Bus(shared=transport)
    letters: list[tuple[str, str, str]] = []
    done = anyio.Event()

    async def dead_letter(group: str, envelope: Envelope[Any], reason: str) -> None:
        letters.append((group, envelope.body.post.id, reason))
        done.set()

    try:
        subscription = bus.subscribe(POSTS_OBSERVED, "miner")
        async with anyio.create_task_group() as tg:
            tg.start_soon(transport.watch_dead_ends, dead_letter)
            await bus.publish(POSTS_OBSERVED, observed(7))
            for attempt in range(1, OPTIONS.max_deliver + 1):  # each holder dies with it
                assert (await take(subscription)).attempt == attempt
            tg.start_soon(subscription.next)  # a member still asking: the server would deliver it a 4th time
            with anyio.fail_after(30):
                await done.wait()
                while (await transport.js.stream_info(transport.stream)).state.messages:  # noqa: ASYNC110 - server state
                    await anyio.sleep(0.01)  # kept as a dead letter first, then removed from the stream
            tg.cancel_scope.cancel()
        assert letters == [
            (
                "miner",
                "7",
                "delivered 3 times and never settled (max_deliver): the process handling it stopped each time",
            )
        ]
    finally:
        await transport.disconnect()


async def test_trace_context_travels_with_the_message(open_bus: OpenBus, spans: InMemorySpanExporter) -> None:
    async with open_bus() as bus:
        subscription = bus.subscribe(POSTS_OBSERVED, "miner")
        with otel_trace.get_tracer("test").start_as_current_span("ingest") as ingest:
            sent = await bus.publish(POSTS_OBSERVED, observed(1))
        delivery = await take(subscription)
        assert delivery.envelope.headers["traceparent"] == sent.headers["traceparent"]
        with tracing.process_span(bus.tracer, delivery.envelope, "miner", bus.system(POSTS_OBSERVED)):
            pass
        await delivery.ack()
        by_name = {s.name: s for s in spans.get_finished_spans()}
        send, process = by_name["send posts.observed"], by_name["process posts.observed"]
        assert (send.kind, process.kind) == (SpanKind.PRODUCER, SpanKind.CONSUMER)
        assert process.context.trace_id == send.context.trace_id == ingest.get_span_context().trace_id
        assert process.parent is not None and process.parent.span_id == send.context.span_id
        assert dict(process.attributes or {})["messaging.system"] == bus.system(POSTS_OBSERVED)
        await bus.wait_idle()


class Relay(Consumer[PostObserved]):
    """Handles each post by publishing a result: more work caused by work."""

    name = "relay"

    def __init__(self, bus: Bus, dead: Any) -> None:
        super().__init__(bus, POSTS_OBSERVED, dead)

    async def handle(self, message: PostObserved) -> None:
        failure = Failure(post=message.post, reason="relayed", failed_at=datetime.now(UTC))
        await self.bus.publish(RESULTS, MiningFailed(failure=failure))


class Collect(Consumer[Any]):
    name = "collect"

    def __init__(self, bus: Bus, dead: Any, gate: anyio.Event) -> None:
        super().__init__(bus, RESULTS, dead)
        self.seen: list[str] = []
        self._gate = gate

    async def handle(self, message: Any) -> None:
        await self._gate.wait()
        self.seen.append(message.failure.post.id)


async def test_wait_idle_waits_for_work_that_work_causes(open_bus: OpenBus) -> None:
    async with open_bus() as bus:
        gate, idle = anyio.Event(), anyio.Event()
        collect = Collect(bus, Letters(), gate)
        idle_with: list[list[str]] = []

        async def watch() -> None:
            await bus.wait_idle()
            idle_with.append(list(collect.seen))
            idle.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(Relay(bus, Letters()).run)
            tg.start_soon(collect.run)
            for i in range(3):
                await bus.publish(POSTS_OBSERVED, observed(i))
            tg.start_soon(watch)
            await anyio.wait_all_tasks_blocked()
            assert idle_with == []  # the results are held at the gate: not idle
            gate.set()
            with anyio.fail_after(30):
                await idle.wait()
            await bus.aclose()
        assert idle_with == [["0", "1", "2"]]


async def test_publish_waits_while_a_queue_is_full() -> None:
    bus = Bus(buffer_size=1)
    subscription = bus.subscribe(POSTS_OBSERVED, "miner")
    sent: list[int] = []

    async def producer() -> None:
        for i in range(3):
            await bus.publish(POSTS_OBSERVED, observed(i))
            sent.append(i)

    async with anyio.create_task_group() as tg:
        tg.start_soon(producer)
        await anyio.wait_all_tasks_blocked()
        assert sent == [0]  # the second message waits for room: backpressure, not unbounded memory
        received_ids = []
        for _ in range(3):
            delivery = await take(subscription)
            received_ids.append(delivery.envelope.body.post.id)
            await delivery.ack()
    assert received_ids == ["0", "1", "2"]
    assert sent == [0, 1, 2]


async def test_close_lets_memory_consumers_drain_what_is_buffered() -> None:
    bus = Bus(buffer_size=10)
    recorder = TopicRecorder(bus, POSTS_OBSERVED, "miner")
    for i in range(5):
        await bus.publish(POSTS_OBSERVED, observed(i))
    await bus.aclose()
    assert len(await recorder.bodies()) == 5
    assert bus.pending == 0


async def test_publishing_to_a_topic_nobody_reads_is_an_error() -> None:
    with pytest.raises(NoSubscriberError, match=r"posts\.observed"):
        await Bus().publish(POSTS_OBSERVED, observed(1))


async def test_model_calls_stay_in_their_process(nats_url: str, namespace: str) -> None:
    transport = await JetStreamTransport.connect(nats_url, namespace, OPTIONS)
    bus = Bus(shared=transport)
    try:
        assert (bus.system(PROVIDER_REQUESTS), bus.system(POSTS_OBSERVED)) == ("reer", "nats")
    finally:
        await transport.disconnect()


def test_envelopes_round_trip_through_their_json_encoding() -> None:
    messages = [
        observed(1),
        ProviderRequest(
            request_id="r1",
            role="generator",
            call=GenerateCall(messages=[ChatMessage("user", "hi")], stop=["\n"], seed=3),
            reply_to="provider.replies.miner",
        ),
        ProviderReply(
            request_id="r1", outcome=TokenScores(logprobs=[-0.5, -1.25], input_tokens=4, provider="dummy://")
        ),
        ProviderReply(request_id="r2", outcome=CallFailed(error="all providers failed")),
    ]
    for body in messages:
        envelope = Envelope(id="m1", topic=PROVIDER_REQUESTS.name, headers={"traceparent": "00-ab-cd-01"}, body=body)
        assert decode(encode(envelope)) == envelope


async def test_a_message_that_is_not_an_envelope_is_dropped_not_delivered(nats_url: str, namespace: str) -> None:
    transport = await JetStreamTransport.connect(nats_url, namespace, OPTIONS)
    bus = Bus(shared=transport)
    try:
        subscription = bus.subscribe(POSTS_OBSERVED, "miner")
        await bus.publish(POSTS_OBSERVED, observed(1))  # declares the group
        await transport.js.publish(transport.subject(POSTS_OBSERVED.name), b"{not an envelope")
        await bus.publish(POSTS_OBSERVED, observed(2))
        for expected in ("1", "2"):
            delivery = await take(subscription)
            assert delivery.envelope.body.post.id == expected
            await delivery.ack()
        with anyio.fail_after(30):
            await bus.wait_idle()  # the foreign message was terminated, not left unacked
    finally:
        await transport.disconnect()
