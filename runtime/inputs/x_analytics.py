"""X Analytics CSV exports, unmodified: the legacy "tweet activity" file (`tweet_activity_metrics_*.csv`,
one per month, times to the minute) and today's content export (`account_analytics_content_*.csv`,
one row per post, dates to the day only)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

from runtime.inputs.common import RowError, count, csv_rows, make_post
from runtime.records import Platform, PostEvent, Rejection

LEGACY = ("Tweet id", "Tweet permalink", "Tweet text", "time", "impressions")
CONTENT = ("Post id", "Date", "Post text", "Post Link", "Impressions", "Likes", "Replies", "Reposts")


def looks_like(head: str) -> bool:
    return _has(head, LEGACY) or _has(head, CONTENT)


def _has(head: str, names: tuple[str, ...]) -> bool:
    first = head.splitlines()[0] if head else ""
    return all(f'"{name}"' in first or name in first.split(",") for name in names)


def rows(text: str) -> Iterator[tuple[int, str, PostEvent | Rejection]]:
    """(row number, raw row, post or rejection) for each row; the author comes from the post's link."""
    post = _content_post if _has(text[:4096], CONTENT) else _legacy_post
    raw_lines = text.splitlines()
    reader = csv_rows(text)
    for row in reader:
        number = reader.line_num
        raw = raw_lines[number - 1] if number - 1 < len(raw_lines) else ""
        try:
            yield number, raw, post(row)
        except RowError as exc:
            yield number, raw, exc.rejection


def _author(link: str) -> str:
    """The username in a post's link (`https://x.com/NAME/status/ID`), or `me`."""
    parts = link.rstrip("/").split("/")
    return parts[-3] if len(parts) >= 3 and parts[-2] == "status" else "me"


def _content_post(row: dict[str, str]) -> PostEvent:
    try:
        day = datetime.strptime((row.get("Date") or "").strip(), "%a, %b %d, %Y").replace(tzinfo=UTC)
    except ValueError:
        raise RowError("invalid time", f"Date {row.get('Date')!r} is not like 'Tue, Jul 14, 2026'") from None
    if not (row.get("Post id") or "").strip():
        raise RowError("invalid event", "the row has no Post id")
    return make_post(
        id=row["Post id"].strip(),
        text=row.get("Post text") or "",
        created_at=day,
        day_only=True,
        platform=Platform.X,
        author=_author(row.get("Post Link") or ""),
        likes=count(row.get("Likes"), "Likes"),
        reposts=count(row.get("Reposts"), "Reposts"),
        replies=count(row.get("Replies"), "Replies"),
        impressions=count(row.get("Impressions"), "Impressions"),
    )


def _legacy_post(row: dict[str, str]) -> PostEvent:
    author = _author(row.get("Tweet permalink") or "")
    try:
        created = datetime.strptime(row["time"], "%Y-%m-%d %H:%M %z")
    except (KeyError, TypeError, ValueError):
        raise RowError("invalid time", f"{row.get('time')!r} is not like 2016-12-23 18:50 +0000") from None
    if not (row.get("Tweet id") or "").strip():
        raise RowError("invalid event", "the row has no Tweet id")
    return make_post(
        id=row["Tweet id"].strip(),
        text=row.get("Tweet text") or "",
        created_at=created,
        platform=Platform.X,
        author=author,
        likes=count(row.get("likes"), "likes"),
        reposts=count(row.get("retweets"), "retweets"),
        replies=count(row.get("replies"), "replies"),
        impressions=count(row.get("impressions"), "impressions"),
    )
