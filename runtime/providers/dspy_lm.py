"""`dspy://<provider>/<model>`: a chat model reached through DSPy's `dspy.LM` (litellm model strings).

    dspy://openai/gpt-4o-mini        dspy://anthropic/claude-haiku-4-5        dspy://ollama_chat/llama3.1

Keys come from the provider's usual environment variables (`OPENAI_API_KEY`, ...); `?api_base=URL`
points at another endpoint. A generator only: chat APIs return no log-probabilities for a prompt,
so a scorer on `dspy://` is refused at start. The Limiter owns retries, so DSPy's are off, and so
is its cache. A prefilled answer is asked for in the last user message, as chat APIs do not
continue an assistant message.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from runtime.errors import (
    ProviderConfigError,
    ProviderError,
    ProviderRefused,
    ProviderTimeout,
    RateLimited,
    ServerFailed,
)
from runtime.providers.base import Description, chat_messages, without_prefill
from runtime.providers.calls import GenerateCall, Generation, Role, ScoreCall, TokenScores
from runtime.providers.redact import environment_secrets, scrub


class DspyProvider:
    """The provider behind `dspy://`."""

    system = "dspy"
    address: tuple[str, int] | None = None  # litellm picks the endpoint
    capacity: int | None = None

    def __init__(self, uri: str, model: str, api_base: str | None) -> None:
        import dspy

        self.uri = uri
        self.model = model
        extra = {"api_base": api_base} if api_base else {}
        self._lm = dspy.LM(model, cache=False, num_retries=0, **extra)

    @classmethod
    def open(cls, uri: str, data_dir: Path) -> DspyProvider:
        parts = urlsplit(uri)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        if set(query) - {"api_base"}:
            raise ProviderConfigError(f"unknown option(s) in {uri!r}; known: api_base")
        model = f"{parts.netloc}{parts.path}".strip("/")
        if "/" not in model:
            raise ProviderConfigError(f"{uri!r}: expected dspy://PROVIDER/MODEL, e.g. dspy://openai/gpt-4o-mini")
        return cls(uri, model, query.get("api_base"))

    async def check(self, role: Role) -> str:
        if role != "generator":
            raise ProviderConfigError(
                f"{self.uri} cannot be a {role}: chat APIs reached through DSPy return no log-probabilities for a "
                "prompt. Use it as --generator and score with mlx://... or an openai:// server that echoes them."
            )
        return f"{self.model} through dspy.LM (litellm)"

    def describe(self) -> Description:
        return Description()

    async def generate(self, call: GenerateCall) -> Generation:
        messages = chat_messages(call, continues=False)
        options: dict[str, Any] = {"temperature": call.temperature, "max_tokens": call.max_tokens, "top_p": call.top_p}
        if call.frequency_penalty:
            options["frequency_penalty"] = call.frequency_penalty
        if call.stop:
            options["stop"] = call.stop
        if call.seed is not None:
            options["seed"] = call.seed
        import dspy

        kinds: list[tuple[type[Exception], type[ProviderError]]] = [
            (dspy.LMRateLimitError, RateLimited),
            (dspy.LMTimeoutError, ProviderTimeout),
            (dspy.LMServerError, ServerFailed),
            (dspy.LMTransportError, ServerFailed),
        ]
        try:
            response = await self._lm.aforward(messages=messages, **options)
        except Exception as exc:  # DSPy's LMError family, and whatever litellm raised under it
            kind = next((ours for theirs, ours in kinds if isinstance(exc, theirs)), ProviderRefused)
            said = scrub(f"{type(exc).__name__}: {exc}", environment_secrets())  # litellm's keys come from there
            raise kind(said, retry_after=getattr(exc, "retry_after", None)) from None
        choice = response.choices[0]
        text = without_prefill(choice.message.content or "", call.prefill)
        usage = getattr(response, "usage", None)
        return Generation(
            text=text,
            input_tokens=getattr(usage, "prompt_tokens", None),
            output_tokens=getattr(usage, "completion_tokens", None),
            finish_reason=choice.finish_reason or "",
            provider=self.uri,
        )

    async def score(self, call: ScoreCall) -> TokenScores:
        raise ProviderRefused(f"{self.uri} cannot score: chat APIs return no prompt log-probabilities")

    async def aclose(self) -> None:
        return None
