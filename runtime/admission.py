"""Which input lines are accepted, and which accepted posts are selected for mining.

A line is read as a post or a request (`runtime.inputs.lines.parse_line`); a post is refused when its
platform and id were accepted before, its date is before 1990 or in the future (a day's grace for
clocks), or its text is over `max_text_chars`. An accepted post is
ranked among its author's posts, and selected when its engagement reaches `min_engagement` and its
author has at least `min_author_posts` posts. Reposts and replies are not the author's own writing:
neither ranked nor selected unless `mine_all_kinds`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import msgspec

from runtime.engagement import AuthorRanks
from runtime.inputs.lines import Line, parse_line
from runtime.records import Accepted, GenerateEvent, OptimizeEvent, PostEvent, Rejection

EARLIEST = datetime(1990, 1, 1, tzinfo=UTC)
"""No post is older: a date before it is a mistake (and 0001-01-01 breaks local-time arithmetic)."""


class Admission:
    """The rules of acceptance and selection, with what was accepted before (`earlier`)."""

    def __init__(
        self,
        earlier: Iterable[Accepted],
        *,
        min_engagement: float,
        min_author_posts: int,
        max_line_bytes: int,
        max_text_chars: int,
        max_nesting: int,
        mine_all_kinds: bool,
    ) -> None:
        self._min_engagement = min_engagement
        self._min_author_posts = min_author_posts
        self._max_line_bytes = max_line_bytes
        self._max_text_chars = max_text_chars
        self._max_nesting = max_nesting
        self._mine_all_kinds = mine_all_kinds
        self._ranks = AuthorRanks()
        self._seen: dict[str, bytes] = {}
        """The digest of each accepted post, by key."""
        for accepted in earlier:
            self._seen[accepted.post.key] = _digest(accepted.post)
            self.rank(accepted.post)

    def check(self, line: Line) -> PostEvent | GenerateEvent | OptimizeEvent | Rejection:
        """The post or request on `line`, or why it is refused. A post checked is seen: its key again
        is a duplicate."""
        if line.rejection:
            return line.rejection
        if line.too_long:
            return Rejection("too long", f"the line is over the limit of {self._max_line_bytes} bytes (max_line_bytes)")
        event = parse_line(line.data, self._max_nesting)
        if isinstance(event, Rejection | GenerateEvent | OptimizeEvent):
            return event
        if event.key in self._seen:
            return Rejection("duplicate", f"post {event.key} was already accepted")
        if not EARLIEST <= event.created_at <= datetime.now(UTC) + timedelta(days=1):
            return Rejection(
                "invalid time", f"{event.created_at.isoformat()} is before {EARLIEST.year} or in the future"
            )
        if len(event.text) > self._max_text_chars:
            chars = len(event.text)
            return Rejection(
                "too long", f"the text has {chars} characters, over max_text_chars ({self._max_text_chars})"
            )
        self._seen[event.key] = _digest(event)
        return event

    def accepted(self, post: PostEvent) -> bool:
        """Whether `post` is one accepted here, as it was accepted (not another post under its key)."""
        return self._seen.get(post.key) == _digest(post)

    def rank(self, post: PostEvent) -> None:
        """Count `post` among its author's posts, if it is theirs to rank."""
        if self._minable(post):
            self._ranks.add(post.author, post.metrics)

    def decide(self, source: str, line: int, post: PostEvent, now: datetime, select_all: bool) -> Accepted:
        """The record of an accepted post: its engagement among its author's posts, and whether it is
        mined (always, with `select_all`: a post given to mine by name)."""
        engagement = self._ranks.score(post.author, post.metrics)
        selected = select_all or (
            self._minable(post)
            and engagement >= self._min_engagement
            and self._ranks.count(post.author) >= self._min_author_posts
        )
        return Accepted(post=post, engagement=engagement, selected=selected, source=source, line=line, accepted_at=now)

    def _minable(self, post: PostEvent) -> bool:
        return post.kind == "original" or self._mine_all_kinds


def _digest(post: PostEvent) -> bytes:
    return hashlib.blake2b(msgspec.json.encode(post), digest_size=16).digest()
