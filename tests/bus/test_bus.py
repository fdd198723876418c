"""The bus: fan-out, backpressure, drain, stable encoding."""

from __future__ import annotations

import anyio
import pytest
from anyio.abc import TaskStatus
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from bus import tracing
from bus.bus import Bus, NoSubscriberError
from bus.messages import (
    POSTS_OBSERVED,
    PROVIDER_REQUESTS,
    CallFailed,
    Envelope,
    PostObserved,
    ProviderReply,
    ProviderRequest,
    decode,
    encode,
)
from runtime.providers.calls import ChatMessage, GenerateCall, TokenScores
from tests.helpers import make_post

pytestmark = pytest.mark.anyio


def observed(i: int) -> PostObserved:
    return PostObserved(post=make_post(i), engagement=0.5, selected=True)


async def test_every_subscriber_gets_every_message() -> None:
    bus = Bus()
    first, second = bus.subscribe(POSTS_OBSERVED), bus.subscribe(POSTS_OBSERVED)
    for i in range(3):
        await bus.publish(POSTS_OBSERVED, observed(i))
    bus.close()
    for stream in (first, second):
        ids = [e.body.post.id async for e in stream]
        assert ids == ["0", "1", "2"]


async def test_publish_waits_while_a_queue_is_full() -> None:
    bus = Bus(buffer_size=1)
    stream = bus.subscribe(POSTS_OBSERVED)
    sent: list[int] = []

    async def producer() -> None:
        for i in range(3):
            await bus.publish(POSTS_OBSERVED, observed(i))
            sent.append(i)

    async with anyio.create_task_group() as tg:
        tg.start_soon(producer)
        await anyio.wait_all_tasks_blocked()
        assert sent == [0]  # the second message waits for room: backpressure, not unbounded memory
        assert stream.statistics().tasks_waiting_send == 1
        received = [(await stream.receive()).body.post.id for _ in range(3)]
    assert received == ["0", "1", "2"]
    assert sent == [0, 1, 2]


async def test_wait_idle_returns_only_when_every_delivery_is_done() -> None:
    bus = Bus()
    stream = bus.subscribe(POSTS_OBSERVED)
    other = bus.subscribe(POSTS_OBSERVED)
    await bus.publish(POSTS_OBSERVED, observed(1))
    assert bus.pending == 2
    idle = False

    async def waiter(*, task_status: TaskStatus[None]) -> None:
        nonlocal idle
        task_status.started()
        await bus.wait_idle()
        idle = True

    async with anyio.create_task_group() as tg:
        await tg.start(waiter)
        await stream.receive()
        bus.done()
        await anyio.wait_all_tasks_blocked()
        assert not idle  # one subscriber has not handled its copy yet
        await other.receive()
        bus.done()
    assert idle
    assert bus.pending == 0


async def test_close_lets_consumers_drain_what_is_buffered() -> None:
    bus = Bus(buffer_size=10)
    stream = bus.subscribe(POSTS_OBSERVED)
    for i in range(5):
        await bus.publish(POSTS_OBSERVED, observed(i))
    bus.close()
    assert len([e async for e in stream]) == 5


async def test_publishing_to_a_topic_nobody_reads_is_an_error() -> None:
    with pytest.raises(NoSubscriberError, match=r"posts\.observed"):
        await Bus().publish(POSTS_OBSERVED, observed(1))


async def test_a_consumer_span_continues_the_trace_of_its_send(spans: InMemorySpanExporter) -> None:
    bus = Bus()
    stream = bus.subscribe(POSTS_OBSERVED)
    envelope = await bus.publish(POSTS_OBSERVED, observed(1))
    assert envelope.headers["traceparent"].startswith("00-")
    with tracing.process_span(tracing.tracer(), await stream.receive(), "test"):
        pass
    send, process = spans.get_finished_spans()
    assert (send.name, send.kind) == ("send posts.observed", SpanKind.PRODUCER)
    assert (process.name, process.kind) == ("process posts.observed", SpanKind.CONSUMER)
    assert process.context.trace_id == send.context.trace_id
    assert process.parent is not None and process.parent.span_id == send.context.span_id
    assert dict(process.attributes or {})["messaging.message.id"] == envelope.id


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
