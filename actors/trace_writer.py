"""The TraceWriter: appends each mined trace to the store, once per post."""

from __future__ import annotations

import logging

from actors.base import Consumer
from bus.bus import Bus
from bus.messages import TRACES_MINED, TraceMined
from bus.records import DeadLetter, Trace
from runtime.ledger import Ledger
from runtime.store import JsonlStore

log = logging.getLogger(__name__)


class TraceWriter(Consumer[TraceMined]):
    """Writes traces to `traces.jsonl`; a second trace for an already mined post is not written."""

    name = "trace-writer"

    def __init__(
        self, bus: Bus, dead_letters: JsonlStore[DeadLetter], store: JsonlStore[Trace], ledger: Ledger
    ) -> None:
        super().__init__(bus, TRACES_MINED, dead_letters)
        self._store = store
        self._ledger = ledger

    async def handle(self, message: TraceMined) -> None:
        key = message.trace.post.key
        if self._ledger.is_mined(key):
            log.info("post %s already has a trace; not writing another", key)
            return
        await self._store.append(message.trace)
        self._ledger.record_mined(key)
        log.info(
            "mined %s: score %.3f (no plan) -> %.3f (initial) -> %.3f (found)",
            key,
            message.trace.scores.no_plan,
            message.trace.scores.initial,
            message.trace.scores.final,
        )
