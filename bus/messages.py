"""Every message that travels on the bus, and the topics that carry them.

Read this module first: it is the whole vocabulary the actors share. Messages are frozen, tagged
msgspec Structs, so they encode to stable JSON: the same actors talk in one process (memory) or over
NATS JetStream across machines (`bus/jetstream.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import msgspec

from runtime.errors import PROVIDER_ERRORS, ProviderError
from runtime.providers.calls import GenerateCall, Generation, Role, ScoreCall, TokenScores
from runtime.records import DeadLetter, Failure, GenerateEvent, OptimizeEvent, PostEvent, Trace

M = TypeVar("M")


class Message(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """Base of all bus messages; the class name is the tag."""


class PostObserved(Message, frozen=True, kw_only=True):
    """An accepted post, with its engagement score among its author's posts."""

    post: PostEvent
    engagement: float
    selected: bool


class TraceMined(Message, frozen=True, kw_only=True):
    """A finished REER search for one post."""

    trace: Trace


class MiningFailed(Message, frozen=True, kw_only=True):
    """A post whose REER search failed, with why."""

    failure: Failure


class DeadLettered(Message, frozen=True, kw_only=True):
    """A message an actor could not handle, kept with the error."""

    letter: DeadLetter


Result = TraceMined | MiningFailed | DeadLettered
"""What the TraceWriter writes to the data dir, from this process or from workers elsewhere."""


class GenerateRequested(Message, frozen=True, kw_only=True):
    """A user asked for drafts."""

    request_id: str
    request: GenerateEvent


class OptimizeRequested(Message, frozen=True, kw_only=True):
    """A user asked for the writer program to be compiled (no id when the TraceWriter asks, every
    `writer.optimize_after` traces)."""

    request: OptimizeEvent
    request_id: str | None = None


class ProviderRequest(Message, frozen=True, kw_only=True):
    """A model call for the Limiter to make; the answer goes to `reply_to`."""

    request_id: str
    role: Role
    call: GenerateCall | ScoreCall
    reply_to: str


class CallFailed(msgspec.Struct, frozen=True, kw_only=True, tag=True):
    """A model call that failed after every retry and fallback: the last error, with its kind (a
    `ProviderError` subclass's `kind`), so the caller gets back the type the Limiter saw."""

    error: str
    kind: str = ProviderError.kind
    retryable: bool = False
    retry_after: float | None = None

    @classmethod
    def of(cls, error: ProviderError) -> CallFailed:
        """`error` as a value to carry in a reply."""
        return cls(error=str(error), kind=error.kind, retryable=error.retryable, retry_after=error.retry_after)

    def exception(self) -> ProviderError:
        """The error again, of its kind's type (the base type for a kind this version does not know)."""
        kind = PROVIDER_ERRORS.get(self.kind, ProviderError)
        return kind(self.error, retryable=self.retryable, retry_after=self.retry_after)


class ProviderReply(Message, frozen=True, kw_only=True):
    """The Limiter's answer: the call's result, or why it failed (a tagged union, never both)."""

    request_id: str
    outcome: Generation | TokenScores | CallFailed


@dataclass(frozen=True)
class Topic(Generic[M]):
    """A named channel whose messages all have type `M`. A `local` topic never leaves its process."""

    name: str
    local: bool = False


POSTS_OBSERVED: Topic[PostObserved] = Topic("posts.observed")
RESULTS: Topic[Result] = Topic("results")
GENERATE_REQUESTED: Topic[GenerateRequested] = Topic("generate.requested")
OPTIMIZE_REQUESTED: Topic[OptimizeRequested] = Topic("optimize.requested")

# each process's model calls go to its own Limiter, which uses its own models
PROVIDER_REQUESTS: Topic[ProviderRequest] = Topic("provider.requests", local=True)


def reply_topic(requester: str) -> Topic[ProviderReply]:
    """The topic on which `requester` receives its provider replies (in its own process)."""
    return Topic(f"provider.replies.{requester}", local=True)


AnyMessage = (
    PostObserved
    | TraceMined
    | MiningFailed
    | DeadLettered
    | GenerateRequested
    | OptimizeRequested
    | ProviderRequest
    | ProviderReply
)


class Envelope(msgspec.Struct, Generic[M], frozen=True, kw_only=True):
    """A message in transit: its id, topic, trace context headers and body."""

    id: str
    topic: str
    headers: dict[str, str]
    body: M


def encode(envelope: Envelope[Any]) -> bytes:
    """The stable JSON form of an envelope."""
    return msgspec.json.encode(envelope)


def decode(data: bytes) -> Envelope[AnyMessage]:
    """Read back what `encode` wrote."""
    return msgspec.json.decode(data, type=Envelope[AnyMessage])
