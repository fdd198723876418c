"""`fault://`: a provider that wraps another and injects failures, for tests and drills.

    fault://?base=dummy://&error=0.2&fatal=0.05&rate_limit=0.1&retry_after=0.5&hang=0.05&malformed=0.05&seed=7
    fault://?base=dummy://&delay=0.2

Each call draws one outcome from the probabilities given (the rest pass through to `base`):
`error` a retryable 503, `fatal` a non-retryable 400, `rate_limit` a 429 with `retry_after`
seconds, `hang` a call that never returns (the Limiter's timeout ends it), `malformed` an answer
of the wrong shape (no log-probabilities, or empty text). `delay` makes every call take that many
seconds more, so that work is in flight when a drill kills a process.
"""

from __future__ import annotations

import random
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import anyio

from runtime.errors import ProviderConfigError, ProviderRefused, RateLimited, ServerFailed
from runtime.providers.base import Description, Provider
from runtime.providers.calls import GenerateCall, Generation, Role, ScoreCall, TokenScores

OUTCOMES = ("error", "fatal", "rate_limit", "hang", "malformed")


class FaultProvider:
    """Injects the configured failures in front of `base`."""

    def __init__(
        self,
        uri: str,
        base: Provider,
        odds: dict[str, float],
        retry_after: float,
        seed: int | None,
        delay: float = 0.0,
    ) -> None:
        self.uri = uri
        self.base = base
        self.system = base.system
        self.model = base.model
        self.address = base.address
        self.capacity = base.capacity
        self._odds = odds
        self._retry_after = retry_after
        self._rng = random.Random(seed)
        self._delay = delay
        self.injected: dict[str, int] = dict.fromkeys(OUTCOMES, 0)

    @classmethod
    def open(cls, uri: str, data_dir: Path) -> FaultProvider:
        from runtime.providers.registry import open_provider  # the registry opens this provider too

        query = {k: v[0] for k, v in parse_qs(urlsplit(uri).query).items()}
        base_uri = query.pop("base", "dummy://")
        try:
            odds = {name: float(query.pop(name, "0")) for name in OUTCOMES}
            retry_after = float(query.pop("retry_after", "0"))
            delay = float(query.pop("delay", "0"))
            seed = int(query.pop("seed")) if "seed" in query else None
        except ValueError as exc:
            raise ProviderConfigError(f"bad option in {uri!r}: {exc}") from None
        if query:
            raise ProviderConfigError(
                f"unknown option(s) in {uri!r}: {', '.join(query)}; known: base, seed, "
                f"retry_after, delay, {', '.join(OUTCOMES)}"
            )
        if any(not 0 <= p <= 1 for p in odds.values()) or sum(odds.values()) > 1:
            raise ProviderConfigError(f"bad option in {uri!r}: probabilities must be in [0, 1] and sum to at most 1")
        return cls(uri, open_provider(base_uri, data_dir), odds, retry_after, seed, delay)

    async def _draw(self) -> str | None:
        await anyio.sleep(self._delay)
        roll = self._rng.random()
        for name in OUTCOMES:
            roll -= self._odds[name]
            if roll < 0:
                self.injected[name] += 1
                return name
        return None

    async def _fail(self, outcome: str) -> None:
        if outcome == "error":
            raise ServerFailed("injected: 503 service unavailable")
        if outcome == "fatal":
            raise ProviderRefused("injected: 400 bad request")
        if outcome == "rate_limit":
            raise RateLimited("injected: 429 too many requests", retry_after=self._retry_after)
        if outcome == "hang":
            await anyio.sleep_forever()

    async def check(self, role: Role) -> str:
        return f"faults injected in front of {self.base.uri} ({await self.base.check(role)})"

    def describe(self) -> Description:
        return self.base.describe()

    async def generate(self, call: GenerateCall) -> Generation:
        outcome = await self._draw()
        if outcome == "malformed":
            return Generation(text="", input_tokens=0, output_tokens=0, finish_reason="error", provider=self.uri)
        if outcome:
            await self._fail(outcome)
        return await self.base.generate(call)

    async def score(self, call: ScoreCall) -> TokenScores:
        outcome = await self._draw()
        if outcome == "malformed":
            return TokenScores(logprobs=[], input_tokens=0, provider=self.uri)
        if outcome:
            await self._fail(outcome)
        return await self.base.score(call)

    async def aclose(self) -> None:
        await self.base.aclose()
