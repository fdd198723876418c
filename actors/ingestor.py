"""The Ingestor: reads input events, keeps what is valid, rejects the rest with a reason."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

import msgspec
from opentelemetry import trace

from bus.bus import Bus
from bus.messages import POSTS_OBSERVED, PostObserved
from bus.records import GenerateEvent, InputEvent, OptimizeEvent, PostEvent, Rejected
from runtime import metrics
from runtime.engagement import AuthorRanks
from runtime.inputs import Line, read_batches
from runtime.store import JsonlStore

log = logging.getLogger(__name__)
tracer = trace.get_tracer("reer-runtime.ingestor")

_decoder = msgspec.json.Decoder(InputEvent)


@dataclass
class IngestCounts:
    """What the Ingestor has seen so far."""

    lines: int = 0
    accepted: int = 0
    rejected: int = 0
    selected: int = 0


def parse_line(data: bytes) -> InputEvent | str:
    """The event on one line, or the reason it is not one."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"not UTF-8: byte {exc.start} ({data[exc.start : exc.start + 1]!r}) {exc.reason}"
    try:
        event: InputEvent = _decoder.decode(data)
    except msgspec.ValidationError as exc:
        return f"invalid event: {exc}"
    except msgspec.DecodeError as exc:
        return f"invalid JSON: {exc}"
    return event


class Ingestor:
    """Reads each source in turn; each batch of lines is made durable before it is announced.

    Accepted posts go to the ledger (`posts.jsonl`), rejected lines to `rejected.jsonl`, both
    fsynced, then each post is published on `posts.observed` with its engagement score and whether
    it is selected for mining. A post whose platform and id were accepted before is a duplicate.
    """

    name = "ingestor"

    def __init__(
        self,
        bus: Bus,
        ledger: JsonlStore[PostEvent],
        rejected: JsonlStore[Rejected],
        *,
        min_engagement: float,
        min_author_posts: int,
        max_line_bytes: int,
        batch_max_lines: int,
    ) -> None:
        self.bus = bus
        self._ledger = ledger
        self._rejected = rejected
        self._min_engagement = min_engagement
        self._min_author_posts = min_author_posts
        self._max_line_bytes = max_line_bytes
        self._batch_max_lines = batch_max_lines
        self._ranks = AuthorRanks()
        self._seen: set[str] = set()
        for post in ledger.read():
            self._seen.add(post.key)
            self._ranks.add(post.author, post.metrics)
        self.counts = IngestCounts()

    async def run(self, sources: list[str]) -> None:
        """Ingest every source, in order."""
        for source in sources:
            name = "stdin" if source == "-" else source
            async for batch in read_batches(source, self._max_line_bytes, self._batch_max_lines):
                await self.ingest(name, batch)
            log.info("read %s: %s", name, self.counts)

    async def ingest(self, source: str, lines: list[Line]) -> None:
        """Validate, persist and announce one batch of lines from `source`."""
        posts: list[tuple[Line, PostEvent]] = []
        rejected: list[Rejected] = []
        now = datetime.now(UTC)
        for line in lines:
            if not line.data.strip() and not line.too_long:
                continue
            self.counts.lines += 1
            checked = self._check(line)
            if isinstance(checked, PostEvent):
                posts.append((line, checked))
                self._seen.add(checked.key)
            else:
                raw = line.data.decode("utf-8", errors="backslashreplace")
                rejected.append(Rejected(source=source, line=line.number, raw=raw, reason=checked, rejected_at=now))
        await self._rejected.append_many(rejected)
        await self._ledger.append_many(post for _, post in posts)
        self.counts.rejected += len(rejected)
        self.counts.accepted += len(posts)
        metrics.events_read.add(len(rejected) + len(posts))
        metrics.events_accepted.add(len(posts))
        for record in rejected:
            metrics.events_rejected.add(1, {"reer.reason": record.reason.split(":", 1)[0]})
            log.warning("rejected %s line %d: %s", source, record.line, record.reason)
        for _, post in posts:
            self._ranks.add(post.author, post.metrics)
        for line, post in posts:
            await self._announce(source, line, post)

    def _check(self, line: Line) -> PostEvent | str:
        if line.too_long:
            return f"too long: the line is over the limit of {self._max_line_bytes} bytes (max_line_bytes)"
        event = parse_line(line.data)
        if isinstance(event, str):
            return event
        if isinstance(event, GenerateEvent | OptimizeEvent):
            return f"not available yet: {event.__struct_config__.tag!r} events need the Generator and Optimizer"
        if event.key in self._seen:
            return f"duplicate: post {event.key} was already accepted"
        return event

    async def _announce(self, source: str, line: Line, post: PostEvent) -> None:
        engagement = self._ranks.score(post.author, post.metrics)
        selected = engagement >= self._min_engagement and self._ranks.count(post.author) >= self._min_author_posts
        self.counts.selected += selected
        with tracer.start_as_current_span(
            "ingest post",
            attributes={
                "reer.post.key": post.key,
                "reer.source": source,
                "reer.source.line": line.number,
                "reer.engagement": engagement,
                "reer.selected": selected,
            },
        ):
            await self.bus.publish(POSTS_OBSERVED, PostObserved(post=post, engagement=engagement, selected=selected))
