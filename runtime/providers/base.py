"""The interface every language-model provider implements, and the errors it may raise."""

from __future__ import annotations

from typing import Protocol

from bus.messages import ChatMessage, GenerateCall, Generation, Role, ScoreCall, TokenScores


class ProviderError(Exception):
    """A model call failed. `retryable` errors are retried by the Limiter, honouring `retry_after`."""

    def __init__(self, message: str, *, retryable: bool = False, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


class ProviderConfigError(ValueError):
    """A provider URI is unknown or its options are wrong; the message says which."""


class Provider(Protocol):
    """A language model addressed by a URI such as `dummy://` or `mlx://smollm2-135m`."""

    uri: str
    system: str
    """The `gen_ai.provider.name` of the calls it makes."""
    model: str

    async def check(self, role: Role) -> str:
        """Make sure, at start, that this provider can serve `role`: a line saying what it found.

        Raises `ProviderConfigError` saying why not and what to do instead.
        """
        ...

    async def generate(self, call: GenerateCall) -> Generation:
        """Continue a chat."""
        ...

    async def score(self, call: ScoreCall) -> TokenScores:
        """Log-probabilities of the target's tokens given the chat and prefix."""
        ...

    async def aclose(self) -> None:
        """Release the model."""
        ...


def render_chat(messages: list[ChatMessage]) -> str:
    """A chat as plain prompt text, ending where the assistant's answer starts, for models without a template."""
    return "".join(f"<|{m.role}|>\n{m.content}\n" for m in messages) + "<|assistant|>\n"
