"""The Ingestor: reads input events, keeps what is valid, rejects the rest with a reason."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime

from opentelemetry import trace as otel_trace

from bus.bus import Bus
from bus.messages import (
    GENERATE_REQUESTED,
    OPTIMIZE_REQUESTED,
    POSTS_OBSERVED,
    GenerateRequested,
    OptimizeRequested,
    PostObserved,
)
from runtime import metrics
from runtime.admission import Admission
from runtime.errors import InputError
from runtime.inputs.lines import Line, read_batches
from runtime.records import Accepted, GenerateEvent, OptimizeEvent, PostEvent, Rejected, Rejection, Requested
from runtime.store import JsonlStore

log = logging.getLogger(__name__)

Reader = Callable[[str], AsyncIterator[list[Line]]]
"""Batches of input lines from a source."""
tracer = otel_trace.get_tracer("reer-runtime.ingestor")


@dataclass
class IngestCounts:
    """What the Ingestor has seen so far."""

    lines: int = 0
    accepted: int = 0
    rejected: int = 0
    selected: int = 0
    resumed: int = 0
    """Selected posts of earlier runs announced again by `recover`."""
    unreadable: int = 0
    """Sources that could not be read as a whole (a truncated archive, a pipe in no known format)."""


class Ingestor:
    """Reads each source in turn; each batch of lines is made durable before it is announced.

    Each post of a batch is ranked among its author's posts, then the batch's accepted posts (with
    the decision) go to `posts.jsonl` and its rejected lines to `rejected.jsonl`, both
    fsynced, and only then is each post published on `posts.observed`. A post whose platform and
    id were accepted before is a duplicate. `recover` re-announces what an earlier run accepted and
    selected but neither mined nor recorded as failed.
    """

    name = "ingestor"

    def __init__(
        self,
        bus: Bus,
        accepted: JsonlStore[Accepted],
        rejected: JsonlStore[Rejected],
        *,
        min_engagement: float,
        min_author_posts: int,
        max_line_bytes: int,
        batch_max_lines: int,
        max_text_chars: int = 10_000,
        max_nesting: int = 32,
        mine_all_kinds: bool = False,
        read: Reader | None = None,
        journal: JsonlStore[Requested] | None = None,
    ) -> None:
        self.bus = bus
        self._journal = journal
        self._read: Reader = read or (lambda source: read_batches(source, max_line_bytes, batch_max_lines))
        self._accepted = accepted
        self._rejected = rejected
        earlier = list(accepted.read())
        self._selected_before = [a for a in earlier if a.selected]
        self._admission = Admission(
            earlier,
            min_engagement=min_engagement,
            min_author_posts=min_author_posts,
            max_line_bytes=max_line_bytes,
            max_text_chars=max_text_chars,
            max_nesting=max_nesting,
            mine_all_kinds=mine_all_kinds,
        )
        self.counts = IngestCounts()

    def accepted(self, post: PostEvent) -> bool:
        """Whether `post` was accepted here as it is (what the TraceWriter stores must have been)."""
        return self._admission.accepted(post)

    async def recover(self, finished: set[str], retried: Collection[str] = ()) -> int:
        """Announce again the selected posts of earlier runs whose key is not in `finished`.

        Each is announced under its post key, so a broker that still holds it from before a crash
        stores it once; a post in `retried` (failed before, mined again) under a new one."""
        pending = [a for a in self._selected_before if a.post.key not in finished]
        if pending:
            log.info("resuming %d selected posts accepted before the last stop", len(pending))
        self.counts.resumed += len(pending)
        for accepted in pending:
            await self._announce(accepted, retry=accepted.post.key in retried)
        return len(pending)

    async def run(self, sources: list[str]) -> None:
        """Ingest every source, in order."""
        for source in sources:
            name = "stdin" if source == "-" else source
            try:
                async for batch in self._read(source):
                    await self.ingest(name, batch)
            except (OSError, ValueError, InputError) as exc:  # a whole source unreadable: say so, go on
                log.error("cannot read %s: %s", name, exc)
                self.counts.unreadable += 1
                continue
            log.info(
                "read %s: %d lines, %d posts accepted (%d selected), %d rejected",
                name,
                self.counts.lines,
                self.counts.accepted,
                self.counts.selected,
                self.counts.rejected,
            )

    async def ingest(self, source: str, lines: list[Line], *, select_all: bool = False) -> None:
        """Validate, rank, persist and announce one batch of lines from `source`; with `select_all`,
        every accepted post is mined, whatever its engagement (a post given to mine by name)."""
        posts: list[tuple[Line, PostEvent]] = []
        requests: list[GenerateEvent | OptimizeEvent] = []
        rejected: list[Rejected] = []
        refusals: list[Rejection] = []
        now = datetime.now(UTC)
        for line in lines:
            if not line.data.strip() and not line.too_long:
                continue
            self.counts.lines += 1
            checked = self._admission.check(line)
            if isinstance(checked, PostEvent):
                posts.append((line, checked))
            elif isinstance(checked, GenerateEvent | OptimizeEvent):
                requests.append(checked)
            else:
                raw = line.data.decode("utf-8", errors="backslashreplace")
                refusals.append(checked)
                rejected.append(
                    Rejected(source=source, line=line.number, raw=raw, reason=str(checked), rejected_at=now)
                )
        for _, post in posts:
            self._admission.rank(post)
        accepted = [self._admission.decide(source, line.number, post, now, select_all) for line, post in posts]
        await self._rejected.append_many(rejected)
        await self._accepted.append_many(accepted)
        self.counts.rejected += len(rejected)
        self.counts.accepted += len(accepted)
        self.counts.selected += sum(a.selected for a in accepted)
        metrics.events_read.add(len(rejected) + len(posts) + len(requests))
        metrics.events_accepted.add(len(posts) + len(requests))
        for refused, rejection in zip(rejected, refusals, strict=True):
            metrics.events_rejected.add(1, {"reer.reason": rejection.kind})
            if rejection.kind != "duplicate":
                log.warning("rejected %s line %d: %s", source, refused.line, refused.reason)
        if duplicates := sum(r.kind == "duplicate" for r in refusals):
            log.warning(
                "%s: %s rows were already accepted (duplicates, each kept in %s)",
                source,
                f"{duplicates:,}",
                self._rejected.path,
            )
        for record in accepted:
            await self._announce(record)
        for request in requests:
            await self.submit(request)

    async def resume_requests(self, settled: set[str]) -> None:
        """Pass on again the journaled requests that have not come to an end (see `settled`)."""
        pending = [r for r in self._journal.read() if r.request_id not in settled] if self._journal else []
        if pending:
            log.info("resuming %d requests accepted before the last stop", len(pending))
        for record in pending:
            await self._pass_on(record.request_id, record.request)

    async def submit(self, request: GenerateEvent | OptimizeEvent) -> str:
        """Journal a request for drafts or for a compile, then pass it to the Generator or the
        Optimizer; its id, which its drafts or program record carry."""
        request_id = uuid.uuid4().hex[:16]
        if self._journal is not None:
            await self._journal.append(Requested(request_id=request_id, request=request, accepted_at=datetime.now(UTC)))
        await self._pass_on(request_id, request)
        return request_id

    async def _pass_on(self, request_id: str, request: GenerateEvent | OptimizeEvent) -> None:
        """Publish a request to the Generator or the Optimizer, in a trace of its own."""
        kind = request.__struct_config__.tag
        with tracer.start_as_current_span(f"ingest {kind} request", attributes={"reer.request": str(kind)}):
            if isinstance(request, OptimizeEvent):
                await self.bus.publish(
                    OPTIMIZE_REQUESTED, OptimizeRequested(request_id=request_id, request=request), key=request_id
                )
            else:
                await self.bus.publish(
                    GENERATE_REQUESTED, GenerateRequested(request_id=request_id, request=request), key=request_id
                )

    async def _announce(self, accepted: Accepted, *, retry: bool = False) -> None:
        post = accepted.post
        with tracer.start_as_current_span(
            "ingest post",
            attributes={
                "reer.post.key": post.key,
                "reer.source": accepted.source,
                "reer.source.line": accepted.line,
                "reer.engagement": accepted.engagement,
                "reer.selected": accepted.selected,
            },
        ):
            await self.bus.publish(
                POSTS_OBSERVED,
                PostObserved(post=post, engagement=accepted.engagement, selected=accepted.selected),
                key=f"post:{post.key}:retry:{uuid.uuid4().hex}" if retry else f"post:{post.key}",
            )
