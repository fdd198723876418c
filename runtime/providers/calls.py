"""What a provider is asked and what it answers: the calls and results every provider speaks.

The bus carries them inside `ProviderRequest` and `ProviderReply` (`bus/messages.py`); they live
here, with the providers, because they are the providers' interface.
"""

from __future__ import annotations

from typing import Literal

import msgspec


class ChatMessage(msgspec.Struct, frozen=True):
    """One turn of a chat prompt."""

    role: Literal["system", "user", "assistant"]
    content: str


class GenerateCall(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """Ask a model to continue a chat. `prefill` starts the assistant's answer."""

    messages: list[ChatMessage]
    prefill: str = ""
    max_tokens: int = 256
    temperature: float = 0.8
    top_p: float = 0.85
    frequency_penalty: float = 0.0
    """Subtracted from a token's logit once for each time it was generated before (OpenAI's meaning)."""
    stop: list[str] = []
    seed: int | None = None


class ScoreCall(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """Ask a model for the log-probability of each token of `target` after the chat and `prefix`."""

    messages: list[ChatMessage]
    prefix: str
    target: str


class Generation(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """A model's continuation."""

    text: str
    input_tokens: int | None
    output_tokens: int | None
    """Token counts as the provider reported them; None when it did not (never a guessed 0)."""
    finish_reason: str
    """Why generation ended, as the provider said ("stop", "length"); "" when it did not say, which
    the Limiter treats as a malformed answer."""
    provider: str = ""
    """The URI of the provider that answered; set by the Limiter."""


class TokenScores(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """Log-probabilities of the target's tokens, in order."""

    logprobs: list[float]
    input_tokens: int
    provider: str = ""
    """The URI of the provider that answered; set by the Limiter."""


Role = Literal["generator", "scorer", "judge"]
"""What a provider chain does: write plans and drafts, score plans in the search, or judge the
plans found, as a scorer that takes no part in the search (optional)."""
