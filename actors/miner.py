"""The Miner: runs the REER search for each selected post, through the Limiter."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime

import msgspec
from opentelemetry import trace as otel_trace

from actors.base import Consumer, DeadLetters
from actors.model_client import ModelClient, run_beside
from bus.bus import Bus
from bus.messages import POSTS_OBSERVED, RESULTS, MiningFailed, PostObserved, TraceMined
from runtime import metrics
from runtime.config import SearchSettings
from runtime.errors import NoPlanError, ProviderError
from runtime.ledger import Ledger
from runtime.records import Failure, Judged, Mining, PostEvent, Trace
from runtime.reer.brief import derive_brief
from runtime.reer.judge import judge
from runtime.reer.search import Search

log = logging.getLogger(__name__)

FLOOR_WARNING = (3, 0.8)
"""After this many traces, a mean share of post tokens at the clip floor above this is warned about."""


class Miner(Consumer[PostObserved]):
    """Mines a trace for each selected post and sends it to the TraceWriter; so too a post whose
    search fails, which goes to `failed.jsonl`. With a `ledger` (in the process that holds the data
    dir), a post already mined is skipped; a worker elsewhere mines what it is given, and the
    TraceWriter keeps one trace per post."""

    name = "miner"

    def __init__(
        self,
        bus: Bus,
        dead_letters: DeadLetters,
        settings: SearchSettings,
        *,
        concurrency: int,
        max_consecutive_failures: int,
        ledger: Ledger | None = None,
        judged: bool = False,
    ) -> None:
        super().__init__(
            bus,
            POSTS_OBSERVED,
            dead_letters,
            concurrency=concurrency,
            max_consecutive_failures=max_consecutive_failures,
        )
        self._settings = settings
        self._ledger = ledger
        self._judged = judged
        self.model = ModelClient(bus, self.name, dead_letters)
        self.mined = 0
        self.failed = 0
        self._clip_shares: list[float] = []

    async def run(self) -> None:
        """Mine until the bus closes and the posts in hand are done."""
        await run_beside(self.model, super().run)

    async def handle(self, message: PostObserved) -> None:
        span = otel_trace.get_current_span()
        post = message.post
        span.set_attribute("reer.post.key", post.key)
        if not message.selected or (self._ledger is not None and self._ledger.is_mined(post.key)):
            span.set_attribute("reer.mined", False)
            metrics.posts.add(1, {"reer.outcome": "skipped"})
            return
        brief = derive_brief(post)
        try:
            result = await Search(self.model, self._settings, brief, post.text, post.key).run()
        except (NoPlanError, ProviderError) as exc:
            log.warning("could not mine %s: %s", post.key, exc)
            failure = Failure(post=post, reason=str(exc), failed_at=datetime.now(UTC))
            await self.bus.publish(RESULTS, MiningFailed(failure=failure), key=f"failed:{post.key}")
            span.set_attribute("reer.mined", False)
            metrics.posts.add(1, {"reer.outcome": "failed"})
            self.failed += 1
            return
        span.set_attribute("reer.mined", True)
        metrics.posts.add(1, {"reer.outcome": "mined"})
        metrics.mining_duration.record(result.timings.total_s)
        metrics.mining_steps.record(len(result.steps))
        metrics.record_improvement(result.scores.no_plan, result.scores.final)
        span.set_attribute("reer.score.final", result.scores.final)
        if result.held_out is not None:
            span.set_attribute("reer.held_out.gain", result.held_out.gain)
            metrics.held_out.add(1, {"reer.holds": result.held_out.gain > 0})
        record = Trace(
            **msgspec.structs.asdict(result),
            judge=await self._judge(brief.text, post, result) if self._judged else None,
            trace_id=uuid.uuid4().hex,
            post=post,
            engagement=message.engagement,
            brief=brief,
            otel_trace_id=format(span.get_span_context().trace_id, "032x"),
            mined_at=datetime.now(UTC),
        )
        await self.bus.publish(RESULTS, TraceMined(trace=record), key=f"trace:{post.key}")
        self.mined += 1
        self._watch_clip_floor(result.scores.clip_share)

    async def _judge(self, brief: str, post: PostEvent, result: Mining) -> Judged | None:
        """The judge's figures for the plans found; None, with a warning, if the judge failed: the
        trace is kept without its second opinion."""
        try:
            judged = await judge(self.model.judge, brief, post.text, result, self._settings.clip_min)
        except ProviderError as exc:
            log.warning(
                "the judge could not score %s: %s; its trace is kept without the judge's figures", post.key, exc
            )
            return None
        otel_trace.get_current_span().set_attribute("reer.judge.gain", judged.gain)
        return judged

    def _watch_clip_floor(self, share: float | None) -> None:
        """Warn, once, when most of the posts' tokens score at the clip floor: the search then
        compares almost nothing (a scorer with wrong log-probabilities, or a clip_min too high)."""
        count, limit = FLOOR_WARNING
        if share is None or len(self._clip_shares) >= count:
            return
        self._clip_shares.append(share)
        mean = sum(self._clip_shares) / len(self._clip_shares)
        if len(self._clip_shares) == count and mean > limit:
            log.warning(
                "%.0f%% of the mined posts' tokens score at the clip floor (search.clip_min=%s), so plans are "
                "compared on the few tokens left: check the scorer with `reer-runtime validate`, or lower clip_min",
                100 * mean,
                self._settings.clip_min,
            )
