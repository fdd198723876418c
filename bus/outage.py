"""Riding out a broker that goes away: nats-py reconnects by itself, for as long as it takes; the
requests made meanwhile time out. Each JetStream request goes through `through_outage`, which
waits and asks again, and says in the log that the broker is away and for how long. Work in flight
is held meanwhile: nothing is settled or lost, and redeliveries after the outage are deduplicated
as after a crash."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio
import nats.errors
import nats.js.errors

log = logging.getLogger(__name__)

T = TypeVar("T")

AWAY = (
    nats.errors.TimeoutError,  # no answer: the connection is down, or being made again
    nats.errors.NoRespondersError,  # connected, but JetStream is not up yet
    nats.errors.ConnectionReconnectingError,
    nats.errors.StaleConnectionError,
    nats.js.errors.ServiceUnavailableError,
)
SAY_EVERY_S = 10.0
LONGEST_WAIT_S = 5.0


async def through_outage(what: str, call: Callable[[], Awaitable[T]]) -> T:
    """`await call()`, asked again while the broker is away (`AWAY`), with a backoff up to
    `LONGEST_WAIT_S`; `what` names the request in the log. A closed connection is not an outage."""
    began: float | None = None
    said = 0.0
    wait = 0.25
    while True:
        try:
            result = await call()
        except AWAY as exc:
            now = time.monotonic()
            if began is None:
                began = now
                log.warning("the NATS broker is away (%s: %s); waiting for it", what, type(exc).__name__)
                said = now
            elif now - said >= SAY_EVERY_S:
                log.warning("the NATS broker has been away for %.0f s; still waiting (%s)", now - began, what)
                said = now
            await anyio.sleep(wait)
            wait = min(wait * 2, LONGEST_WAIT_S)
            continue
        if began is not None:
            log.warning("the NATS broker is back after %.0f s (%s)", time.monotonic() - began, what)
        return result
