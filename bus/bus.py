"""The bus the actors talk through: typed topics over a transport, a span per send, idle detection.

Topics marked `local` (a process's model calls and their replies) always stay in memory; the others
go over the shared transport, which is memory too unless the daemon runs on NATS JetStream.
"""

from __future__ import annotations

import uuid
from typing import Any, TypeVar

import anyio
import anyio.lowlevel
from opentelemetry.trace import TracerProvider

from bus import tracing
from bus.memory import MemoryTransport, NoSubscriberError
from bus.messages import Envelope, Topic
from bus.transport import Subscription, Transport

M = TypeVar("M")

__all__ = ["Bus", "NoSubscriberError"]


class Bus:
    """Publishes typed messages and hands out subscriptions, over one or two transports."""

    def __init__(
        self, buffer_size: int = 64, tracer_provider: TracerProvider | None = None, shared: Transport | None = None
    ) -> None:
        self.local = MemoryTransport(buffer_size)
        self.shared: Transport = shared or self.local
        self.tracer = tracing.tracer(tracer_provider)
        """The tracer of the bus's spans; consumers use it for their process spans."""

    def _carrier(self, topic: Topic[Any]) -> Transport:
        return self.local if topic.local else self.shared

    def system(self, topic: Topic[Any]) -> str:
        """The messaging system that carries `topic`."""
        return self._carrier(topic).system

    def subscribe(self, topic: Topic[M], group: str) -> Subscription:
        """Join consumer group `group` of `topic`: each message reaches every group, and one member of each."""
        return self._carrier(topic).subscribe(topic.name, group)

    async def publish(self, topic: Topic[M], body: M, key: str | None = None) -> Envelope[M]:
        """Send `body` on `topic`, waiting for room. `key` names the work it stands for, so that a
        transport that deduplicates (NATS) stores it once however often it is published."""
        carrier = self._carrier(topic)
        message_id = uuid.uuid4().hex
        with tracing.send_span(self.tracer, topic.name, message_id, carrier.system) as headers:
            envelope = Envelope(id=message_id, topic=topic.name, headers=headers, body=body)
            await carrier.publish(envelope, key)
        return envelope

    @property
    def pending(self) -> int:
        """Deliveries in this process published and not yet settled."""
        return self.local.pending

    def queue_depths(self) -> dict[str, int]:
        """Messages waiting per topic."""
        depths = self.local.queue_depths()
        if self.shared is not self.local:
            depths |= self.shared.queue_depths()
        return depths

    async def wait_idle(self) -> None:
        """Return once no work is left: every delivery settled here and, across processes, on the broker."""
        while True:
            await self.local.wait_idle()
            if self.shared is self.local:
                return
            await self.shared.wait_idle()
            if self.local.pending == 0:
                return
            await anyio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        """Stop every subscription (memory ones after draining what is buffered)."""
        await self.local.aclose()
        if self.shared is not self.local:
            await self.shared.aclose()
