"""The circuit breaker of a provider's gate: failures in a row open it, a success in between starts
the count again, and the time left before a trial call is never negative."""

from __future__ import annotations

import time

from runtime.providers.gate import Circuit


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
