"""What stands between callers and one provider: rate limits, a concurrency cap and a circuit breaker."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

import anyio
from aiolimiter import AsyncLimiter

from runtime.config import LimitSettings
from runtime.providers import Provider

log = logging.getLogger(__name__)

DEFAULT_CONCURRENCY = 4
"""Calls in flight at once to a provider that does not say how many it batches, unless limited."""
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


class Spacing(Protocol):
    """Hands out call slots at least some interval apart: aiolimiter's bucket in one process,
    `bus.cluster.SharedSpacing` across the processes of a NATS namespace."""

    async def acquire(self) -> object: ...


def local_spacing(key: str, interval_s: float) -> Spacing:
    """Calls spaced `interval_s` apart within this process."""
    return AsyncLimiter(1, interval_s)


SpacingFactory = Callable[[str, float], Spacing]
"""Makes the spacing of one limit, given a key naming the provider and window, and the interval."""


@dataclass
class Gate:
    """The limits on one provider.

    A limit of N calls per minute (or hour) spaces calls at least 60/N s (3600/N s) apart: an
    aiolimiter bucket of capacity 1. A bucket of capacity N would let a burst of N through and
    then keep leaking, up to almost 2N calls in the first minute; spacing keeps every window at N.
    """

    provider: Provider
    limits: LimitSettings
    spacings: list[Spacing]
    slots: anyio.CapacityLimiter
    """The concurrency cap, per process."""
    circuit: Circuit
    """Per process: each process judges its own calls."""

    @classmethod
    def for_provider(cls, provider: Provider, limits: LimitSettings, spacing: SpacingFactory = local_spacing) -> Gate:
        windows = {"per_minute": (limits.per_minute, 60), "per_hour": (limits.per_hour, 3600)}
        return cls(
            provider=provider,
            limits=limits,
            spacings=[spacing(f"{provider.uri}.{name}", s / n) for name, (n, s) in windows.items() if n],
            slots=anyio.CapacityLimiter(limits.concurrency or provider.capacity or DEFAULT_CONCURRENCY),
            circuit=Circuit(provider.uri, limits.circuit_failures, limits.circuit_reset_s),
        )

    async def admit(self) -> None:
        """Wait until both rate limits allow one more call."""
        for spacing in self.spacings:
            await spacing.acquire()
