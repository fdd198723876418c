"""The interface every language-model provider implements, and helpers for the chats they send.

A provider raises `ProviderError` when a call fails and `ProviderConfigError` when it cannot be
opened or cannot serve a role (`runtime/errors.py`). `docs/architecture.md` says how to add one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from runtime.providers.calls import ChatMessage, GenerateCall, Generation, Role, ScoreCall, TokenScores


@dataclass(frozen=True)
class Description:
    """What a provider runs on, as `validate` shows it: lines that are fine, problems (such as a
    slow BLAS) and notes; and, for each prefix cache it keeps (by name), the prompt tokens it reused
    and computed since start (the `reer.cache.tokens` metric)."""

    lines: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    caches: dict[str, Callable[[], tuple[int, int]]] = field(default_factory=dict)


class Provider(Protocol):
    """A language model addressed by a URI such as `dummy://` or `mlx://smollm2-135m`.

    Each provider class is opened by `Class.open(uri, data_dir)`, named in `registry.PROVIDERS`.
    """

    uri: str
    system: str
    """The `gen_ai.provider.name` of the calls it makes."""
    model: str
    address: tuple[str, int] | None
    """The host and port of the server it calls (`server.address`, `server.port`); None when local."""
    capacity: int | None
    """Calls it serves at once by batching them itself (a local engine's decode batch), which sets
    the default concurrency of its calls and of the Miner; None when it does not say (servers)."""

    async def check(self, role: Role) -> str:
        """Make sure, at start, that this provider can serve `role`: a line saying what it can do.

        Raises `ProviderConfigError` saying why not and what to do instead. It changes nothing:
        what a server can do is found on first need, whether or not `check` ran.
        """
        ...

    def describe(self) -> Description:
        """What the provider runs on (device, BLAS, cache), for `validate` and metrics."""
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


def chat_messages(call: GenerateCall, *, continues: bool) -> list[dict[str, str]]:
    """The call's chat as OpenAI-style messages. A prefill becomes a final assistant message to be
    continued when the API `continues` one, else a request, in the last user message, to begin with it."""
    messages = [{"role": m.role, "content": m.content} for m in call.messages]
    if call.prefill and continues:
        messages.append({"role": "assistant", "content": call.prefill})
    elif call.prefill:
        messages[-1]["content"] += f"\n\nBegin your answer with exactly this text, then go on:\n{call.prefill}"
    return messages


def continue_with(chat: str, answer: str) -> str:
    """The rendered `chat` followed by the start of the assistant's `answer`. A template whose
    generation prompt already opens a `<think>` block (R1-style models) does not get a second one:
    the authors of REER trim it the same way."""
    if answer.startswith("<think>") and chat.rstrip().endswith("<think>"):
        chat = chat.rstrip().removesuffix("<think>")
    return chat + answer


def without_prefill(text: str, prefill: str) -> str:
    """An answer without the prefill, for APIs that repeat it."""
    return text[len(prefill) :] if prefill and text.startswith(prefill) else text
