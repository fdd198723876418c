"""`Models`: providers opened from URIs, called through the Limiter's retries, limits and fallbacks,
with no data dir pipeline around them."""

from __future__ import annotations

import os
from collections.abc import Sequence
from types import TracebackType

from actors.base import ForwardedDeadLetters
from actors.limiter import Limiter
from bus.bus import Bus
from runtime.config import LimitSettings, resolve_data_dir
from runtime.providers import Provider, open_provider
from runtime.providers.calls import ChatMessage, GenerateCall, Generation, Role, ScoreCall, TokenScores


class Models:
    """Open any provider URI and call it, alone or with fallbacks after it.

    Each chain (a URI and its fallbacks) gets the Limiter's handling: retries with backoff, the
    circuit breaker, rate limits from `limits` (by URI, or `"default"`), a span and metrics per
    attempt. A provider is opened once, on first use, and closed when the block ends. `data_dir`
    holds what local models convert and cache (default `~/.reer`, or `$REER_HOME`).
    """

    def __init__(
        self, data_dir: str | os.PathLike[str] | None = None, *, limits: dict[str, LimitSettings] | None = None
    ) -> None:
        self.data_dir = resolve_data_dir(os.fspath(data_dir) if data_dir is not None else None)
        self._limits = limits or {}
        self._providers: dict[str, Provider] = {}
        self._limiters: dict[tuple[Role, tuple[str, ...]], Limiter] = {}

    async def __aenter__(self) -> Models:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Release every provider opened."""
        providers, self._providers, self._limiters = self._providers, {}, {}
        for provider in providers.values():
            await provider.aclose()

    def open(self, uri: str) -> Provider:
        """The provider of `uri`, opened on first use; raises `ProviderConfigError` for a bad URI."""
        if uri not in self._providers:
            self._providers[uri] = open_provider(uri, self.data_dir)
        return self._providers[uri]

    def limiter(self, role: Role, uris: Sequence[str]) -> Limiter:
        """The Limiter of the chain `uris` for `role`, made on first use."""
        key = (role, tuple(uris))
        if key not in self._limiters:
            bus = Bus()
            chains: dict[Role, list[Provider]] = {role: [self.open(u) for u in uris]}
            self._limiters[key] = Limiter(bus, ForwardedDeadLetters(bus), chains, self._limits)
        return self._limiters[key]

    async def generate(
        self,
        uri: str,
        prompt: str,
        *,
        fallbacks: Sequence[str] = (),
        system: str | None = None,
        max_tokens: int = 256,
        temperature: float = 0.7,
    ) -> Generation:
        """A completion of `prompt` by `uri`, else by each of `fallbacks` in turn; `provider` names
        the one that answered. Raises `ProviderError` when all fail."""
        messages = [ChatMessage("system", system)] if system else []
        call = GenerateCall(
            messages=[*messages, ChatMessage("user", prompt)], max_tokens=max_tokens, temperature=temperature
        )
        result = await self.limiter("generator", [uri, *fallbacks]).call("generator", call)
        assert isinstance(result, Generation)
        return result

    async def score(
        self, uri: str, text: str, *, prompt: str = "", prefix: str = "", fallbacks: Sequence[str] = ()
    ) -> TokenScores:
        """The log-probability of each token of `text` after `prompt` and `prefix`, by `uri` (else its fallbacks)."""
        call = ScoreCall(messages=[ChatMessage("user", prompt)], prefix=prefix, target=text)
        result = await self.limiter("scorer", [uri, *fallbacks]).call("scorer", call)
        assert isinstance(result, TokenScores)
        return result
