"""A DSPy language model whose every call is a `GenerateCall` made through the Limiter actor."""

from __future__ import annotations

import re
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

import dspy
from dspy.lm15 import Message, Response, TextPart, Usage

from runtime.providers.calls import ChatMessage, GenerateCall, Generation

FIELD_START = re.compile(r"starting with the field `(\[\[ ## \w+ ## \]\])`")
COMPLETED = "[[ ## completed ## ]]"

providers_used: ContextVar[set[str] | None] = ContextVar("providers_used", default=None)
"""Set to a fresh set around a program run to collect the URIs of the providers that answered it."""


class LimiterEngine:
    """Turns DSPy's requests into calls of `call`, which sends them to the Limiter and waits.

    `call` is made from the worker thread DSPy runs in. When DSPy's chat adapter asks for an answer
    starting with a field marker, the marker is prefilled: small models then stay on format.
    """

    def __init__(self, call: Callable[[GenerateCall], Generation]) -> None:
        self._call = call

    def complete(self, request: Any) -> Response:
        messages = []
        if request.system:
            system = request.system if isinstance(request.system, str) else "".join(p.text for p in request.system)
            messages.append(ChatMessage("system", system))
        messages += [
            ChatMessage("assistant" if m.role == "assistant" else "user", m.text or "") for m in request.messages
        ]
        found = FIELD_START.search(messages[-1].content)
        prefill = found.group(1) + "\n" if found else ""
        config = request.config  # the dspy.LM's temperature and max_tokens arrive here
        sampling = {"max_tokens": config.max_tokens, "temperature": config.temperature}
        result = self._call(
            GenerateCall(
                messages=messages,
                prefill=prefill,
                top_p=config.top_p or 1.0,
                stop=[*config.stop, COMPLETED],
                seed=config.seed,
                **{k: v for k, v in sampling.items() if v is not None},
            )
        )
        used = providers_used.get()
        if used is not None:
            used.add(result.provider)
        text = f"{prefill}{result.text}\n\n{COMPLETED}"
        usage = Usage(input_tokens=result.input_tokens, output_tokens=result.output_tokens)  # None: not reported
        return Response(
            id=None,
            model="reer",
            message=Message.assistant([TextPart(text)]),
            finish_reason=result.finish_reason,
            usage=usage,
        )

    def stream(self, request: Any) -> Any:
        raise NotImplementedError("the writer does not stream")

    def close(self) -> None:
        return None


def limiter_lm(
    call: Callable[[GenerateCall], Generation], *, temperature: float = 0.7, max_tokens: int = 400
) -> dspy.LM:
    """A `dspy.LM` that sends every call through `call` (no DSPy cache: the Limiter sees each one)."""
    engine = LimiterEngine(call)
    return dspy.LM("reer/limiter", engine=engine, cache=False, temperature=temperature, max_tokens=max_tokens)
