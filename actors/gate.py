"""What stands between callers and one provider: rate limits, a concurrency cap and a circuit breaker."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Literal

import anyio
from aiolimiter import AsyncLimiter

from runtime.config import LimitSettings
from runtime.providers import Provider

log = logging.getLogger(__name__)

CircuitState = Literal["closed", "open", "half_open"]


@dataclass
class Circuit:
    """Opens after `failures_to_open` failed attempts in a row; after `reset_s` lets trial calls
    through (half-open); the first trial's outcome closes or re-opens it."""

    name: str
    failures_to_open: int
    reset_s: float
    state: CircuitState = "closed"
    failures: int = 0
    opened_at: float = field(default=0.0)

    def allows(self) -> bool:
        """Whether a call may go to the provider now."""
        if self.state == "open" and time.monotonic() - self.opened_at >= self.reset_s:
            self._move("half_open")
        return self.state != "open"

    def retry_in(self) -> float:
        return max(0.0, self.reset_s - (time.monotonic() - self.opened_at))

    def succeeded(self) -> None:
        self.failures = 0
        if self.state != "closed":
            self._move("closed")

    def failed(self) -> None:
        self.failures += 1
        if self.state == "half_open" or (self.state == "closed" and self.failures >= self.failures_to_open):
            self.opened_at = time.monotonic()
            self._move("open")

    def _move(self, state: CircuitState) -> None:
        log.warning("circuit for %s: %s -> %s (%d failures in a row)", self.name, self.state, state, self.failures)
        self.state = state


@dataclass
class Gate:
    """The limits on one provider.

    A limit of N calls per minute (or hour) spaces calls at least 60/N s (3600/N s) apart: an
    aiolimiter bucket of capacity 1. A bucket of capacity N would let a burst of N through and
    then keep leaking, up to almost 2N calls in the first minute; spacing keeps every window at N.
    """

    provider: Provider
    limits: LimitSettings
    per_minute: AsyncLimiter | None
    per_hour: AsyncLimiter | None
    slots: anyio.CapacityLimiter
    circuit: Circuit

    @classmethod
    def for_provider(cls, provider: Provider, limits: LimitSettings) -> Gate:
        return cls(
            provider=provider,
            limits=limits,
            per_minute=AsyncLimiter(1, 60 / limits.per_minute) if limits.per_minute else None,
            per_hour=AsyncLimiter(1, 3600 / limits.per_hour) if limits.per_hour else None,
            slots=anyio.CapacityLimiter(limits.concurrency),
            circuit=Circuit(provider.uri, limits.circuit_failures, limits.circuit_reset_s),
        )

    async def admit(self) -> None:
        """Wait until both rate limits allow one more call."""
        for bucket in (self.per_minute, self.per_hour):
            if bucket is not None:
                await bucket.acquire()
