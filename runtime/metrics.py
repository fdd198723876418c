"""The runtime's OpenTelemetry metrics: one module that lists every instrument.

Names follow the semantic conventions where they exist (`gen_ai.client.*`,
`messaging.process.duration`); the rest are `reer.*`. Instruments are created on the global meter
provider's proxy, so they report to whatever provider `runtime.telemetry` installs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

meter = metrics.get_meter("reer-runtime")

# -- input ------------------------------------------------------------------------------------
events_read = meter.create_counter("reer.events.read", "{event}", "Input lines read (blank lines excluded)")
events_accepted = meter.create_counter("reer.events.accepted", "{event}", "Input events accepted")
events_rejected = meter.create_counter(
    "reer.events.rejected", "{event}", "Input lines rejected, by reason (attribute reer.reason)"
)

# -- mining -----------------------------------------------------------------------------------
posts = meter.create_counter(
    "reer.posts", "{post}", "Posts by outcome (attribute reer.outcome: mined, skipped or failed)"
)
held_out = meter.create_counter(
    "reer.traces.held_out",
    "{trace}",
    "Traces whose held-out gain was measured, by whether it is above 0 (attribute reer.holds: the found plan "
    "explains tokens the search did not see better than a generic plan)",
)
mining_duration = meter.create_histogram("reer.mining.duration", "s", "Wall time of one post's REER search")
mining_steps = meter.create_histogram("reer.mining.steps", "{step}", "Refinement steps of one post's search")
score_improvement = meter.create_histogram(
    "reer.mining.score_improvement",
    "nat",
    "Size of the change in clipped mean NLL from no plan to the found plan; attribute reer.score.direction: "
    "better (the plan lowered it) or worse (a histogram takes no negative values)",
)


def record_improvement(no_plan: float, final: float) -> None:
    """Record how much the found plan lowered (or raised) the clipped mean NLL, keeping the sign."""
    change = no_plan - final
    score_improvement.record(abs(change), {"reer.score.direction": "better" if change >= 0 else "worse"})


# -- providers --------------------------------------------------------------------------------
operation_duration = meter.create_histogram(
    "gen_ai.client.operation.duration",
    "s",
    "Duration of one model call attempt",
    explicit_bucket_boundaries_advisory=[0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 60, 120, 300],
)
token_usage = meter.create_histogram(
    "gen_ai.client.token.usage",
    "{token}",
    "Tokens per model call (attribute gen_ai.token.type)",
    explicit_bucket_boundaries_advisory=[1, 4, 16, 64, 256, 1024, 4096, 16384, 65536],
)
provider_calls = meter.create_counter(
    "reer.provider.calls", "{call}", "Model call attempts by provider and outcome (ok, error, timeout)"
)
provider_retries = meter.create_counter("reer.provider.retries", "{retry}", "Retries after a retryable error")
provider_fallbacks = meter.create_counter("reer.provider.fallbacks", "{fallback}", "Moves down a fallback chain")
rate_limit_wait = meter.create_histogram(
    "reer.provider.rate_limit.wait", "s", "Time a call waited for its provider's rate limits"
)

writer_cache_hits = meter.create_counter(
    "reer.writer.cache.hits", "{call}", "Writer model calls answered from DSPy's cache, with no model call made"
)

decode_batch = meter.create_histogram(
    "reer.decode.batch",
    "{request}",
    "Requests decoded together in one step of a local model (mlx://): how much the work in flight batches",
    explicit_bucket_boundaries_advisory=[1, 2, 3, 4, 6, 8, 12, 16, 24, 32],
)
engine_time = meter.create_counter(
    "reer.engine.time",
    "s",
    "Time a local model's thread spent, by work (attribute reer.engine.work): add (taking requests in, with"
    " the MLX engine's prefill and scoring) and step (batched steps, with the numpy engine's prefill and scoring)",
)

# -- bus --------------------------------------------------------------------------------------
process_duration = meter.create_histogram("messaging.process.duration", "s", "Time an actor spent handling one message")


def observe_queue_depths(depths: Callable[[], dict[str, int]]) -> None:
    """Report each topic's waiting messages as the gauge `reer.bus.queue.depth`."""

    def callback(options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(n, {"messaging.destination.name": topic}) for topic, n in depths().items()]

    meter.create_observable_gauge("reer.bus.queue.depth", [callback], "{message}", "Messages waiting per topic")


def observe_circuits(states: Callable[[], dict[str, str]]) -> None:
    """Report each provider's circuit as the gauge `reer.provider.circuit.state` (0 closed, 1 half-open, 2 open)."""
    codes = {"closed": 0, "half_open": 1, "open": 2}  # the order of reer_runtime.stats.CIRCUIT_STATES

    def callback(options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(codes[state], {"reer.provider": uri}) for uri, state in states().items()]

    meter.create_observable_gauge(
        "reer.provider.circuit.state", [callback], "1", "Circuit breaker per provider: 0 closed, 1 half-open, 2 open"
    )


def observe_caches(caches: dict[str, Callable[[], tuple[int, int]]]) -> None:
    """Report each prefix cache's reused (hit) and computed (miss) tokens, by name, as
    `reer.cache.tokens` (one instrument: a second one of the same name would be dropped)."""

    def callback(options: CallbackOptions) -> Iterable[Observation]:
        observed = []
        for name, stats in caches.items():
            hits, misses = stats()
            observed += [
                Observation(hits, {"reer.cache": name, "reer.cache.result": "hit"}),
                Observation(misses, {"reer.cache": name, "reer.cache.result": "miss"}),
            ]
        return observed

    meter.create_observable_counter(
        "reer.cache.tokens", [callback], "{token}", "Prompt tokens reused from a cache (hit) or computed (miss)"
    )
