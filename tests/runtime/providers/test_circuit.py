"""A provider's gate: its calls spaced by each rate window, and its circuit breaker: failures in a row
open it, a success in between starts the count again, and the time left before a trial call is
never negative."""

from __future__ import annotations

import time

from aiolimiter import AsyncLimiter

from runtime.config import LimitSettings
from runtime.providers.dummy import DummyProvider
from runtime.providers.gate import Circuit, Gate


def test_a_success_between_failures_starts_the_count_again() -> None:
    circuit = Circuit("flaky://", failures_to_open=3, reset_s=60)
    circuit.failed()
    circuit.failed()
    circuit.succeeded()
    circuit.failed()
    circuit.failed()
    before_the_third = (circuit.state, circuit.failures)
    circuit.failed()
    assert before_the_third == ("closed", 2) and circuit.state == "open" and not circuit.allows()


def test_an_open_circuit_past_its_reset_time_lets_a_trial_through_at_once() -> None:
    circuit = Circuit("flaky://", failures_to_open=1, reset_s=60)
    circuit.failed()
    circuit.opened_at = time.monotonic() - 61  # opened a minute ago
    assert circuit.retry_in() == 0.0 and circuit.allows() and circuit.state == "half_open"


def test_a_gate_spaces_calls_by_each_window_and_names_its_circuit() -> None:
    asked: list[tuple[str, float]] = []

    def spacing(key: str, interval_s: float) -> AsyncLimiter:
        asked.append((key, interval_s))
        return AsyncLimiter(1, interval_s)

    gate = Gate.for_provider(DummyProvider("dummy://a"), LimitSettings(per_minute=120, per_hour=1800), spacing)
    assert asked == [("dummy://a.per_minute", 0.5), ("dummy://a.per_hour", 2.0)]  # 60 s / 120 and 3600 s / 1800
    assert gate.circuit.name == "dummy://a"
    asked.clear()
    Gate.for_provider(DummyProvider("dummy://b"), LimitSettings(per_minute=None, per_hour=None), spacing)
    assert asked == []  # no limit, no spacing
