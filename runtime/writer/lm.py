"""A DSPy language model whose every call is a `GenerateCall` made through the Limiter actor."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

import dspy
from dspy.lm15 import Message, Response, TextPart, Usage
from dspy.utils.callback import BaseCallback

from runtime import metrics
from runtime.providers.calls import ChatMessage, GenerateCall, Generation

FIELD_START = re.compile(r"starting with the field `(\[\[ ## \w+ ## \]\])`")
COMPLETED = "[[ ## completed ## ]]"

providers_used: ContextVar[set[str] | None] = ContextVar("providers_used", default=None)
"""Set to a fresh set around a program run to collect the URIs of the providers that answered it."""


class LimiterEngine:
    """Turns DSPy's requests into calls of `call`, which sends them to the Limiter and waits.

    `call` is made from the worker thread DSPy runs in. The start of the answer is prefilled when the
    chat ends with an assistant turn (the plain adapter's opening), or when DSPy's chat adapter asks
    for an answer starting with a field marker: small models then stay on format.
    """

    def __init__(self, call: Callable[[GenerateCall], Generation]) -> None:
        self._call = call
        self.hits = CacheHits()

    def complete(self, request: Any) -> Response:
        self.hits.missed()
        messages = []
        if request.system:
            system = request.system if isinstance(request.system, str) else "".join(p.text for p in request.system)
            messages.append(ChatMessage("system", system))
        messages += [
            ChatMessage("assistant" if m.role == "assistant" else "user", m.text or "") for m in request.messages
        ]
        found = FIELD_START.search(messages[-1].content)
        if messages[-1].role == "assistant":
            prefill, ending = messages.pop().content, ""
        else:
            prefill, ending = (found.group(1) + "\n", f"\n\n{COMPLETED}") if found else ("", "")
        config = request.config  # the dspy.LM's temperature, top_p, frequency_penalty and max_tokens arrive here
        sampling = {"max_tokens": config.max_tokens, "temperature": config.temperature}
        result = self._call(
            GenerateCall(
                messages=messages,
                prefill=prefill,
                top_p=config.top_p or 1.0,
                frequency_penalty=config.frequency_penalty or 0.0,
                stop=[*config.stop, COMPLETED],
                seed=config.seed,
                **{k: v for k, v in sampling.items() if v is not None},
            )
        )
        used = providers_used.get()
        if used is not None:
            used.add(result.provider)
        text = f"{prefill}{result.text}{ending}"
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


class CacheHits(BaseCallback):
    """Counts the LM calls that DSPy's cache answered, as `reer.writer.cache.hits`: those during
    which the engine was not called. A thread makes one LM call at a time, so the state is per thread."""

    def __init__(self) -> None:
        self._state = threading.local()

    def missed(self) -> None:
        self._state.served = True

    def on_lm_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        self._state.served = False

    def on_lm_end(self, call_id: str, outputs: Any | None, exception: Exception | None = None) -> None:
        if exception is None and not getattr(self._state, "served", True):
            metrics.writer_cache_hits.add(1)


def limiter_lm(
    call: Callable[[GenerateCall], Generation],
    *,
    models: str = "limiter",
    temperature: float = 0.7,
    top_p: float = 1.0,
    frequency_penalty: float = 0.0,
    max_tokens: int = 400,
    cache: bool = True,
) -> dspy.LM:
    """A `dspy.LM` that sends every call through `call`, named `reer/{models}`: the provider chain,
    which DSPy's cache keys on, so that another model is never answered from this one's entries.

    With `cache`, a call identical to an earlier one (messages, sampling, `rollout_id`) is answered
    from DSPy's cache (`DSPY_CACHEDIR`, the data dir's `dspy-cache`) without a model call; drafts that
    must differ each take a `rollout_id` of their own."""
    engine = LimiterEngine(call)
    return dspy.LM(
        f"reer/{models}",
        engine=engine,
        cache=cache,
        temperature=temperature,
        top_p=top_p,
        frequency_penalty=frequency_penalty,
        max_tokens=max_tokens,
        callbacks=[engine.hits],
    )
