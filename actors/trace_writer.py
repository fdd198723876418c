"""The TraceWriter: the one writer of what mining produces, wherever it was mined."""

from __future__ import annotations

import logging
from collections.abc import Callable

from actors.base import Consumer
from bus.bus import Bus
from bus.messages import OPTIMIZE_REQUESTED, RESULTS, DeadLettered, MiningFailed, OptimizeRequested, Result, TraceMined
from runtime.errors import Refused
from runtime.ledger import Ledger
from runtime.records import DeadLetter, Failure, OptimizeEvent, PostEvent, Trace
from runtime.store import JsonlStore

log = logging.getLogger(__name__)


class TraceWriter(Consumer[Result]):
    """Appends traces to `traces.jsonl`, failed posts to `failed.jsonl` and the dead letters of
    other processes to `dead-letters.jsonl`. A post gets one trace: a second one (a post mined twice,
    as at-least-once delivery allows) is not written, nor a failure for a post already settled.
    A trace or failure of a post this data dir did not accept as it is (`accepted`: published on a
    shared bus by something other than its Ingestor) is refused, kept as a dead letter.

    With `optimize_after`, asks for a compile each time the store's trace count reaches a multiple
    of it: counted from the store, so restarts and duplicates do not shift it.
    """

    name = "trace-writer"

    def __init__(
        self,
        bus: Bus,
        dead_letters: JsonlStore[DeadLetter],
        traces: JsonlStore[Trace],
        failures: JsonlStore[Failure],
        ledger: Ledger,
        accepted: Callable[[PostEvent], bool],
        optimize_after: int | None = None,
    ) -> None:
        super().__init__(bus, RESULTS, dead_letters)
        self._traces = traces
        self._failed_posts = failures
        self._ledger = ledger
        self._accepted = accepted
        self._optimize_after = optimize_after
        self.mined = 0
        """Traces written since start."""
        self.failed = 0
        """Failed posts written since start."""

    async def handle(self, message: Result) -> None:
        post = message.trace.post if isinstance(message, TraceMined) else None
        post = message.failure.post if isinstance(message, MiningFailed) else post
        if post is not None and not self._accepted(post):
            raise Refused(
                f"post {post.key} is not one this data dir accepted (in posts.jsonl) as it is: "
                "its result came from something on the bus other than this daemon's Ingestor"
            )
        if isinstance(message, TraceMined):
            await self._write_trace(message.trace)
        elif isinstance(message, MiningFailed):
            key = message.failure.post.key
            if self._ledger.is_settled(key):
                log.info("post %s is already settled; not writing its failure again", key)
                return
            await self._failed_posts.append(message.failure)
            self._ledger.record_failed(key)
            self.failed += 1
        elif isinstance(message, DeadLettered):
            await self._dead_letters.append(message.letter)

    async def _write_trace(self, trace: Trace) -> None:
        key = trace.post.key
        if self._ledger.is_mined(key):
            log.info("post %s already has a trace; not writing another", key)
            return
        await self._traces.append(trace)
        self._ledger.record_mined(key)
        self.mined += 1
        log.info(
            "mined %s: NLL per token of the post, lower is better: %.3f with no plan -> %.3f with the initial plan "
            "-> %.3f with the found plan",
            key,
            trace.scores.no_plan,
            trace.scores.initial,
            trace.scores.final,
        )
        if self._optimize_after and self._ledger.mined % self._optimize_after == 0:
            log.info("%d traces in the store: asking for a compile", self._ledger.mined)
            await self.bus.publish(OPTIMIZE_REQUESTED, OptimizeRequested(request=OptimizeEvent()))
