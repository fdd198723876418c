"""What every actor shares: the consumer loop, which owns the delivery contract (a span per message,
acks, in-progress marks for long handlers, dead letters) and stops on a crash loop."""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, TypeVar

import anyio
import msgspec
from opentelemetry.trace import Status, StatusCode

from bus import tracing
from bus.bus import Bus
from bus.messages import RESULTS, DeadLettered, Envelope, GenerateRequested, OptimizeRequested, Topic, encode
from bus.transport import Delivery
from runtime import metrics
from runtime.errors import CrashLoopError, Refused, StoreFullError
from runtime.logs import PERFORMANCE
from runtime.records import DeadLetter

M = TypeVar("M")

log = logging.getLogger(__name__)
performance = logging.getLogger(PERFORMANCE)


def dead_letter(actor: str, envelope: Envelope[Any], error: str) -> DeadLetter:
    """The record of `envelope`, which `actor` could not handle, with why."""
    message = msgspec.Raw(encode(envelope))
    body = envelope.body
    request = body.request_id if isinstance(body, GenerateRequested | OptimizeRequested) else None
    return DeadLetter(
        actor=actor, topic=envelope.topic, message=message, error=error, failed_at=datetime.now(UTC), request_id=request
    )


class DeadLetters(Protocol):
    """Where an actor's dead letters go: the data dir's store, or the bus to the TraceWriter."""

    async def append(self, record: DeadLetter, /) -> None: ...


class ForwardedDeadLetters:
    """Dead letters sent on the bus to the TraceWriter, from a worker with no data dir of its own."""

    def __init__(self, bus: Bus) -> None:
        self._bus = bus

    async def append(self, record: DeadLetter, /) -> None:
        await self._bus.publish(RESULTS, DeadLettered(letter=record))


class Consumer(ABC, Generic[M]):
    """An actor that handles the messages of one topic with `concurrency` slots, as consumer group `name`.

    A handled message is acked. A handler that raises does not stop the actor: the message and error
    become a dead letter and the message is not delivered again. `max_consecutive_failures` failures
    in a row, with no success between them, raise `CrashLoopError`, which ends the process. A message
    whose handler is cut short (shutdown) is handed back to the transport for another member.
    """

    name: str

    def __init__(
        self,
        bus: Bus,
        topic: Topic[M],
        dead_letters: DeadLetters,
        *,
        concurrency: int = 1,
        max_consecutive_failures: int = 5,
    ) -> None:
        self.bus = bus
        self._subscription = bus.subscribe(topic, self.name)
        self._system = bus.system(topic)
        self._dead_letters = dead_letters
        self._concurrency = concurrency
        self._max_failures = max_consecutive_failures
        self._failures = 0

    @abstractmethod
    async def handle(self, message: M) -> None:
        """Handle one message."""

    async def run(self) -> None:
        """Handle messages until the bus closes."""
        async with anyio.create_task_group() as tg:
            for _ in range(self._concurrency):
                tg.start_soon(self._work)

    async def _work(self) -> None:
        while (delivery := await self._subscription.next()) is not None:
            await self._settle(delivery)

    async def _settle(self, delivery: Delivery) -> None:
        envelope: Envelope[M] = delivery.envelope
        started = time.perf_counter()
        attributes = {
            "messaging.system": self._system,
            "messaging.operation.name": "process",
            "messaging.destination.name": envelope.topic,
            "messaging.consumer.group.name": self.name,
        }
        settled = False
        try:
            with tracing.process_span(self.bus.tracer, envelope, self.name, self._system, delivery.attempt) as span:
                if (exc := await self._handle(delivery)) is None:
                    self._failures = 0
                    await delivery.ack()
                else:  # an actor survives its handler's errors
                    attributes["error.type"] = type(exc).__qualname__
                    span.record_exception(exc)
                    span.set_status(Status(StatusCode.ERROR, str(exc)))
                    span.set_attribute("error.type", type(exc).__qualname__)
                    await self._dead_letter(envelope, exc, delivery)
                settled = True
        finally:
            if not settled:  # cut short: another member (or this one, after a restart) takes it
                with anyio.CancelScope(shield=True):
                    await delivery.nak()
            elapsed = time.perf_counter() - started
            metrics.process_duration.record(elapsed, attributes)
            performance.info(
                "%s handled a %s message in %.1f ms",
                self.name,
                envelope.topic,
                elapsed * 1000,
                extra={"actor": self.name, "topic": envelope.topic, "duration_ms": round(elapsed * 1000, 3)},
            )

    async def _handle(self, delivery: Delivery) -> Exception | None:
        """Run the handler, marking the delivery in progress meanwhile if the transport asks; its error."""
        if delivery.heartbeat_s is None:
            return await self._guarded(delivery.envelope.body)
        async with anyio.create_task_group() as tg:
            tg.start_soon(_keep_alive, delivery, delivery.heartbeat_s)
            error = await self._guarded(delivery.envelope.body)
            tg.cancel_scope.cancel()
        return error

    async def _guarded(self, message: M) -> Exception | None:
        """The handler's error, if it raised one. `StoreFullError` is raised instead: nothing more
        can be written, so the process stops."""
        try:
            await self.handle(message)
        except StoreFullError:
            raise
        except Exception as exc:
            return exc
        return None

    async def _dead_letter(self, envelope: Envelope[M], exc: Exception, delivery: Delivery) -> None:
        error = f"{type(exc).__qualname__}: {exc}"
        if isinstance(exc, Refused):
            log.warning("%s refused a %s message: %s", self.name, envelope.topic, exc)
        else:
            self._failures += 1
            log.error("%s failed on a %s message: %s", self.name, envelope.topic, error, exc_info=exc)
        await self._dead_letters.append(dead_letter(self.name, envelope, error))
        await delivery.term()
        if self._failures >= self._max_failures:
            raise CrashLoopError(
                f"actor {self.name!r} failed on {self._failures} messages in a row; last error: {error} "
                "(the messages are in the data dir's dead-letters.jsonl)"
            )


async def _keep_alive(delivery: Delivery, every_s: float) -> None:
    """Mark a delivery in progress every `every_s` while its handler runs, so the broker keeps it."""
    while True:
        await anyio.sleep(every_s)
        await delivery.in_progress()
