"""The seam between the bus and what carries its messages: memory streams in one process
(`bus/memory.py`), or NATS JetStream across processes and machines (`bus/jetstream.py`).

A transport delivers each published envelope once to every consumer group of its topic, and to one
member of the group. Each delivery is settled by the consumer loop (`actors/base.py`), never by an
actor: acked when handled, negatively acked to be delivered again, terminated once dead-lettered,
and marked in progress while a long handler runs.
"""

from __future__ import annotations

from typing import Any, Protocol

from bus.messages import Envelope


class Delivery(Protocol):
    """One envelope handed to one consumer, to be settled once."""

    @property
    def envelope(self) -> Envelope[Any]: ...

    @property
    def attempt(self) -> int:
        """1 the first time this envelope reaches its group, 2 after one redelivery, and so on."""
        ...

    @property
    def heartbeat_s(self) -> float | None:
        """How often a handler still at work must call `in_progress`, or None if never."""
        ...

    async def ack(self) -> None:
        """Handled: never deliver it again."""

    async def nak(self, delay_s: float = 0.0) -> None:
        """Not handled: deliver it again, to any member of the group, after `delay_s`."""

    async def term(self) -> None:
        """Given up on (it is a dead letter now): never deliver it again."""

    async def in_progress(self) -> None:
        """Still being handled: do not give it to another member yet."""


class Subscription(Protocol):
    """A consumer group's share of a topic, read by one or more slots at once."""

    async def next(self) -> Delivery | None:
        """The next delivery, or None once the transport is closed (and, in memory, drained)."""
        ...


class Transport(Protocol):
    """What carries envelopes; see the module docstring."""

    system: str
    """`messaging.system` on the spans: "reer" in process, "nats" on JetStream."""

    async def publish(self, envelope: Envelope[Any], key: str | None) -> None:
        """Deliver `envelope` to every group of its topic. A `key` published again within the
        transport's deduplication window is stored once (NATS) or ignored (memory: no window)."""

    def subscribe(self, topic: str, group: str) -> Subscription:
        """Join consumer group `group` of `topic`; members of one group share its deliveries."""
        ...

    async def wait_idle(self) -> None:
        """Return once nothing published is waiting or being handled."""

    def queue_depths(self) -> dict[str, int]:
        """Messages waiting per topic, as last known."""
        ...

    async def aclose(self) -> None:
        """Stop delivering: subscriptions return None (after draining what memory holds)."""
