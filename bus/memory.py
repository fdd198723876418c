"""The in-process transport: one bounded memory stream per consumer group, and a count of the
deliveries not yet settled, which is how the daemon knows all work is done."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from bus.messages import Envelope

_Send = MemoryObjectSendStream["MemoryDelivery"]
_Receive = MemoryObjectReceiveStream["MemoryDelivery"]


class NoSubscriberError(LookupError):
    """A message was published on a topic nobody listens to: it would be lost."""


@dataclass(slots=True)
class MemoryDelivery:
    """A delivery in memory: settling it counts it done; `nak` sends it to the group again."""

    envelope: Envelope[Any]
    attempt: int
    _transport: MemoryTransport
    _group: MemoryObjectSendStream[MemoryDelivery]
    heartbeat_s: float | None = None
    _settled: bool = False

    async def ack(self) -> None:
        self._settle()

    async def term(self) -> None:
        self._settle()

    async def in_progress(self) -> None:
        """Nothing else could take it in memory."""

    async def nak(self, delay_s: float = 0.0) -> None:
        """Queue it again after `delay_s`. A delivery cut short by a shutdown (its queue closed or
        full) is dropped instead: memory keeps nothing across a restart, the data dir does."""
        if self._settled:
            return
        await anyio.sleep(delay_s)
        again = MemoryDelivery(self.envelope, self.attempt + 1, self._transport, self._group)
        try:
            self._group.send_nowait(again)
        except (anyio.WouldBlock, anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._settle()
        else:
            self._settled = True  # the pending count carries over to the new delivery

    def _settle(self) -> None:
        if not self._settled:
            self._settled = True
            self._transport.done()


class MemorySubscription:
    def __init__(self, stream: MemoryObjectReceiveStream[MemoryDelivery]) -> None:
        self._stream = stream

    async def next(self) -> MemoryDelivery | None:
        try:
            return await self._stream.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            return None


class MemoryTransport:
    """Topics with bounded queues, one per consumer group.

    `publish` waits while any group's queue is full (backpressure) and raises `NoSubscriberError`
    for a topic with no group; a key published before is ignored, as JetStream does within its
    window. `wait_idle` returns once every delivery has been settled.
    """

    system = "reer"

    def __init__(self, buffer_size: int = 64) -> None:
        self._buffer_size = buffer_size
        self._groups: dict[str, dict[str, tuple[_Send, _Receive]]] = {}
        self._pending = 0
        self._idle: anyio.Event | None = None
        self._keys: set[str] = set()
        self.closed = False

    def subscribe(self, topic: str, group: str) -> MemorySubscription:
        groups = self._groups.setdefault(topic, {})
        if group not in groups:
            groups[group] = anyio.create_memory_object_stream[MemoryDelivery](self._buffer_size)
        return MemorySubscription(groups[group][1].clone())

    async def publish(self, envelope: Envelope[Any], key: str | None) -> None:
        groups = self._groups.get(envelope.topic)
        if not groups:
            raise NoSubscriberError(f"no actor subscribes to topic {envelope.topic!r}")
        if key is not None:
            if key in self._keys:
                return
            self._keys.add(key)
        for send, _ in groups.values():
            self._pending += 1
            try:
                await send.send(MemoryDelivery(envelope, 1, self, send))
            except BaseException:
                self.done()
                raise

    def done(self) -> None:
        """Count one delivery settled."""
        self._pending -= 1
        if self._pending == 0 and self._idle is not None:
            self._idle.set()
            self._idle = None

    @property
    def pending(self) -> int:
        """Deliveries published and not yet settled."""
        return self._pending

    def queue_depths(self) -> dict[str, int]:
        return {
            topic: sum(send.statistics().current_buffer_used for send, _ in groups.values())
            for topic, groups in self._groups.items()
        }

    async def wait_idle(self) -> None:
        while self._pending > 0:
            if self._idle is None:
                self._idle = anyio.Event()
            await self._idle.wait()

    async def aclose(self) -> None:
        """Close every queue: consumers drain what is buffered, then their subscriptions end."""
        self.closed = True
        for groups in self._groups.values():
            for send, receive in groups.values():
                send.close()
                receive.close()
