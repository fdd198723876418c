"""What every actor shares: a consumer loop with a span per message, dead letters, crash loops."""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from datetime import UTC, datetime
from typing import Generic, TypeVar

import anyio
import msgspec
from anyio.streams.memory import MemoryObjectReceiveStream
from opentelemetry.trace import Status, StatusCode

from bus import tracing
from bus.bus import Bus
from bus.messages import Envelope, Topic, encode
from bus.records import DeadLetter
from runtime import metrics
from runtime.errors import CrashLoopError, Refused, StoreFullError
from runtime.store import JsonlStore

M = TypeVar("M")

log = logging.getLogger(__name__)


class Consumer(ABC, Generic[M]):
    """An actor that handles the messages of one topic with `concurrency` workers.

    A handler that raises does not stop the actor: the message and error go to the dead-letter
    store and the next message is handled. `max_consecutive_failures` failures in a row, with no
    success between them, raise `CrashLoopError`, which ends the daemon.
    """

    name: str

    def __init__(
        self,
        bus: Bus,
        topic: Topic[M],
        dead_letters: JsonlStore[DeadLetter],
        *,
        concurrency: int = 1,
        max_consecutive_failures: int = 5,
    ) -> None:
        self.bus = bus
        self._stream: MemoryObjectReceiveStream[Envelope[M]] = bus.subscribe(topic)
        self._dead_letters = dead_letters
        self._concurrency = concurrency
        self._max_failures = max_consecutive_failures
        self._failures = 0

    @abstractmethod
    async def handle(self, message: M) -> None:
        """Handle one message."""

    async def run(self) -> None:
        """Handle messages until the topic is closed and drained."""
        async with anyio.create_task_group() as tg:
            for _ in range(self._concurrency):
                tg.start_soon(self._work, self._stream.clone())
        self._stream.close()

    async def _work(self, stream: MemoryObjectReceiveStream[Envelope[M]]) -> None:
        async with stream:
            async for envelope in stream:
                started = time.perf_counter()
                attributes = {
                    "messaging.system": tracing.MESSAGING_SYSTEM,
                    "messaging.operation.name": "process",
                    "messaging.destination.name": envelope.topic,
                    "messaging.consumer.group.name": self.name,
                }
                try:
                    with tracing.process_span(self.bus.tracer, envelope, self.name) as span:
                        try:
                            await self.handle(envelope.body)
                        except StoreFullError:
                            raise  # nothing more can be written: the daemon stops
                        except Exception as exc:  # an actor survives its handler's errors
                            attributes["error.type"] = type(exc).__qualname__
                            span.record_exception(exc)
                            span.set_status(Status(StatusCode.ERROR, str(exc)))
                            span.set_attribute("error.type", type(exc).__qualname__)
                            await self._dead_letter(envelope, exc)
                        else:
                            self._failures = 0
                finally:
                    self.bus.done()
                    metrics.process_duration.record(time.perf_counter() - started, attributes)

    async def _dead_letter(self, envelope: Envelope[M], exc: Exception) -> None:
        error = f"{type(exc).__qualname__}: {exc}"
        if isinstance(exc, Refused):
            log.warning("%s refused a %s message: %s", self.name, envelope.topic, exc)
        else:
            self._failures += 1
            log.error("%s failed on a %s message: %s", self.name, envelope.topic, error, exc_info=exc)
        await self._dead_letters.append(
            DeadLetter(
                actor=self.name,
                topic=envelope.topic,
                message=msgspec.Raw(encode(envelope)),
                error=error,
                failed_at=datetime.now(UTC),
            )
        )
        if self._failures >= self._max_failures:
            raise CrashLoopError(
                f"actor {self.name!r} failed on {self._failures} messages in a row; last error: {error} "
                f"(the messages are in {self._dead_letters.path})"
            )
