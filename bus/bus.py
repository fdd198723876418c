"""The in-process message bus: topics, fan-out, backpressure, and knowing when all work is done."""

from __future__ import annotations

import uuid
from typing import Any, TypeVar

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from opentelemetry.trace import TracerProvider

from bus import tracing
from bus.messages import Envelope, Topic

M = TypeVar("M")


class NoSubscriberError(LookupError):
    """A message was published on a topic nobody listens to: it would be lost."""


class Bus:
    """Topics with bounded queues. Every subscriber of a topic gets every message on it.

    `publish` waits while any subscriber's queue is full (backpressure). The bus counts deliveries
    not yet handled: a consumer calls `done` once per received envelope, after handling it and
    publishing whatever it caused, so `wait_idle` returns only when no work is left anywhere.
    """

    def __init__(self, buffer_size: int = 64, tracer_provider: TracerProvider | None = None) -> None:
        self._buffer_size = buffer_size
        self._subscribers: dict[str, list[MemoryObjectSendStream[Envelope[Any]]]] = {}
        self.tracer = tracing.tracer(tracer_provider)
        """The tracer of the bus's spans; consumers use it for their process spans."""
        self._pending = 0
        self._idle: anyio.Event | None = None

    def subscribe(self, topic: Topic[M], buffer_size: int | None = None) -> MemoryObjectReceiveStream[Envelope[M]]:
        """A new queue that receives every message published on `topic` from now on."""
        send, receive = anyio.create_memory_object_stream[Envelope[M]](buffer_size or self._buffer_size)
        self._subscribers.setdefault(topic.name, []).append(send)
        return receive

    async def publish(self, topic: Topic[M], body: M) -> Envelope[M]:
        """Deliver `body` to every subscriber of `topic`, waiting for room in each queue."""
        subscribers = self._subscribers.get(topic.name)
        if not subscribers:
            raise NoSubscriberError(f"no actor subscribes to topic {topic.name!r}")
        message_id = uuid.uuid4().hex
        with tracing.send_span(self.tracer, topic.name, message_id) as headers:
            envelope = Envelope(id=message_id, topic=topic.name, headers=headers, body=body)
            for send in subscribers:
                self._pending += 1
                try:
                    await send.send(envelope)
                except BaseException:
                    self.done()
                    raise
        return envelope

    def done(self) -> None:
        """Mark one received envelope as fully handled."""
        self._pending -= 1
        if self._pending == 0 and self._idle is not None:
            self._idle.set()
            self._idle = None

    @property
    def pending(self) -> int:
        """Deliveries published and not yet handled."""
        return self._pending

    def queue_depths(self) -> dict[str, int]:
        """Messages waiting in the queues of each topic."""
        return {
            name: sum(s.statistics().current_buffer_used for s in sends) for name, sends in self._subscribers.items()
        }

    async def wait_idle(self) -> None:
        """Return once every published message has been handled."""
        while self._pending > 0:
            if self._idle is None:
                self._idle = anyio.Event()
            await self._idle.wait()

    def close(self) -> None:
        """Close every queue: consumers drain what is buffered, then their loops end."""
        for sends in self._subscribers.values():
            for send in sends:
                send.close()
